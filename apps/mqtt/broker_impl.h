/* apps/mqtt/broker_impl.h: what the broker's files share (broker.c,
 * conn.c, session.c, sys.c); nothing outside apps/mqtt/ includes it.
 *
 * The messages the receivers exchange, the refcounted published message
 * they fan out, and the broker's shared state. Sharing rules (ADR 0050): the
 * subscription tree and the retained store are read by any number of
 * receivers at once under their reader-writer locks and changed under the
 * write side; the counters are relaxed atomics, read only for $SYS. */
#ifndef HM_APPS_MQTT_BROKER_IMPL_H
#define HM_APPS_MQTT_BROKER_IMPL_H

#include "apps/mqtt/acl.h"
#include "apps/mqtt/broker.h"
#include "apps/mqtt/codec.h"
#include "apps/mqtt/outbox.h"
#include "apps/mqtt/passwd.h"
#include "apps/mqtt/persist.h"
#include "apps/mqtt/retain.h"
#include "apps/mqtt/session_msg.h"
#include "apps/mqtt/topic.h"
#include "cluster/members.h"
#include "net/conn.h"
#include "net/net.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdatomic.h>

#define MQTT_CONN_PREFIX "mqtt/conn/"
#define MQTT_SESSION_PREFIX "mqtt/session/"
/* In a cluster, a session for a client whose placed session is on a member
 * this node cannot reach now (a partition): local, clean, temporary. */
#define MQTT_FALLBACK_PREFIX "mqtt/fallback/"
#define MQTT_SYS_NAME "mqtt/sys"
/* In a cluster, "mqtt/inbox/<node>/<client id>", homed on <node>: where a
 * leaving node's session sends its state and what it forwards
 * (session_move.c). */
#define MQTT_INBOX_PREFIX "mqtt/inbox/"
/* In a cluster, "mqtt/fwd/<client id>": on the node a session moved away
 * from, the token of the subscriptions it left there, which relays what
 * they match to the session's name (session_move.c). */
#define MQTT_FWD_PREFIX "mqtt/fwd/"

/* One listening socket; the accept callback's argument. */
typedef struct mqtt_endpoint {
    mqtt_broker *b;
    bool ws; /* MQTT over WebSocket */
    hm_listener *listener;
    int port;
} mqtt_endpoint;

struct mqtt_cluster;

struct mqtt_broker {
    mqtt_broker_config cfg; /* defaults filled in; strings owned below */
    struct mqtt_cluster *cluster; /* cluster mode, or NULL (cluster.h) */
    char *host, *password_file, *acl_file;
    char *persistence_location, *persistence_redis;
    hm_runtime *rt;
    hm_net *net;
    struct hm_node *node; /* cluster mode; NULL: a single node */
    hm_addr *members;     /* cluster mode: "mqtt/members/<node>" */
    mqtt_endpoint *endpoints;
    size_t endpoint_count;
    mqtt_limits limits;
    hm_framer framer;    /* the MQTT framer, as net plugs it in */
    hm_framer ws_framer; /* WebSocket: every read's bytes as they come */
    uint64_t start_ms;   /* hm_runtime_now_ms() at creation */
    bool stopped;        /* main thread only */
    pthread_rwlock_t tree_lock;
    mqtt_topic_tree *tree; /* guarded by: tree_lock */
    /* Taken before tree_lock when both are held: a retained publish holds
     * it (write) across its routing and a SUBSCRIBE (read) across adding
     * the filter and reading the retained messages, so a message is either
     * retained before the subscription or routed to it, never both
     * (ADR 0255). */
    pthread_rwlock_t retain_lock;
    mqtt_retain_store *retained; /* guarded by: retain_lock */
    pthread_rwlock_t auth_lock;  /* swapped whole on SIGHUP (ADR 0050) */
    mqtt_passwd *passwd;         /* guarded by: auth_lock; NULL: none */
    mqtt_acl *acl;               /* guarded by: auth_lock; NULL: none */
    /* Counters, all relaxed: each is a statistic, read only for $SYS and
     * the connection limit, and orders nothing else. */
    _Atomic uint64_t conns_open; /* connection receivers alive */
    _Atomic uint64_t connected;  /* sessions with a connection */
    _Atomic uint64_t sessions;   /* session receivers alive */
    _Atomic uint64_t received;   /* PUBLISH packets received */
    _Atomic uint64_t sent;       /* PUBLISH packets sent */
    _Atomic uint64_t dropped;    /* messages dropped on a full queue */
    _Atomic uint64_t link_stalls; /* sessions' sends held on HM_EFULL */
    _Atomic uint64_t link_held;   /* messages those stalls held */
    _Atomic uint64_t link_notices; /* room notices stalled sessions took */
    _Atomic uint64_t link_retries; /* timer retries they took (ADR 0300) */
    /* A clean leave began (set once by the main thread, read by sessions,
     * relaxed: a session that misses it was collected by the leave): a
     * state adopted here from then on moves on at once (ADR 0260). */
    _Atomic bool leaving;
    /* Persistence (saver.c, docs/adr/0111); all zero when it is off. Set
     * before the runtime runs a receiver, read-only afterwards. */
    mqtt_persist *persist;
    bool durable_always; /* acks and session output wait for the commit */
    uint32_t autosave_ms; /* interval policy: period; 0 = at shutdown only */
};

