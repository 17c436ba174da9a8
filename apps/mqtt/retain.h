/* apps/mqtt/retain.h: the retained-message store.
 *
 * A PUBLISH with RETAIN=1 replaces the message kept for its topic, and one
 * with an empty payload clears it [MQTT-3.3.1-10/11]; a new subscription
 * receives every retained message its filter matches [MQTT-3.3.1-6]. The
 * store is a trie of topic levels (the same as the subscription tree's),
 * walked by the new filter: a literal level follows one child, `+` every
 * child, `#` the whole subtree. So finding the retained messages for a
 * filter costs O(L) probes plus the nodes under its wildcards, not a scan
 * of every retained topic, and topics starting with `$` are skipped by a
 * filter starting with a wildcard [MQTT-4.7.2-1]. */
#ifndef HM_APPS_MQTT_RETAIN_H
#define HM_APPS_MQTT_RETAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mqtt_retain_store mqtt_retain_store;

/* A retained message as the store lends it out: views into store-owned
 * memory. `topic` is also NUL-terminated. */
typedef struct mqtt_retained {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
} mqtt_retained;

/* Called once per matching message; `msg` is borrowed for the call. The
 * callback must not modify the store. */
typedef void (*mqtt_retain_fn)(void *arg, const mqtt_retained *msg);

/* Returns owned; never NULL. Not thread-safe: one owner. */
mqtt_retain_store *mqtt_retain_create(void);
/* Accepts NULL. */
void mqtt_retain_destroy(mqtt_retain_store *s);

/* Keep `payload` (borrowed; copied) as the retained message of the valid
 * topic name `topic` (borrowed; copied) with `qos`, replacing any previous
 * one; an empty payload removes it instead. */
void mqtt_retain_set(mqtt_retain_store *s, const char *topic, size_t topic_len,
                     const void *payload, size_t payload_len, uint8_t qos);

/* The retained message of exactly `topic`, or false. On true `*out`
 * borrows the store until its next modification. */
bool mqtt_retain_get(const mqtt_retain_store *s, const char *topic,
                     size_t topic_len, mqtt_retained *out);

/* Call `fn(arg, msg)` for every retained message whose topic the valid
 * filter `filter` (borrowed) matches. `arg` is borrowed. Order is
 * unspecified. */
void mqtt_retain_match(const mqtt_retain_store *s, const char *filter,
                       size_t filter_len, mqtt_retain_fn fn, void *arg);

/* The number of retained messages (for $SYS/broker/retained messages). */
size_t mqtt_retain_count(const mqtt_retain_store *s);

#endif
