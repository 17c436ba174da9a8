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
#include "apps/mqtt/topic.h"
#include "net/conn.h"
#include "net/net.h"
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdatomic.h>

#define MQTT_CONN_PREFIX "mqtt/conn/"
#define MQTT_SESSION_PREFIX "mqtt/session/"
#define MQTT_SYS_NAME "mqtt/sys"

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
    mqtt_endpoint *endpoints;
    size_t endpoint_count;
    mqtt_limits limits;
    hm_framer framer;    /* the MQTT framer, as net plugs it in */
    hm_framer ws_framer; /* WebSocket: every read's bytes as they come */
    uint64_t start_ms;   /* hm_runtime_now_ms() at creation */
    bool stopped;        /* main thread only */
    pthread_rwlock_t tree_lock;
    mqtt_topic_tree *tree; /* guarded by: tree_lock */
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
    _Atomic uint32_t refs;
    /* With the `always` policy, the publisher's acknowledgement waits on
     * this (saver.c); NULL otherwise. Each delivery message of the pub
     * owns one unit of it, which the session releases once the message is
     * committed (or at once if it is not kept). */
    mqtt_receipt *receipt;
    uint8_t qos;
    bool retain; /* the RETAIN flag to send it with */
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

/* conn -> session: a client connected with this client id. Payload: an
 * mqtt_attach (owned; holds a connection reference). Sender: the conn. */
extern const hm_type mqtt_attach_type;
typedef struct mqtt_attach {
    hm_conn *conn;
    bool ws; /* packets go out in WebSocket frames */
    bool clean;
    char *username; /* owned, or NULL (anonymous) */
} mqtt_attach;
/* session -> conn: CONNACK was written. arg: session present. Payload: the
 * session's inbound QoS 2 ids (an owned, heap-allocated mqtt_qos2_ids,
 * or NULL). */
extern const hm_type mqtt_attached_type;
/* conn -> session: the connection closed. Payload: the inbound QoS 2 ids
 * (an owned, heap-allocated mqtt_qos2_ids, or NULL). */
extern const hm_type mqtt_detach_type;
/* session -> old conn: another connection took the session over. */
extern const hm_type mqtt_kick_type;
/* conn -> session: a SUBSCRIBE or UNSUBSCRIBE, its bytes (mqtt_blob). */
extern const hm_type mqtt_forward_type;
typedef struct mqtt_blob {
    size_t len;
    uint8_t data[];
} mqtt_blob;
/* session -> conn: the forwarded packet was handled; read on. */
extern const hm_type mqtt_done_type;
/* conn -> session: PUBACK, PUBREC or PUBCOMP. arg: type << 16 | id. */
extern const hm_type mqtt_ack_type;
/* router -> session: deliver. Payload: an mqtt_pub reference. arg: the
 * subscription's granted QoS. */
extern const hm_type mqtt_deliver_type;

/* Frees a heap-allocated mqtt_qos2_ids (void * to serve as a free hook).
 * Accepts NULL. */
void mqtt_qos2_box_destroy(void *ids);

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
/* broker -> session at start: payload an mqtt_restore (owned). */
extern const hm_type mqtt_restore_type;
typedef struct mqtt_restore {
    uint8_t *record; /* a valid session_state.h record */
    size_t len;
    mqtt_qos2_ids inbound; /* stored inbound QoS 2 ids */
} mqtt_restore;

/* Opens the store the config names, loads retained messages into the
 * store, spawns "mqtt/persist" and restores every stored session (their
 * subscriptions are in the tree when this returns). A no-op when
 * persistence is off. Errors: HM_ESTORE (logged as "FILE: what is
 * wrong"), those of hm_runtime_spawn(). */
hm_err mqtt_saver_start(mqtt_broker *b);
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

/* The $SYS receiver. Errors: those of hm_runtime_spawn(). */
hm_err mqtt_sys_start(mqtt_broker *b);

#endif
