/* cluster/node.h: a Hermes node in a cluster: links, membership, presence
 * and routing, on top of net/ and the runtime.
 *
 * A node listens on its cluster address, dials its seeds, authenticates
 * every link with the shared secret (cluster/auth.h), learns the other
 * members from the ones it reaches and keeps one link to each (a full mesh).
 * The pure state machines (cluster/members.h, cluster/presence.h) decide;
 * this module only feeds them and carries out what they say.
 *
 * Key decision: everything runs as runtime receivers. "cluster/node" owns the
 * membership table and the presence registry and is ticked by a runtime
 * timer; "cluster/link/<id>" owns one TCP connection (handshake, inbound
 * lines); "cluster/peer/<name>" owns the outbound side of one member (the
 * bounded buffer while its link is down, the requests waiting for a reply).
 * An application address that lives on another node is activated locally as
 * a *proxy* receiver by the factory this module wraps around the
 * application's (hm_node_factory), so a remote receiver is reached with the
 * same hm_runtime_send as a local one. The I/O threads never run cluster
 * code. docs/cluster-links.md is the guide; docs/cluster.md the design.
 *
 * Life cycle, in this order:
 *   hm_node_create()  -> hm_runtime_create(.factory = hm_node_factory,
 *   .factory_arg = node) -> hm_net_create() -> hm_node_start() ... 
 *   hm_node_stop() -> hm_net_stop() -> hm_runtime_destroy()
 *   -> hm_net_destroy() -> hm_node_destroy(). */
#ifndef HM_CLUSTER_NODE_H
#define HM_CLUSTER_NODE_H

#include "cluster/members.h"
#include "net/net.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_node hm_node;

/* Called on the "cluster/node" receiver (a worker thread) after every
 * membership event: `name` (borrowed for the call) with incarnation `inc`.
 * Must be quick and must not call back into the node. */
typedef void (*hm_node_event_fn)(void *arg, const char *name, uint64_t inc,
                                 hm_member_event event);

/* Whether an address that is registered nowhere is a *placed* receiver (it
 * lives on the member chosen by rendezvous hashing) rather than a local one.
 * `name` is borrowed. Called from any worker, concurrently. NULL: no name
 * is placed (only presence names are routed to other nodes). */
typedef bool (*hm_node_placed_fn)(void *arg, const char *name);

/* Whether `name` (borrowed) is *homed*: it says in itself which node it lives
 * on (a connection receiver named after its node). If so, writes that node's
 * name into `node_out` (HM_NODE_NAME_MAX + 1 bytes) and returns true. A
 * homed name is routed to its node without presence, so there is no window
 * in which another node does not know it yet; if that node is not a live
 * member the name is treated as local (and the application's factory
 * refuses it). Called from any worker, concurrently. NULL: nothing is
 * homed. */
typedef bool (*hm_node_home_fn)(void *arg, const char *name, char *node_out);

typedef struct hm_node_config {
    const char *name;        /* this node's name, [A-Za-z0-9._-]{1,64} */
    const char *cluster;     /* NULL: "hermes" */
    const char *listen;      /* "HOST:PORT"; port 0: ephemeral */
    const char *const *seeds; /* "HOST:PORT" each; NULL or `seed_count` 0 */
    size_t seed_count;
    const char *secret_file; /* mode 0600; or `secret` below */
    const void *secret;      /* raw secret bytes (tests, embedders) */
    size_t secret_len;
    hm_members_config timers; /* self_* fields are filled in by the node */
    uint32_t tick_ms;         /* failure detector resolution [20] */
    uint32_t buffer_limit;    /* messages per peer while its link is down
                                 [10000] */
    uint32_t request_timeout_ms; /* a request from another node waits for
                                    its local reply so long [30000] */
    hm_factory_fn factory;   /* the application's factory (may be NULL) */
    void *factory_arg;
    hm_node_placed_fn placed; /* see above; NULL: none */
    void *placed_arg;
    hm_node_home_fn home;     /* see above; NULL: none */
    void *home_arg;
    hm_node_event_fn on_event; /* optional */
    void *event_arg;
} hm_node_config;