/* ------------------------------------------------ a published message */

/* One published message, shared read-only by every session it is
 * delivered to (fan-out copies a pointer, not the payload). */
typedef struct mqtt_receipt mqtt_receipt;
typedef struct mqtt_pub {
    _Atomic uint32_t refs; /* relaxed adds; the acq_rel last drop frees */
    /* With the `always` policy, the publisher's acknowledgement waits on
     * this (saver.c); NULL otherwise. Each delivery message of the pub
     * owns one unit of it, which the session releases once the message is
     * committed (or at once if it is not kept). */
    mqtt_receipt *receipt;
    uint8_t qos;
    bool retain; /* the RETAIN flag to send it with */
    /* In a cluster: the publish's identity, the same on every node it
     * reaches (a hash of the node that routed it first, and that node's
     * count), so a session that moves can drop the copy it gets twice
     * (session_move.c). 0: none. */
    uint64_t origin, seq;
    size_t topic_len;
    size_t payload_len;
    char *topic; /* NUL-terminated, inside the same allocation */
    uint8_t *payload;
} mqtt_pub;

/* Returns owned (one reference); copies `topic` and `payload`. */
mqtt_pub *mqtt_pub_create(const void *topic, size_t topic_len,
                          const void *payload, size_t payload_len, uint8_t qos,
                          bool retain);
/* Takes another reference. Returns `p`. */
mqtt_pub *mqtt_pub_ref(mqtt_pub *p);
/* Drops a reference (void * so it serves as a free hook). Accepts NULL. */
void mqtt_pub_release(void *p);

/* ------------------------------------------ messages between receivers */

/* The connection <-> session messages are in session_msg.h. */

/* ------------------------------------------------- persistence (saver.c) */

/* A publisher's acknowledgement waiting for commits: counted units, one
 * for the connection and one per delivery or store operation that must be
 * committed first. The last unit released sends "mqtt.durable" (arg:
 * `seq`) to the connection. Thread-safe. */
mqtt_receipt *mqtt_receipt_create(mqtt_broker *b, hm_addr *conn, uint64_t seq);
/* One more unit. Returns `r`. */
mqtt_receipt *mqtt_receipt_ref(mqtt_receipt *r);
/* Releases a unit (void * to serve as a free hook); the last one tells the
 * connection. Accepts NULL. */
void mqtt_receipt_release(void *r);
/* Releases the caller's unit without telling anyone: true if it was the
 * last (the acknowledgement is due now). */
bool mqtt_receipt_drop(mqtt_receipt *r);

/* receipt -> conn: the publish `arg` (the connection's sequence number) is
 * durable; acknowledge it. */
extern const hm_type mqtt_durable_type;
/* saver -> session: save number `arg` is committed. */
extern const hm_type mqtt_saved_type;
/* -> session: save now if dirty (from itself, or from the broker at
 * shutdown). */
