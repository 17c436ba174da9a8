/* tests/apps/mqtt/test_topic.c: topic rules (section 4.7) and the
 * subscription tree. */
#include "apps/mqtt/topic.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define S(s) (s), strlen(s)

static bool matches(const char *filter, const char *topic)
{
    return mqtt_topic_matches(S(filter), S(topic));
}

/* ----------------------------------------------------------- validation */

Test(mqtt_topic, names_with_wildcards_are_invalid_mqtt_3_3_2_2)
{
    cr_assert(mqtt_topic_name_is_valid(S("a/b")));
    cr_assert_not(mqtt_topic_name_is_valid(S("a/+")));
    cr_assert_not(mqtt_topic_name_is_valid(S("a/#")));
    cr_assert_not(mqtt_topic_name_is_valid(S("a+b")));
}

Test(mqtt_topic, empty_name_and_filter_are_invalid_mqtt_4_7_3_1)
{
    cr_assert_not(mqtt_topic_name_is_valid("", 0));
    cr_assert_not(mqtt_topic_filter_is_valid("", 0));
}

Test(mqtt_topic, null_character_is_invalid_mqtt_4_7_3_2)
{
    cr_assert_not(mqtt_topic_name_is_valid("a\0b", 3));
    cr_assert_not(mqtt_topic_filter_is_valid("a\0b", 3));
}

Test(mqtt_topic, longer_than_65535_bytes_is_invalid_mqtt_4_7_3_3)
{
    static char big[65536];
    memset(big, 'a', sizeof big);
    cr_assert(mqtt_topic_name_is_valid(big, 65535));
    cr_assert_not(mqtt_topic_name_is_valid(big, 65536));
}

Test(mqtt_topic, hash_must_be_last_and_alone_in_its_level_mqtt_4_7_1_2)
{
    cr_assert(mqtt_topic_filter_is_valid(S("#")));
    cr_assert(mqtt_topic_filter_is_valid(S("a/#")));
    cr_assert_not(mqtt_topic_filter_is_valid(S("a/#/b")));
    cr_assert_not(mqtt_topic_filter_is_valid(S("a#")));
    cr_assert_not(mqtt_topic_filter_is_valid(S("a/b#")));
}

Test(mqtt_topic, plus_must_fill_its_level_mqtt_4_7_1_3)
{
    cr_assert(mqtt_topic_filter_is_valid(S("+")));
    cr_assert(mqtt_topic_filter_is_valid(S("+/+/a")));
    cr_assert(mqtt_topic_filter_is_valid(S("a/+/#")));
    cr_assert_not(mqtt_topic_filter_is_valid(S("a+")));
    cr_assert_not(mqtt_topic_filter_is_valid(S("a/+b/c")));
}

Test(mqtt_topic, empty_levels_are_valid)
{
    cr_assert(mqtt_topic_filter_is_valid(S("/")));
    cr_assert(mqtt_topic_filter_is_valid(S("a//b")));
    cr_assert(mqtt_topic_name_is_valid(S("/a/")));
}

/* -------------------------------------------------------- single matches */

Test(mqtt_topic_match, hash_matches_the_parent_and_all_children_4_7_1_2)
{
    cr_assert(matches("sport/tennis/#", "sport/tennis"));
    cr_assert(matches("sport/tennis/#", "sport/tennis/player1"));
    cr_assert(matches("sport/tennis/#", "sport/tennis/player1/ranking"));
    cr_assert_not(matches("sport/tennis/#", "sport/golf"));
    cr_assert(matches("#", "a/b/c"));
}

Test(mqtt_topic_match, plus_matches_exactly_one_level_4_7_1_3)
{
    cr_assert(matches("sport/+", "sport/"));
    cr_assert(matches("sport/+/player1", "sport/tennis/player1"));
    cr_assert_not(matches("sport/+", "sport"));
    cr_assert_not(matches("sport/+", "sport/tennis/player1"));
    cr_assert(matches("+/+", "/finance"));
    cr_assert(matches("/+", "/finance"));
    cr_assert_not(matches("+", "/finance"));
}

