/* bench/bench_mqtt_topic.c: throughput of the MQTT subscription tree
 * (apps/mqtt/topic.c): matching a published topic to its subscribers, and
 * subscribing/unsubscribing, at sizes a busy broker sees.
 *
 * Prints TSV rows (scenario, system, value, unit, better) for
 * bench/suite_mqtt_topic.sh. With --smoke it runs tiny sizes and checks
 * every match count instead of timing (exit 1 on a wrong count), so the
 * benchmark cannot rot. The same scenarios are meant to be run against
 * mosquitto's subscription tree through a real broker later; here they
 * measure the data structure alone. */
#include "apps/mqtt/topic.h"
#include "bench/bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sizes {
    size_t devices; /* exact subscriptions, one per device */
    size_t fanout;  /* subscribers of one shared filter */
    size_t matches; /* publishes timed per scenario */
} sizes;

static bool smoke;

static void report(const char *scenario, double value, const char *unit)
{
    if (smoke)
        printf("ok mqtt_topic %s\n", scenario);
    else
        bench_row(scenario, "hermes", value, unit, "higher");
}

static void expect(const char *what, size_t got, size_t want)
{
    bench_check("bench_mqtt_topic", what, got, want);
}

static double per_second(size_t n, uint64_t start_ns)
{
    uint64_t ns = bench_now_ns() - start_ns;
    return ns ? (double)n * 1e9 / (double)ns : 0;
}

/* One exact subscription per device, plus wildcard filters over them:
 * every publish reaches its device's subscriber and the three watchers. */
static void devices(const sizes *sz)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    char topic[64];
    uint64_t start = bench_now_ns();

    mqtt_deliveries_init(&d);
    for (size_t i = 0; i < sz->devices; i++) {
        snprintf(topic, sizeof topic, "site/%zu/dev/%zu/temp", i % 100, i);
        mqtt_topic_tree_add(t, topic, strlen(topic), i + 1, 1, NULL);
    }
    report("subscribe (exact)", per_second(sz->devices, start), "subs/s");
    mqtt_topic_tree_add(t, "site/+/dev/+/temp", 17, 1000000001, 0, NULL);
    mqtt_topic_tree_add(t, "site/#", 6, 1000000002, 0, NULL);
    mqtt_topic_tree_add(t, "#", 1, 1000000003, 0, NULL);
    start = bench_now_ns();
    for (size_t n = 0; n < sz->matches; n++) {
        size_t i = (n * 7919) % sz->devices;
        snprintf(topic, sizeof topic, "site/%zu/dev/%zu/temp", i % 100, i);
        mqtt_topic_tree_match(t, topic, strlen(topic), &d);
        if (smoke)
            expect("devices", d.count, 4);
    }
    report("match (exact + 3 wildcards)", per_second(sz->matches, start),
           "publishes/s");
    start = bench_now_ns();
    for (size_t i = 0; i < sz->devices; i++) {
        snprintf(topic, sizeof topic, "site/%zu/dev/%zu/temp", i % 100, i);
        mqtt_topic_tree_remove(t, topic, strlen(topic), i + 1);
    }
    report("unsubscribe (exact)", per_second(sz->devices, start), "subs/s");
    if (smoke)
        expect("after unsubscribe", mqtt_topic_tree_count(t), 3);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

/* Many subscribers of one topic, reached through overlapping filters, so
 * the result needs the per-subscriber merge. */
static void fanout(const sizes *sz)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    size_t delivered = 0;
    uint64_t start;

    mqtt_deliveries_init(&d);
    for (size_t i = 0; i < sz->fanout; i++) {
        mqtt_topic_tree_add(t, "news/world", 10, i + 1, 0, NULL);
        if (i % 2 == 0)
            mqtt_topic_tree_add(t, "news/+", 6, i + 1, 1, NULL);
    }
    start = bench_now_ns();
    for (size_t n = 0; n < sz->matches / 100 + 1; n++) {
        mqtt_topic_tree_match(t, "news/world", 10, &d);
        delivered += d.count;
        if (smoke)
            expect("fanout", d.count, sz->fanout);
    }
    report("fan-out (overlapping)", per_second(delivered, start),
           "deliveries/s");
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

int main(int argc, char **argv)
{
    sizes sz = {.devices = 100000, .fanout = 10000, .matches = 1000000};
    smoke = argc > 1 && strcmp(argv[1], "--smoke") == 0;
    if (smoke)
        sz = (sizes){.devices = 200, .fanout = 50, .matches = 500};
    devices(&sz);
    fanout(&sz);
    return 0;
}
