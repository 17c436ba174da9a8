/* cluster/presence.h: the replicated registry of names (who is where).
 *
 * A receiver (a chat user, an MQTT connection) is registered under a name on
 * the node where it lives, its *origin*. Every node keeps a replica of every
 * origin's names, so a lookup is local and answers "which node holds this
 * name". The module is a pure state machine like members.h: the driver
 * feeds it link changes, member deaths, messages and the time, and sends
 * the messages it outputs.
 *
 * Key decision: every origin is the only writer of its own names, so there
 * are no merge conflicts to resolve, only versions to compare. Each origin
 * numbers its changes 1, 2, 3... within its incarnation. A change goes to
 * every linked peer as a delta; a peer applies a delta only if it is exactly
 * the next version, and otherwise asks for a snapshot (all of one origin's
 * names at one version) that replaces its replica wholesale. A snapshot of
 * our own names goes to each peer whose link comes up, and every
 * `digest_interval_ms` each node tells its peers which (incarnation,
 * version) it holds for every origin, so that whatever a lost or reordered
 * message left behind is repaired by one snapshot request. A dead origin's
 * names are dropped and its incarnation remembered, so a late message can
 * never bring them back; a new incarnation starts from nothing.
 *
 * Not thread-safe: one owner (the cluster actor) calls everything. */
#ifndef HM_CLUSTER_PRESENCE_H
#define HM_CLUSTER_PRESENCE_H

#include "cluster/wire.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_presence hm_presence;

typedef struct hm_presence_config {
    const char *self_name;       /* borrowed for the call; copied */
    uint64_t self_inc;           /* > 0 */
    uint32_t digest_interval_ms; /* anti-entropy period [1000] */
    uint32_t request_retry_ms;   /* between snapshot requests [250] */
} hm_presence_config;

/* One message to send: `msg` to `peer`. */
typedef struct hm_presence_action {
    char peer[HM_NODE_NAME_MAX + 1];
    hm_wire_msg msg; /* owned by the action; hm_wire_msg_fini it */
} hm_presence_action;

/* Create a registry holding no names. `cfg` is borrowed. Returns owned in
 * `*out`. Errors: HM_EINVAL if the name is not valid or the inc is 0. */
hm_err hm_presence_create(const hm_presence_config *cfg, hm_presence **out);

/* Accepts NULL. Pending actions are discarded. */
void hm_presence_destroy(hm_presence *p);

/* --------------------------------------------------- local registrations */

/* Register `name` (borrowed, copied) on this node and tell every linked
 * peer. Errors: HM_EEXIST if it is already registered here; HM_EINVAL if it
 * is empty, longer than HM_PRES_NAME_MAX or not UTF-8. */
hm_err hm_presence_register(hm_presence *p, const char *name, uint64_t now_ms);

/* Unregister `name` (borrowed) from this node and tell every linked peer.
 * Errors: HM_ENOTFOUND if it is not registered here. */
hm_err hm_presence_unregister(hm_presence *p, const char *name,
                              uint64_t now_ms);

/* ------------------------------------------------------------- inputs */

/* The link to member `peer` (borrowed) is up: it gets our snapshot and from
 * now on our deltas and digests. */
void hm_presence_on_link_up(hm_presence *p, const char *peer, uint64_t now_ms);

/* The link to `peer` is down: nothing more is sent to it. */
void hm_presence_on_link_down(hm_presence *p, const char *peer);

/* Member (origin, inc) died, left or was replaced: drop its names, and
 * refuse anything about that incarnation or an older one from now on. */
void hm_presence_on_node_gone(hm_presence *p, const char *origin, uint64_t inc);

/* Member (origin, inc) is up again after it was reported gone with the
 * same incarnation (it was falsely declared dead, for instance through a
 * long partition): accept its names again. Its snapshot follows on the
 * link, so nothing else is needed. */
void hm_presence_on_node_up(hm_presence *p, const char *origin, uint64_t inc);

/* A presence message `msg` (borrowed) arrived from `from` (borrowed):
 * PRES_DELTA, PRES_SNAPSHOT, PRES_REQUEST or PRES_DIGEST.
 * Errors: HM_EINVAL for another type (not ours to handle). */
hm_err hm_presence_on_message(hm_presence *p, const char *from,
                              const hm_wire_msg *msg, uint64_t now_ms);

/* Time passed: send the periodic digests. */
void hm_presence_tick(hm_presence *p, uint64_t now_ms);

/* Pop the oldest pending message into `*out` (borrowed storage); false if
 * none. The caller then owns `out->msg` and must hm_wire_msg_fini it. */
bool hm_presence_next_action(hm_presence *p, hm_presence_action *out);

/* ------------------------------------------------------------ queries */

/* The node where `name` (borrowed) is registered, copied into `origin`
 * (HM_NODE_NAME_MAX + 1 bytes, borrowed). A name registered on several
 * nodes at once (two logins racing) resolves the same way everywhere:
 * this node if it is one of them, else the smallest origin name.
 * Errors: HM_ENOTFOUND. */
hm_err hm_presence_lookup(const hm_presence *p, const char *name, char *origin);

/* How many times the name sets that hm_presence_lookup() reads have
 * changed (a registration, a delta, a snapshot, a dead node's names
 * dropped). A caller that caches lookups resolves again when it moves;
 * it may move without a lookup's answer changing, never the other way. */
uint64_t hm_presence_changes(const hm_presence *p);

/* Number of names registered on `origin` (borrowed) as we know it. */
size_t hm_presence_count(const hm_presence *p, const char *origin);

/* The (incarnation, version) we hold for `origin` (borrowed).
 * Errors: HM_ENOTFOUND if we hold nothing for it. */
hm_err hm_presence_version(const hm_presence *p, const char *origin,
                           uint64_t *inc, uint64_t *version);

/* Calls `fn` for every name registered on `origin`, in no set order.
 * `name` is borrowed for the call; `fn` must not call into `p`. */
void hm_presence_foreach(const hm_presence *p, const char *origin,
                         void (*fn)(void *arg, const char *name), void *arg);

#endif