Test(mqtt_topic_match, dollar_topics_escape_leading_wildcards_mqtt_4_7_2_1)
{
    cr_assert_not(matches("#", "$SYS/broker/uptime"));
    cr_assert_not(matches("+/broker/uptime", "$SYS/broker/uptime"));
    cr_assert(matches("$SYS/#", "$SYS/broker/uptime"));
    cr_assert(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
    cr_assert(matches("a/+", "a/$b")); /* only the first level counts */
}

Test(mqtt_topic_match, comparison_is_case_and_byte_exact_4_7_3_4)
{
    cr_assert_not(matches("ACCOUNTS", "Accounts"));
    cr_assert_not(matches("a/b ", "a/b"));
}

/* ------------------------------------------------------------------ tree */

static size_t find(const mqtt_deliveries *d, uint64_t sub)
{
    for (size_t i = 0; i < d->count; i++)
        if (d->items[i].subscriber == sub)
            return i;
    return SIZE_MAX;
}

Test(mqtt_topic_tree, exact_and_wildcard_subscribers_all_get_the_message)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("a/b"), 1, 0, NULL);
    mqtt_topic_tree_add(t, S("a/+"), 2, 1, NULL);
    mqtt_topic_tree_add(t, S("#"), 3, 2, NULL);
    mqtt_topic_tree_add(t, S("a/c"), 4, 0, NULL);
    mqtt_topic_tree_match(t, S("a/b"), &d);
    cr_assert_eq(d.count, 3);
    cr_assert_neq(find(&d, 1), SIZE_MAX);
    cr_assert_neq(find(&d, 2), SIZE_MAX);
    cr_assert_neq(find(&d, 3), SIZE_MAX);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, overlapping_filters_deliver_once_at_max_qos_3_3_5_1)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("a/b"), 7, 0, NULL);
    mqtt_topic_tree_add(t, S("a/+"), 7, 2, NULL);
    mqtt_topic_tree_add(t, S("a/#"), 7, 1, NULL);
    mqtt_topic_tree_match(t, S("a/b"), &d);
    cr_assert_eq(d.count, 1);
    cr_assert_eq(d.items[0].subscriber, 7);
    cr_assert_eq(d.items[0].qos, 2);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, resubscribing_replaces_the_qos_mqtt_3_8_4_3)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    bool is_new;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("x"), 5, 2, &is_new);
    cr_assert(is_new);
    mqtt_topic_tree_add(t, S("x"), 5, 0, &is_new);
    cr_assert_not(is_new);
    cr_assert_eq(mqtt_topic_tree_count(t), 1);
    mqtt_topic_tree_match(t, S("x"), &d);
    cr_assert_eq(d.count, 1);
    cr_assert_eq(d.items[0].qos, 0);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, wildcards_do_not_deliver_dollar_topics_mqtt_4_7_2_1)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("#"), 1, 0, NULL);
    mqtt_topic_tree_add(t, S("+/broker/uptime"), 2, 0, NULL);
    mqtt_topic_tree_add(t, S("$SYS/#"), 3, 0, NULL);
    mqtt_topic_tree_match(t, S("$SYS/broker/uptime"), &d);
    cr_assert_eq(d.count, 1);
    cr_assert_eq(d.items[0].subscriber, 3);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, hash_filter_matches_its_parent_level)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("sport/#"), 1, 0, NULL);
    mqtt_topic_tree_match(t, S("sport"), &d);
    cr_assert_eq(d.count, 1);
    mqtt_topic_tree_match(t, S("sports"), &d);
    cr_assert_eq(d.count, 0);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, empty_levels_are_levels_of_their_own)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("+/a"), 1, 0, NULL);
    mqtt_topic_tree_add(t, S("a/+"), 2, 0, NULL);
    mqtt_topic_tree_match(t, S("/a"), &d);
    cr_assert_eq(d.count, 1);
    cr_assert_eq(d.items[0].subscriber, 1);
    mqtt_topic_tree_match(t, S("a/"), &d);
    cr_assert_eq(d.count, 1);
    cr_assert_eq(d.items[0].subscriber, 2);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, unsubscribe_stops_delivery_and_unknown_is_notfound)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    mqtt_topic_tree_add(t, S("a/b/c"), 1, 0, NULL);
    mqtt_topic_tree_add(t, S("a/b/c"), 2, 0, NULL);
    cr_assert_eq(mqtt_topic_tree_remove(t, S("a/b/c"), 1), HM_OK);
    cr_assert_eq(mqtt_topic_tree_remove(t, S("a/b/c"), 1), HM_ENOTFOUND);
    cr_assert_eq(mqtt_topic_tree_remove(t, S("a/+/c"), 2), HM_ENOTFOUND);
    mqtt_topic_tree_match(t, S("a/b/c"), &d);
    cr_assert_eq(d.count, 1);
    cr_assert_eq(d.items[0].subscriber, 2);
    cr_assert_eq(mqtt_topic_tree_remove(t, S("a/b/c"), 2), HM_OK);
    cr_assert_eq(mqtt_topic_tree_count(t), 0);
    mqtt_topic_tree_match(t, S("a/b/c"), &d);
    cr_assert_eq(d.count, 0);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, invalid_filter_zero_subscriber_or_qos_3_are_refused)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    cr_assert_eq(mqtt_topic_tree_add(t, S("a/#/b"), 1, 0, NULL), HM_EINVAL);
    cr_assert_eq(mqtt_topic_tree_add(t, S("a"), 0, 0, NULL), HM_EINVAL);
    cr_assert_eq(mqtt_topic_tree_add(t, S("a"), 1, 3, NULL), HM_EINVAL);
    mqtt_topic_tree_destroy(t);
}

