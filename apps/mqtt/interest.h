/* apps/mqtt/interest.h: which nodes of a cluster want which topics.
 *
 * Each node of an MQTT cluster tells the others the set of distinct filters
 * its subscription tree holds (aggregated over all its sessions); this
 * module keeps those sets, one per node, and answers "which nodes have a
 * filter matching this topic". The key decision is to reuse the
 * subscription tree (topic.h) as the matcher, with the node's number as the
 * subscriber token: one matcher, with the same wildcard and `$` rules
 * [MQTT-4.7.2-1], the same cost (O(topic levels) probes plus what matches),
 * and one result per node however many of its filters match. Beside the
 * tree each node's filters are kept in a string set, so that a node's
 * whole set can be listed (a snapshot), replaced or dropped (a dead node).
 *
 * Pure: no I/O, no locks, no threads; the caller serialises access. */
#ifndef HM_APPS_MQTT_INTEREST_H
#define HM_APPS_MQTT_INTEREST_H

#include "apps/mqtt/topic.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mqtt_interest mqtt_interest;

/* Returns owned, empty; never NULL. */
mqtt_interest *mqtt_interest_create(void);
/* Accepts NULL. */
void mqtt_interest_destroy(mqtt_interest *in);

/* Node `node` (non-zero, the caller's numbering) now has the valid filter
 * `filter` (borrowed; copied). Returns true if it is new for that node,
 * false if it had it already or the filter is invalid. */
bool mqtt_interest_add(mqtt_interest *in, uint32_t node, const char *filter,
                       size_t len);
/* Node `node` no longer has `filter`. Returns true if it had it. */
bool mqtt_interest_remove(mqtt_interest *in, uint32_t node, const char *filter,
                          size_t len);
/* Forgets every filter of `node` (it died, or a snapshot replaces them). */
void mqtt_interest_drop(mqtt_interest *in, uint32_t node);
/* How many filters `node` has. */
size_t mqtt_interest_count(const mqtt_interest *in, uint32_t node);

/* Calls `fn(arg, filter, len)` for each filter of `node` (borrowed for the
 * call; NUL-terminated). `fn` must not change `in`. Order unspecified. */
void mqtt_interest_foreach(const mqtt_interest *in, uint32_t node,
                           void (*fn)(void *arg, const char *filter,
                                      size_t len),
                           void *arg);

/* Replaces `out`'s contents with one entry per node having a filter that
 * matches the valid topic name `topic` (borrowed): `subscriber` is the
 * node's number (qos is 0 and means nothing). */
void mqtt_interest_match(const mqtt_interest *in, const char *topic, size_t len,
                         mqtt_deliveries *out);

#endif