extern const hm_type mqtt_flush_type;
/* mqtt_restore and mqtt_restore_type (a stored session for its session
 * receiver) are in session_msg.h: a fail-over's may cross a link. */

/* Opens the store the config names, loads retained messages into the
 * store, spawns "mqtt/persist" and restores every stored session (their
 * subscriptions are in the tree when this returns). A no-op when
 * persistence is off. Errors: HM_ESTORE (logged as "FILE: what is
 * wrong"), those of hm_runtime_spawn(). */
hm_err mqtt_saver_start(mqtt_broker *b);
/* Cluster member `node` (borrowed) died: restores from the shared store
 * the persistent sessions it held that now place on this node
 * (docs/adr/0160). Only a send to "mqtt/persist"; a no-op unless the store
 * is Redis and this is a cluster node. Thread-safe. */
void mqtt_saver_failover(mqtt_broker *b, const char *node);
/* Asks every session to save and waits (bounded) for the commits. */
void mqtt_saver_stop(mqtt_broker *b);
/* Closes the store (after the runtime is destroyed). Accepts a broker
 * without persistence. */
void mqtt_saver_close(mqtt_broker *b);
/* Stores `pub` (borrowed) as retained (an empty payload deletes), taking
 * a unit of its receipt if it has one. `$` topics are not stored. */
void mqtt_saver_retained(mqtt_broker *b, const mqtt_pub *pub);
/* Records (`add`) or forgets an inbound QoS 2 id of a persistent client
 * (borrowed). Takes `r` (a unit, or NULL). */
void mqtt_saver_inbound(mqtt_broker *b, const char *client_id, uint16_t pid,
                        bool add, mqtt_receipt *r);
/* A session's save number `save`: `record` (taken; NULL deletes the
 * session) and `receipts` (taken, the array too; units released after the
 * commit). After the commit "mqtt.saved" goes to `reply_to` (borrowed;
 * NULL: nobody). Borrows `client_id`. */
void mqtt_saver_session(mqtt_broker *b, const char *client_id,
                        uint8_t *record, size_t len, hm_addr *reply_to,
                        uint64_t save, mqtt_receipt **receipts, size_t n);

/* Encodes `p` (borrowed) as it goes on the wire (in one binary WebSocket
 * frame when `ws`): owned bytes in `*buf_out` on HM_OK. Errors:
 * HM_EINVAL if it cannot be encoded. */
hm_err mqtt_packet_bytes(bool ws, const mqtt_packet *p, uint8_t **buf_out,
                         size_t *len_out);

/* ------------------------------------------------------------- shared */

/* Routes `pub` (borrowed) from a receiver: stores it as retained first when
 * `retain` (an empty payload clears), then sends it to every matching
 * session, once each, at the highest granted QoS. `d` is the caller's
 * scratch vector. Thread-safe: takes the locks it needs. */
void mqtt_broker_route(mqtt_broker *b, hm_ctx *ctx, mqtt_deliveries *d,
                       mqtt_pub *pub, bool retain);

/* The local half of mqtt_broker_route(): `pub` (borrowed) to this node's
 * matching sessions only, no retained store (cluster.c, for publishes
 * that came from another node). Thread-safe. */
void mqtt_broker_route_local(mqtt_broker *b, hm_ctx *ctx, mqtt_deliveries *d,
                             mqtt_pub *pub);

/* Encodes `p` (borrowed) and queues it on `c`, in one binary WebSocket
 * frame when `ws`. Errors: those of hm_conn_write_take(), HM_EINVAL if it
 * cannot be encoded. */
hm_err mqtt_write_packet(hm_conn *c, bool ws, const mqtt_packet *p);

/* The CONNACK code for `k` (borrowed) by admit.h's rules (credentials,
 * anonymous clients, max_keepalive): 0 to accept. Thread-safe. */
int mqtt_broker_authenticate(mqtt_broker *b, const mqtt_connect *k);
/* Whether the ACL lets `who` (borrowed) do `access` on `topic`
 * (borrowed). True when no ACL file is configured. Thread-safe. */
bool mqtt_broker_allows(mqtt_broker *b, const mqtt_acl_client *who,
                        mqtt_acl_access access, const char *topic, size_t len);