/* Many subscribers and siblings: the hash tables grow, shrink by deletion
 * (backward shift) and still find everything. */
Test(mqtt_topic_tree, thousands_of_siblings_and_subscribers_stay_findable)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    char buf[32];
    mqtt_deliveries_init(&d);
    for (uint64_t i = 1; i <= 3000; i++) {
        snprintf(buf, sizeof buf, "dev/%llu/t", (unsigned long long)i);
        mqtt_topic_tree_add(t, S(buf), i, 1, NULL);
        mqtt_topic_tree_add(t, S("dev/+/t"), i, 0, NULL);
    }
    for (uint64_t i = 1; i <= 3000; i += 2) {
        snprintf(buf, sizeof buf, "dev/%llu/t", (unsigned long long)i);
        cr_assert_eq(mqtt_topic_tree_remove(t, S(buf), i), HM_OK);
        cr_assert_eq(mqtt_topic_tree_remove(t, S("dev/+/t"), i), HM_OK);
    }
    cr_assert_eq(mqtt_topic_tree_count(t), 3000);
    for (uint64_t i = 1; i <= 3000; i++) {
        snprintf(buf, sizeof buf, "dev/%llu/t", (unsigned long long)i);
        mqtt_topic_tree_match(t, S(buf), &d);
        /* 1500 via "dev/+/t", plus the exact one for even i, merged. */
        cr_assert_eq(d.count, 1500, "topic %s: %zu", buf, d.count);
        if (i % 2 == 0)
            cr_assert_eq(d.items[find(&d, i)].qos, 1);
    }
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

/* The tree agrees with the one-by-one matcher on a grid of filters and
 * topics, including the awkward ones. */
