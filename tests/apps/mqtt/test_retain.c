/* tests/apps/mqtt/test_retain.c: the retained-message store. */
#include "apps/mqtt/retain.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define S(s) (s), strlen(s)

typedef struct seen {
    char topics[16][32];
    size_t count;
} seen;

static void record(void *arg, const mqtt_retained *m)
{
    seen *s = arg;
    snprintf(s->topics[s->count++], 32, "%s", m->topic);
}

static bool has(const seen *s, const char *topic)
{
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->topics[i], topic) == 0)
            return true;
    return false;
}

static mqtt_retain_store *sample(void)
{
    mqtt_retain_store *s = mqtt_retain_create();
    mqtt_retain_set(s, S("a"), "1", 1, 0);
    mqtt_retain_set(s, S("a/b"), "2", 1, 1);
    mqtt_retain_set(s, S("a/b/c"), "3", 1, 2);
    mqtt_retain_set(s, S("a/x"), "4", 1, 0);
    mqtt_retain_set(s, S("$SYS/uptime"), "5", 1, 0);
    mqtt_retain_set(s, S("/lead"), "6", 1, 0);
    return s;
}

/* The topics of sample()'s messages that `filter` matches. */
static seen matched(const char *filter)
{
    mqtt_retain_store *s = sample();
    seen got = {0};
    mqtt_retain_match(s, S(filter), record, &got);
    mqtt_retain_destroy(s);
    return got;
}

Test(mqtt_retain, set_replaces_the_previous_message_mqtt_3_3_1_5)
{
    mqtt_retain_store *s = mqtt_retain_create();
    mqtt_retained m;
    mqtt_retain_set(s, S("t"), "old", 3, 0);
    mqtt_retain_set(s, S("t"), "new!", 4, 1);
    cr_assert(mqtt_retain_get(s, S("t"), &m));
    cr_assert_eq(m.payload_len, 4);
    cr_assert_eq(m.qos, 1);
    cr_assert_eq(mqtt_retain_count(s), 1);
    mqtt_retain_destroy(s);
}

Test(mqtt_retain, empty_payload_clears_the_topic_mqtt_3_3_1_10)
{
    mqtt_retain_store *s = sample();
    mqtt_retained m;
    mqtt_retain_set(s, S("a/b"), "", 0, 0);
    cr_assert_not(mqtt_retain_get(s, S("a/b"), &m));
    cr_assert(mqtt_retain_get(s, S("a/b/c"), &m)); /* children stay */
    cr_assert_eq(mqtt_retain_count(s), 5);
    mqtt_retain_destroy(s);
}

Test(mqtt_retain, exact_filter_finds_one_message_mqtt_3_3_1_6)
{
    seen got = matched("a/b");
    cr_assert_eq(got.count, 1);
    cr_assert(has(&got, "a/b"));
}

Test(mqtt_retain, plus_filter_finds_one_level_of_children)
{
    seen got = matched("a/+");
    cr_assert_eq(got.count, 2);
    cr_assert(has(&got, "a/b"));
    cr_assert(has(&got, "a/x"));
}

Test(mqtt_retain, hash_filter_finds_the_parent_and_the_subtree)
{
    seen got = matched("a/#");
    cr_assert_eq(got.count, 4);
    cr_assert(has(&got, "a"));
    cr_assert(has(&got, "a/b/c"));
}

Test(mqtt_retain, leading_wildcards_skip_dollar_topics_mqtt_4_7_2_1)
{
    seen all = matched("#");
    cr_assert_eq(all.count, 5);
    cr_assert_not(has(&all, "$SYS/uptime"));
    cr_assert_eq(matched("+/uptime").count, 0);
    cr_assert_eq(matched("$SYS/#").count, 1);
}

Test(mqtt_retain, empty_first_level_is_matched_by_plus)
{
    seen got = matched("+/lead");
    cr_assert_eq(got.count, 1);
}

Test(mqtt_retain, payload_and_qos_are_kept_as_set)
{
    mqtt_retain_store *s = sample();
    mqtt_retained m;
    cr_assert(mqtt_retain_get(s, S("a/b/c"), &m));
    cr_assert_eq(m.qos, 2);
    cr_assert_eq(m.payload_len, 1);
    cr_assert_eq(m.payload[0], '3');
    cr_assert_eq(m.topic_len, 5);
    mqtt_retain_destroy(s);
}