/* The connection receiver: state for connection `conn_id`, speaking MQTT
 * over WebSocket when `ws`. Returns owned. */
void *mqtt_conn_state_create(mqtt_broker *b, uint64_t conn_id, bool ws);
void mqtt_conn_state_destroy(void *state);
hm_err mqtt_conn_handle(hm_ctx *ctx, void *state, hm_msg *msg);
extern const hm_hooks mqtt_conn_hooks;

/* The session receiver, made by the factory for `client_id` (borrowed). */
void mqtt_session_make(mqtt_broker *b, const char *client_id, hm_receiver *out);

/* Cluster mode (ADR 0105): session names are placed (hm_node_placed_fn)
 * and connection names ("mqtt/conn/<node>/<id>") and "mqtt/members/<node>"
 * are homed on their node (hm_node_home_fn). `b` is the broker. Thread-safe. */
bool mqtt_session_is_placed(void *b, const char *name);
bool mqtt_conn_home(void *b, const char *name, char *node_out);
/* Registers the connection <-> session types and spawns
 * "mqtt/members/<node>", which holds the sessions leaving members hand
 * over and tells this node's connections and sessions about dead members.
 * Call once, before the node starts. Errors: those of
 * hm_runtime_register_type() and hm_runtime_spawn(). */
hm_err mqtt_session_cluster_start(mqtt_broker *b);
/* Whether the placed session `name` (borrowed) lives here or on a member
 * this node hears now (alive, not suspect). Thread-safe. */
bool mqtt_session_reachable(mqtt_broker *b, const char *name);
/* This node leaves the cluster (a clean stop): every local session hands
 * its state to the member that owns it without us, whose "mqtt/members"
 * receiver keeps it until we are gone from its view. Call from outside
 * the runtime, before the node stops; waits (bounded) until the handoffs
 * are queued on the links. */
void mqtt_session_cluster_leave(mqtt_broker *b);
/* The inbox and relay receivers (session_move.c), made by the factory. */
void mqtt_inbox_make(mqtt_broker *b, hm_receiver *out);
void mqtt_relay_make(mqtt_broker *b, hm_receiver *out);
/* "mqtt/inbox/<node>/<client id>" into `out` (`cap` bytes). False if too
 * long. */
bool mqtt_inbox_name(char *out, size_t cap, const char *node,
                     const char *client_id);
/* "mqtt/members/<node>" into `out` (`cap` bytes). False if too long. */
bool mqtt_members_name(char *out, size_t cap, const char *node);
/* A membership event (the node's on_event, on its receiver): a member
 * that is DEAD, LEFT or REPLACED took its connections and sessions with
 * it. Quick: it only sends a message. */
void mqtt_session_cluster_event(mqtt_broker *b, const char *name,
                                hm_member_event event);

/* A session's state as a session_state.h record, for a handoff: the
 * subscriptions `subs` (`count`, borrowed), the QoS 1/2 messages of `out`
 * (borrowed, NULL: none; its messages are mqtt_pub) and the inbound QoS 2 ids `in`
 * (borrowed, may be NULL). On HM_OK returns owned bytes (hm_free) in
 * `*data_out`. Errors: those of mqtt_session_state_encode(). */
struct mqtt_state_sub;
struct mqtt_session_state;
hm_err mqtt_session_state_save(const char *client_id,
                               const struct mqtt_state_sub *subs, size_t count,
                               const mqtt_outbox *out, const mqtt_qos2_ids *in,
                               uint8_t **data_out, size_t *len_out);
/* Puts the messages of decoded `st` (borrowed) into `out` (fresh, offline)
 * with their packet ids and stages, the id counter where it was, and its
 * inbound QoS 2 ids into a new `*in_out` (NULL if none). Entries `out`
 * refuses are dropped. `out` may be NULL when `st` has no messages (the
 * outbox is made only when needed, ADR 0150): only the ids are loaded. */
void mqtt_session_state_load(const struct mqtt_session_state *st,
                             mqtt_outbox *out, mqtt_qos2_ids **in_out);

/* The $SYS receiver. Errors: those of hm_runtime_spawn(). */
hm_err mqtt_sys_start(mqtt_broker *b);

#endif