Test(mqtt_topic_tree, tree_agrees_with_mqtt_topic_matches)
{
    static const char *filters[] = {"#",     "+",   "+/+",    "/+",    "a",
                                    "a/",    "a/+", "a/#",    "a/b",   "a/b/#",
                                    "+/b",   "+/#", "$SYS/#", "$SYS",  "a//b",
                                    "+/+/+", "/",   "/#",     "a/+/#", "+/b/#"};
    static const char *topics[] = {"a",  "a/",    "a/b",  "a/b/c", "/",
                                   "/a", "b",     "a//b", "$SYS",  "$SYS/x",
                                   "//", "a/c/b", "x/b",  "$x/b"};
    size_t nf = sizeof filters / sizeof *filters;
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    for (size_t i = 0; i < nf; i++)
        mqtt_topic_tree_add(t, S(filters[i]), i + 1, 0, NULL);
    for (size_t j = 0; j < sizeof topics / sizeof *topics; j++) {
        mqtt_topic_tree_match(t, S(topics[j]), &d);
        for (size_t i = 0; i < nf; i++) {
            bool want = matches(filters[i], topics[j]);
            bool got = find(&d, i + 1) != SIZE_MAX;
            cr_assert_eq(got, want, "filter %s topic %s: tree %d, want %d",
                         filters[i], topics[j], got, want);
        }
    }
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

Test(mqtt_topic_tree, a_topic_of_30000_levels_does_not_recurse)
{
    static char topic[59999]; /* "+/+/.../+": 30000 levels */
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    mqtt_deliveries d;
    mqtt_deliveries_init(&d);
    for (size_t i = 0; i < sizeof topic; i++)
        topic[i] = i % 2 ? '/' : '+';
    cr_assert_eq(mqtt_topic_tree_add(t, topic, sizeof topic, 1, 0, NULL),
                 HM_OK);
    for (size_t i = 0; i < sizeof topic; i += 2)
        topic[i] = 'x';
    mqtt_topic_tree_match(t, topic, sizeof topic, &d);
    cr_assert_eq(d.count, 1);
    mqtt_deliveries_fini(&d);
    mqtt_topic_tree_destroy(t);
}

static bool covers(const char *outer, const char *inner)
{
    return mqtt_topic_filter_covers(S(outer), S(inner));
}

Test(mqtt_topic_covers, wider_filters_cover_narrower_ones)
{
    cr_assert(covers("#", "a/+/b"));
    cr_assert(covers("a/#", "a/+/b"));
    cr_assert(covers("a/#", "a"));
    cr_assert(covers("a/#", "a/#"));
    cr_assert(covers("a/+", "a/b"));
    cr_assert(covers("a/+", "a/+"));
    cr_assert(covers("a/b", "a/b"));
    cr_assert(covers("+/+", "x/y"));
}

Test(mqtt_topic_covers, narrower_filters_do_not_cover_wider_ones)
{
    cr_assert_not(covers("a/+", "a/#"));
    cr_assert_not(covers("a/b", "a/+"));
    cr_assert_not(covers("a/+", "a"));
    cr_assert_not(covers("a/+", "a/b/c"));
    cr_assert_not(covers("a/b/#", "a"));
    cr_assert_not(covers("a", "a/b"));
    cr_assert_not(covers("a/#", "b"));
}

Test(mqtt_topic_covers, leading_wildcards_do_not_cover_dollar_topics_4_7_2_1)
{
    cr_assert_not(covers("#", "$SYS/#"));
    cr_assert_not(covers("+/x", "$SYS/x"));
    cr_assert(covers("$SYS/#", "$SYS/broker/+"));
}

/* The observer sees a filter's first subscriber and its last, nothing in
 * between: the distinct filters a cluster node tells the others. */
typedef struct seen_changes {
    int added, removed;
    char last[32];
} seen_changes;

static void observe(void *arg, const char *filter, size_t len, bool added)
{
    seen_changes *s = arg;

    if (added)
        s->added++;
    else
        s->removed++;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, filter);
}

Test(mqtt_topic_tree, the_observer_sees_first_and_last_subscribers_only)
{
    mqtt_topic_tree *t = mqtt_topic_tree_create();
    seen_changes s = {0};

    mqtt_topic_tree_observe(t, observe, &s);
    cr_assert_eq(mqtt_topic_tree_add(t, "a/+", 3, 1, 1, NULL), HM_OK);
    cr_assert_eq(mqtt_topic_tree_add(t, "a/+", 3, 2, 0, NULL), HM_OK);
    cr_assert_eq(mqtt_topic_tree_add(t, "a/+", 3, 1, 2, NULL), HM_OK);
    cr_assert_eq(s.added, 1);
    cr_assert_str_eq(s.last, "a/+");
    cr_assert_eq(mqtt_topic_tree_remove(t, "a/+", 3, 1), HM_OK);
    cr_assert_eq(s.removed, 0);
    cr_assert_eq(mqtt_topic_tree_remove(t, "a/+", 3, 2), HM_OK);
    cr_assert_eq(s.removed, 1);
    cr_assert_eq(mqtt_topic_tree_remove(t, "a/+", 3, 2), HM_ENOTFOUND);
    cr_assert_eq(s.removed, 1);
    mqtt_topic_tree_destroy(t);
}