/* Validates `cfg` (borrowed; strings copied) and loads the secret. Returns
 * owned on HM_OK. Nothing runs until hm_node_start(); meanwhile
 * hm_node_factory() routes every name to the application's factory.
 * Errors: HM_EINVAL (a bad name, address or timer), and those of
 * hm_auth_secret_load() (HM_ESYS, HM_EDENIED, HM_EINVAL), each logged. */
hm_err hm_node_create(const hm_node_config *cfg, hm_node **out);

/* The factory to give hm_runtime_create(), with the node as its argument.
 * It activates a proxy for an address that lives on another node, refuses
 * the cluster's own names, and calls the application's factory for the
 * rest. Called on workers, concurrently. */
hm_err hm_node_factory(void *node, const char *name, hm_receiver *out);

/* Starts the node on `rt` and `net` (both borrowed until hm_node_stop()
 * returns): registers the message types that cross links, listens, spawns
 * the cluster receivers, arms the tick and dials the seeds.
 * Errors: HM_EEXIST (address in use), HM_EINVAL, HM_ESYS, HM_ECLOSED. Call
 * it once, from outside the runtime. */
hm_err hm_node_start(hm_node *n, hm_runtime *rt, hm_net *net);

/* Leaves the cluster gracefully: every peer is told (they report LEFT, not
 * DEAD), links are closed after the LEAVE lines are flushed (bounded by
 * `wait_ms`), the listener is closed and the tick cancelled. Idempotent.
 * Call from outside the runtime, before hm_net_stop(). */
void hm_node_stop(hm_node *n, uint32_t wait_ms);

/* Frees the node. Call after hm_runtime_destroy(). Accepts NULL. */
void hm_node_destroy(hm_node *n);

/* This node's name and its cluster address as advertised (the real port
 * when the configured one was 0). Return borrowed until destroy. */
const char *hm_node_name(const hm_node *n);
const char *hm_node_addr(const hm_node *n);
uint64_t hm_node_inc(const hm_node *n);

/* Registers `name` (borrowed) in presence as living on this node (a chat
 * user, an MQTT connection): messages to it from other nodes come here.
 * Asynchronous: the "cluster/node" receiver applies it, then every peer
 * learns it. Thread-safe, also from a handler. Errors: HM_EINVAL (empty,
 * too long or not UTF-8), HM_ECLOSED (not started or stopped). */
hm_err hm_node_register(hm_node *n, const char *name);
hm_err hm_node_unregister(hm_node *n, const char *name);

/* Where `name` (borrowed) lives now: this node's name, another member's,
 * copied into `node_out` (HM_NODE_NAME_MAX + 1 bytes). Presence first, then
 * placement if the name is placed. Errors: HM_ENOTFOUND (registered
 * nowhere and not placed: it is local). Thread-safe. */
hm_err hm_node_lookup(hm_node *n, const char *name, char *node_out);

/* One member as this node sees it. */
typedef struct hm_node_member {
    hm_member_info info;     /* name, addr, inc, state, linked, last heard */
    uint32_t buffered;       /* messages waiting for its link */
    size_t write_queue_len;  /* bytes queued on its link */
    uint64_t undeliverable;  /* messages for it that were dropped */
} hm_node_member;

/* Copies up to `cap` members (ourselves excluded) into `out` (borrowed) and
 * returns how many there are in all. Thread-safe: a snapshot refreshed by
 * the node receiver at every change and tick. */
size_t hm_node_members(hm_node *n, hm_node_member *out, size_t cap);

/* Counters. Thread-safe, relaxed. */
typedef struct hm_node_stats {
    uint64_t sent_remote;      /* app messages written to links */
    uint64_t received_remote;  /* app messages delivered from links */
    uint64_t undeliverable;    /* dropped: peer dead, buffer full, one hop */
    uint64_t auth_refused;     /* links refused by the handshake */
    uint64_t links_up;         /* authenticated links that came up */
    uint64_t route_changes;    /* changes of the routing view (the live
                                  members, presence's names): each makes
                                  every proxy resolve its name again */
} hm_node_stats;

void hm_node_stats_get(hm_node *n, hm_node_stats *out);

#endif
