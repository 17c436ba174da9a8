/* apps/mqtt/cluster.h: the broker's cluster mode, private to apps/mqtt/.
 *
 * In cluster mode every broker process is a Hermes node (cluster/node.h):
 * clients connect to any node, and a publish reaches every matching
 * subscriber on every node. This module owns the node and one receiver per
 * node, "mqtt/fanout/<node name>", registered in presence so that the other
 * nodes reach it by name. The fanout receiver takes what crosses nodes:
 * publishes to route into this node's tree (never sent on: the cluster's
 * one-hop rule), the other nodes' aggregated subscription filters, and
 * retained messages. docs/mqtt.md ("Cluster mode") is the guide and
 * docs/adr/0100 the decision.
 *
 * Without cluster settings none of this exists (mqtt_broker.cluster is
 * NULL) and the broker's paths test one pointer. */
#ifndef HM_APPS_MQTT_CLUSTER_H
#define HM_APPS_MQTT_CLUSTER_H

#include "apps/mqtt/broker.h"
#include "apps/mqtt/topic.h"
#include "cluster/node.h"
#include "runtime/runtime.h"

typedef struct mqtt_cluster mqtt_cluster;

#define MQTT_FANOUT_PREFIX "mqtt/fanout/"

/* "mqtt.cl.pub": a publish crossing nodes, with its JSON codec
 * {"o": origin node, "t": topic, "p": payload in base64, "q": QoS,
 * "d": deliver, "r": retained write, "ts": retained stamp}. Exposed for the
 * fuzz target (fuzz/fuzz_mqtt_cluster.c). */
extern const hm_type mqtt_cl_pub_type;

/* Creates the node from `cfg`'s cluster fields (borrowed; copied), with
 * `factory`/`factory_arg` as the application's factory it wraps. Nothing
 * runs yet: give the runtime hm_node_factory with mqtt_cluster_node() as
 * its argument. Returns owned on HM_OK. Errors: those of hm_node_create(). */
hm_err mqtt_cluster_create(struct mqtt_broker *b, const mqtt_broker_config *cfg,
                           hm_factory_fn factory, void *factory_arg,
                           mqtt_cluster **out);
/* Borrowed until destroy. */
hm_node *mqtt_cluster_node(mqtt_cluster *cl);

/* Registers the types that cross links, starts the node on `rt` and `net`
 * (borrowed until stop), spawns and registers the fanout receiver. Call
 * once, from outside the runtime, after hm_net_create(). Errors: those of
 * hm_node_start() and hm_runtime_spawn(). */
hm_err mqtt_cluster_start(mqtt_cluster *cl, hm_runtime *rt, hm_net *net);

/* Leaves the cluster gracefully (peers report LEFT). Before hm_net_stop().
 * Idempotent. */
void mqtt_cluster_stop(mqtt_cluster *cl);

/* Routes `pub` (borrowed) published on this node: stores it as retained
 * when `retain` (stamped, replicated to every member), routes it to the
 * local subscribers (mqtt_broker_route_local), then sends it once to each
 * other node with a matching filter. Topics starting with '$' stay here.
 * `d` is the caller's scratch vector. Thread-safe. */
struct mqtt_pub;
void mqtt_cluster_route(mqtt_cluster *cl, hm_ctx *ctx, mqtt_deliveries *d,
                        struct mqtt_pub *pub, bool retain);

/* Publishes the cluster's $SYS figures through `put(arg, topic, value)`
 * (strings borrowed for the call). Thread-safe. */
typedef void (*mqtt_sys_put_fn)(void *arg, const char *topic,
                                const char *value);
void mqtt_cluster_sys(mqtt_cluster *cl, mqtt_sys_put_fn put, void *arg);

/* A session moving away from this node (a member joined and placement
 * moved it, or this node is leaving): its subscriptions stay in this
 * node's tree under `token`, so what matches here still reaches it, until
 * every live member has the new owner's filters (cluster_move.c). */
typedef struct mqtt_move {
    char *client_id; /* owned */
    char *to;        /* owned: the new owner's node name */
    hm_addr *token;  /* owned reference: the entries' token, told when done */
    char **filters;  /* owned, `count` NUL-terminated filters */
    size_t count;
} mqtt_move;

/* Starts forwarding for `mv` (taken): when every live member has the new
 * owner's filters (or after a bound), the entries go and "mqtt.mv.done"
 * goes to the token. Thread-safe. */
void mqtt_cluster_move_begin(mqtt_cluster *cl, mqtt_move *mv);
/* The session `client_id` (borrowed) was adopted here from node `old`
 * (borrowed) and its filters are in the tree: every member is told, after
 * our filters, so that `old` learns when it may stop forwarding.
 * Thread-safe. */
void mqtt_cluster_move_sync(mqtt_cluster *cl, const char *client_id,
                            const char *old);
/* The move of `client_id` from here to `from` goes to `to` instead (all
 * borrowed): `from` died before the move was over, and the leaving session
 * handed its kept state to `to` (ADR 0260). The move waits for `to`'s sync
 * and every member's cut again. Thread-safe. */
void mqtt_cluster_move_retarget(mqtt_cluster *cl, const char *client_id,
                                const char *from, const char *to);
/* The number of moves still forwarding from here. Thread-safe. */
uint32_t mqtt_cluster_moves_open(mqtt_cluster *cl);
/* Frees `mv` (taken; NULL accepted). */
void mqtt_move_destroy(mqtt_move *mv);

/* Custody (ADR 0225): while a session that moved away from here is not
 * yet known to be safe at its new owner, this node keeps its state and
 * gives it back if that owner dies. `on` adds or removes `client_id`
 * (borrowed); a fail-over here skips the stored record of a client id in
 * custody (the kept state is newer). Thread-safe; `cl` may be NULL. */
void mqtt_cluster_custody_set(mqtt_cluster *cl, const char *client_id,
                              bool on);
bool mqtt_cluster_custody_has(mqtt_cluster *cl, const char *client_id);

/* Frees the node. After hm_runtime_destroy(). Accepts NULL. */
void mqtt_cluster_destroy(mqtt_cluster *cl);

#endif
