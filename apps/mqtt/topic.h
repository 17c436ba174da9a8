/* apps/mqtt/topic.h: topic names, topic filters, and the subscription tree
 * that maps a published topic to the subscribers who get it.
 *
 * The tree is a trie keyed by topic levels; the key decision is that a
 * publish walks only the branches its topic can reach: at each level the
 * literal child (one hash probe), the `+` child and the `#` child, so its
 * cost depends on the topic's depth and on how many filters actually
 * match, not on how many subscriptions exist. Complexity, for a topic of L
 * levels: match is O(L) probes when no wildcard filters exist, and at worst
 * O(V + S) where V is the number of trie nodes the wildcards let it reach
 * (at most 2^L, never more than the trie's size) and S the subscriptions
 * found; add and remove are O(L) expected. When one topic reaches several
 * filters of one subscriber, the result still holds one delivery for it, at
 * the highest granted QoS [MQTT-3.3.5-1]: an O(S) hash merge that only
 * runs when more than one node matched.
 *
 * Strings here are byte ranges (pointer and length), not C strings, since
 * they come straight from packet views. Validation of UTF-8 is the codec's
 * job; these functions check the topic rules of section 4.7. */
#ifndef HM_APPS_MQTT_TOPIC_H
#define HM_APPS_MQTT_TOPIC_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Topic names and filters fit a 2-byte length [MQTT-4.7.3-3]. */
#define MQTT_TOPIC_MAX_LEN 65535u

/* A valid topic name (what PUBLISH carries): 1 to 65535 bytes
 * [MQTT-4.7.3-1], no U+0000 [MQTT-4.7.3-2], no wildcard [MQTT-3.3.2-2].
 * Borrows `s`. */
bool mqtt_topic_name_is_valid(const char *s, size_t len);

/* A valid topic filter: 1 to 65535 bytes, no U+0000, `#` only as a whole
 * last level [MQTT-4.7.1-2], `+` only as a whole level [MQTT-4.7.1-3].
 * Empty levels ("a//b", "/a") are valid. Borrows `s`. */
bool mqtt_topic_filter_is_valid(const char *s, size_t len);

/* Whether the valid filter `filter` matches the valid topic name `topic`,
 * by the rules of section 4.7, including that a topic starting with `$` is
 * not matched by a filter starting with a wildcard [MQTT-4.7.2-1]. One
 * comparison, O(len): for ACL checks and tests; the tree does it in bulk.
 * Borrows both. */
bool mqtt_topic_matches(const char *filter, size_t filter_len,
                        const char *topic, size_t topic_len);

/* Whether every topic the valid filter `inner` matches is also matched by
 * the valid filter `outer` ("a/#" covers "a/+/b" and "a"; "a/+" does not
 * cover "a/#"). For authorising a subscription against ACL filters. A
 * plain topic name is a filter that covers only itself. O(len). Borrows
 * both. */
bool mqtt_topic_filter_covers(const char *outer, size_t outer_len,
                              const char *inner, size_t inner_len);

/* ------------------------------------------------------ subscription tree */

typedef struct mqtt_topic_tree mqtt_topic_tree;

/* A subscriber is an opaque non-zero 64-bit token chosen by the broker
 * (a session number, say). */
typedef struct mqtt_delivery {
    uint64_t subscriber;
    uint8_t qos;
} mqtt_delivery;

/* The result of a match: a caller-owned vector that is reused from one
 * match to the next, so a broker that keeps one per worker allocates only
 * while it grows. */
typedef struct mqtt_deliveries {
    mqtt_delivery *items; /* private storage: read items[0..count) */
    size_t count;
    size_t cap;
    void *scratch; /* private: the walk's stack, then the merge's hash */
    size_t scratch_len;
} mqtt_deliveries;

/* Storage provided by the caller. */
void mqtt_deliveries_init(mqtt_deliveries *d);
/* Accepts NULL. */
void mqtt_deliveries_fini(mqtt_deliveries *d);

/* Returns owned: an empty tree. Never NULL. Not thread-safe: the broker
 * keeps it in one receiver. */
mqtt_topic_tree *mqtt_topic_tree_create(void);
/* Accepts NULL. */
void mqtt_topic_tree_destroy(mqtt_topic_tree *t);

/* Subscribe `subscriber` (non-zero) to the valid filter `filter`
 * (borrowed; copied) with `qos` (0..2). A subscriber already subscribed to
 * the same filter has its QoS replaced [MQTT-3.8.4-3]. On HM_OK writes to
 * `*is_new_out` (may be NULL) whether the subscription is new.
 * Errors: HM_EINVAL for an invalid filter, a zero subscriber or QoS > 2. */
hm_err mqtt_topic_tree_add(mqtt_topic_tree *t, const char *filter, size_t len,
                           uint64_t subscriber, uint8_t qos, bool *is_new_out);

/* Unsubscribe `subscriber` from `filter` (borrowed), compared byte for
 * byte [MQTT-3.10.4-1]. Errors: HM_ENOTFOUND if it was not subscribed. */
hm_err mqtt_topic_tree_remove(mqtt_topic_tree *t, const char *filter,
                              size_t len, uint64_t subscriber);

/* Called when a filter gains its first subscriber (`added` true) or loses
 * its last one (false): the distinct filters a tree holds, for a cluster
 * node to tell the others (interest.h). `filter` is borrowed for the
 * call. Runs inside add/remove, so under whatever lock guards the tree;
 * it must not call back into the tree. */
typedef void (*mqtt_topic_filter_fn)(void *arg, const char *filter,
                                     size_t len, bool added);
/* Sets (or with NULL clears) the tree's one observer; `arg` borrowed. */
void mqtt_topic_tree_observe(mqtt_topic_tree *t, mqtt_topic_filter_fn fn,
                             void *arg);

/* The number of (filter, subscriber) subscriptions in the tree. */
size_t mqtt_topic_tree_count(const mqtt_topic_tree *t);

/* Replace `out`'s contents with one delivery per subscriber whose filters
 * match the valid topic name `topic` (borrowed), at the highest QoS among
 * its matching subscriptions. Order is unspecified. */
void mqtt_topic_tree_match(const mqtt_topic_tree *t, const char *topic,
                           size_t len, mqtt_deliveries *out);

#endif
