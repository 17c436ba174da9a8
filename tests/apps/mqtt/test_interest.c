/* tests/apps/mqtt/test_interest.c: the nodes' aggregated filters
 * (apps/mqtt/interest.h): adding, removing, dropping a node, listing, and
 * matching with one result per node under the topic rules. */
#include "apps/mqtt/interest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static mqtt_interest *in;
static mqtt_deliveries d;

static void setup(void)
{
    in = mqtt_interest_create();
    mqtt_deliveries_init(&d);
}

static void teardown(void)
{
    mqtt_deliveries_fini(&d);
    mqtt_interest_destroy(in);
}

TestSuite(mqtt_interest, .init = setup, .fini = teardown);

static bool add(uint32_t node, const char *f)
{
    return mqtt_interest_add(in, node, f, strlen(f));
}

/* The matching nodes as a bit set (nodes 1..63). */
static uint64_t match(const char *topic)
{
    uint64_t set = 0;

    mqtt_interest_match(in, topic, strlen(topic), &d);
    for (size_t i = 0; i < d.count; i++) {
        cr_assert_eq(set & (1ull << d.items[i].subscriber), 0,
                     "one result per node");
        set |= 1ull << d.items[i].subscriber;
    }
    return set;
}

Test(mqtt_interest, a_topic_reaches_the_nodes_whose_filters_match)
{
    cr_assert(add(1, "a/#"));
    cr_assert(add(2, "a/+/c"));
    cr_assert(add(3, "b"));
    cr_assert_eq(match("a/b/c"), (1u << 1) | (1u << 2));
    cr_assert_eq(match("b"), 1u << 3);
    cr_assert_eq(match("c"), 0);
}

Test(mqtt_interest, several_filters_of_one_node_give_one_result)
{
    cr_assert(add(4, "x/#"));
    cr_assert(add(4, "x/y"));
    cr_assert(add(4, "+/y"));
    cr_assert_eq(match("x/y"), 1u << 4);
}

Test(mqtt_interest, a_filter_is_added_once_and_removed_once)
{
    cr_assert(add(1, "t"));
    cr_assert_not(add(1, "t"));
    cr_assert_eq(mqtt_interest_count(in, 1), 1);
    cr_assert(mqtt_interest_remove(in, 1, "t", 1));
    cr_assert_not(mqtt_interest_remove(in, 1, "t", 1));
    cr_assert_eq(match("t"), 0);
}

Test(mqtt_interest, invalid_filters_and_node_zero_are_refused)
{
    cr_assert_not(add(1, "a/#/b"));
    cr_assert_not(add(1, "a+"));
    cr_assert_not(add(0, "a"));
    cr_assert_not(mqtt_interest_add(in, 1, "", 0));
    cr_assert_eq(mqtt_interest_count(in, 1), 0);
}

Test(mqtt_interest, dollar_topics_follow_the_wildcard_rule)
{
    cr_assert(add(1, "#"));
    cr_assert(add(2, "$SYS/#"));
    cr_assert_eq(match("$SYS/x"), 1u << 2); /* [MQTT-4.7.2-1] */
}

static void count_cb(void *arg, const char *f, size_t len)
{
    cr_assert_eq(strlen(f), len);
    ++*(size_t *)arg;
}

Test(mqtt_interest, dropping_a_node_forgets_all_its_filters_only)
{
    char f[32];
    size_t listed = 0;

    for (int i = 0; i < 1000; i++) { /* grows and shifts the string set */
        snprintf(f, sizeof f, "n/%d/#", i);
        cr_assert(add(5, f));
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(f, sizeof f, "n/%d/#", i);
        cr_assert(mqtt_interest_remove(in, 5, f, strlen(f)));
    }
    cr_assert(add(6, "n/1/x"));
    cr_assert_eq(mqtt_interest_count(in, 5), 500);
    mqtt_interest_foreach(in, 5, count_cb, &listed);
    cr_assert_eq(listed, 500);
    cr_assert_eq(match("n/1/x"), (1u << 5) | (1u << 6));
    cr_assert_eq(match("n/2/x"), 0);
    mqtt_interest_drop(in, 5);
    cr_assert_eq(mqtt_interest_count(in, 5), 0);
    cr_assert_eq(match("n/1/x"), 1u << 6);
    cr_assert_eq(match("n/3/x"), 0);
}
