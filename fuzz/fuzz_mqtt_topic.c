/* fuzz/fuzz_mqtt_topic.c: libFuzzer target that checks the subscription
 * tree, the retained store and filter coverage against the one-by-one
 * matcher mqtt_topic_matches(), which is short enough to trust by reading.
 *
 * Input: newline-separated strings. Every valid filter is subscribed (its
 * line number is the subscriber); every valid topic name is retained. Then,
 * for every topic, the tree's deliveries must be exactly the filters that
 * match it; for every filter, the retained store must yield exactly the
 * topics it matches; and whenever filter A covers filter B, every topic
 * that B matches must match A. Any disagreement aborts. */
#include "apps/mqtt/retain.h"
#include "apps/mqtt/topic.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 64

typedef struct line {
    const char *s;
    size_t len;
    bool filter, topic;
} line;

typedef struct hits {
    const line *lines;
    size_t count;
    bool seen[MAX_LINES];
} hits;

static void on_retained(void *arg, const mqtt_retained *m)
{
    hits *h = arg;
    for (size_t i = 0; i < h->count; i++)
        if (h->lines[i].topic && h->lines[i].len == m->topic_len &&
            memcmp(h->lines[i].s, m->topic, m->topic_len) == 0) {
            if (h->seen[i])
                abort(); /* reported twice */
            h->seen[i] = true;
            return;
        }
    abort(); /* a topic that was never retained */
}

static size_t split(const uint8_t *data, size_t size, line *lines)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < MAX_LINES; i++) {
        if (i < size && data[i] != '\n')
            continue;
        lines[n].s = (const char *)data + start;
        lines[n].len = i - start;
        lines[n].filter = mqtt_topic_filter_is_valid(lines[n].s, lines[n].len);
        lines[n].topic = mqtt_topic_name_is_valid(lines[n].s, lines[n].len);
        n++;
        start = i + 1;
    }
    return n;
}

static void check_tree(const line *lines, size_t n)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    for (size_t i = 0; i < n; i++)
        if (lines[i].filter)
            mqtt_topic_tree_add(t, lines[i].s, lines[i].len, i + 1, i % 3,
                                NULL);
    for (size_t j = 0; j < n; j++) {
        size_t want = 0;
        if (!lines[j].topic)
            continue;
        mqtt_topic_tree_match(t, lines[j].s, lines[j].len, &d);
        for (size_t i = 0; i < n; i++) {
            bool m =
                lines[i].filter && mqtt_topic_matches(lines[i].s, lines[i].len,
                                                      lines[j].s, lines[j].len);
            bool found = false;
            for (size_t k = 0; k < d.count; k++)
                found |= d.items[k].subscriber == i + 1;
            if (m != found)
                abort();
            want += m;
        }
        if (want != d.count)
            abort(); /* duplicates */
    }
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

static void check_retain(const line *lines, size_t n)
{
    mqtt_retain_store *s = mqtt_retain_create();
    for (size_t i = 0; i < n; i++)
        if (lines[i].topic)
            mqtt_retain_set(s, lines[i].s, lines[i].len, "x", 1, 0);
    for (size_t f = 0; f < n; f++) {
        hits h = {.lines = lines, .count = n};
        if (!lines[f].filter)
            continue;
        mqtt_retain_match(s, lines[f].s, lines[f].len, on_retained, &h);
        for (size_t i = 0; i < n; i++) {
            bool first = true; /* duplicates of a topic count once */
            for (size_t k = 0; k < i; k++)
                if (lines[k].topic && lines[k].len == lines[i].len &&
                    memcmp(lines[k].s, lines[i].s, lines[i].len) == 0)
                    first = false;
            if (lines[i].topic && first &&
                h.seen[i] != mqtt_topic_matches(lines[f].s, lines[f].len,
                                                lines[i].s, lines[i].len))
                abort();
        }
    }
    mqtt_retain_destroy(s);
}

static void check_covers(const line *lines, size_t n)
{
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++) {
            if (!lines[a].filter || !lines[b].filter ||
                !mqtt_topic_filter_covers(lines[a].s, lines[a].len, lines[b].s,
                                          lines[b].len))
                continue;
            for (size_t t = 0; t < n; t++)
                if (lines[t].topic &&
                    mqtt_topic_matches(lines[b].s, lines[b].len, lines[t].s,
                                       lines[t].len) &&
                    !mqtt_topic_matches(lines[a].s, lines[a].len, lines[t].s,
                                        lines[t].len))
                    abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    line lines[MAX_LINES];
    size_t n = split(data, size, lines);
    check_tree(lines, n);
    check_retain(lines, n);
    check_covers(lines, n);
    return 0;
}
