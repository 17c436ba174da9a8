/* apps/mqtt/session_impl.h: the session receiver's state and the few
 * session.c functions that session_cluster.c needs, private to those two
 * files. session.c owns the receiver (attach, subscriptions, delivery,
 * persistence); session_cluster.c owns what only a cluster does to a
 * session (ADR 0105): a member's death and the handoff of its state when
 * membership moves it. Every function here runs on the session's own
 * receiver (one message at a time), and takes `s` borrowed. */
#ifndef HM_APPS_MQTT_SESSION_IMPL_H
#define HM_APPS_MQTT_SESSION_IMPL_H

#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/gate.h"
#include "apps/mqtt/outbox.h"

typedef struct sub {
    char *filter;
    size_t len;
    uint8_t qos;
} sub;

/* The client's subscriptions; allocated with the first one and freed with
 * the last. */
typedef struct sub_list {
    uint32_t count, cap;
    sub items[];
} sub_list;

/* A persistent session's saving state (saver.c, ADR 0111), allocated
 * when the session first needs it, so a broker without persistence pays
 * one pointer per session. */
typedef struct session_dur {
    mqtt_gate gate;          /* `always`: packets waiting for a commit */
    mqtt_receipt **receipts; /* units of messages not yet saved */
    size_t receipt_count, receipt_cap;
    bool dirty;        /* changed since the last save */
    bool flush_queued; /* an "mqtt.flush" is on its way to us */
    bool saved_ever;   /* the store may hold our record */
} session_dur;

/* Kept small for idle clients (ADR 0150): the outbox exists only once a
 * QoS 1/2 message (or a message behind one) has to wait in it, the client
 * id is the end of our own name, and subscriptions are stored only when
 * there are some. */
typedef struct mqtt_session {
    mqtt_broker *b;
    hm_addr *self; /* our token in the subscription tree */
    /* The client's connection: its receiver (NULL while the client is
     * away) and, when that receiver is on this node, its socket, written
     * directly. A connection on another node gets "mqtt.out" messages. */
    hm_addr *conn_addr;
    hm_conn *conn;  /* NULL: away, or on another node */
    char *username; /* of the last CONNECT, for the ACL; or NULL */
    /* A takeover waits for the old connection to hand back the inbound
     * QoS 2 ids (its "mqtt.detach") before the new one is answered. */
    hm_addr *old_conn_addr;
    hm_msg *pending_attach; /* moved out: its sender is pending_from */
    hm_addr *pending_from;
    /* One byte of flags and the client id's offset in self's name: an idle
     * session is 120 bytes, a 128-byte malloc chunk (issue 9 compares the
     * memory per idle connection with mosquitto's; a pointer more here is
     * 16 bytes more per connection). */
    bool ws : 1;            /* conn speaks MQTT over WebSocket */
    bool attached_ever : 1; /* some client attached to this activation */
    bool persistent : 1;    /* CleanSession was 0 */
    bool ending : 1;        /* it ended itself: nothing to hand over */
    bool from_store : 1;    /* restored, no client or handoff since */
    bool adopted : 1; /* the state came from another copy (a handoff or a
                         record): a newer copy replaces it (ADR 0290) */
    bool link_logged : 1;   /* this connection's first stall was logged */
    uint8_t id_off; /* the client id starts here in self's name */
    uint16_t takeovers; /* numbers the takeover timers (cluster mode) */
    /* The move generation of the state held (docs/adr/0290): a handoff
     * carries gen + 1, custody copies and saved records carry gen. */
    uint32_t gen;
    sub_list *subs; /* NULL: none */
    mqtt_outbox *out; /* NULL: nothing waits or is in flight */
    mqtt_qos2_ids *in_qos2; /* while no connection holds it; or NULL */
    session_dur *dur; /* persistence; NULL until needed */
    struct session_move *mv; /* a move between nodes; NULL: none */
    /* What waits for the connection receiver's mailbox (session_out.c);
     * NULL: nothing. */
    struct session_stall *stall;
} mqtt_session;

typedef struct session_move session_move;
typedef struct session_stall session_stall;

/* The client id (borrowed from self's name, "mqtt/session/<id>" or
 * "mqtt/fallback/<id>"; lives as long as the session). */
static inline const char *session_id(const mqtt_session *s)
{
    return hm_addr_name(s->self) + s->id_off;
}

/* Our subscriber token in the tree: our own address. */
static inline uint64_t token(const mqtt_session *s)
{
    return (uint64_t)(uintptr_t)s->self;
}

/* ---------------------------------------------------- in session.c */

/* The number of subscriptions. */
uint32_t mqtt_session_sub_count(const mqtt_session *s);
/* Records subscription `f` (borrowed) at `qos` (the tree is the caller's). */
void mqtt_session_remember_sub(mqtt_session *s, const mqtt_bytes *f,
                               uint8_t qos);
/* An outbox (owned), made when the first message has to wait in it;
 * `online`: a connection is attached. */
mqtt_outbox *mqtt_session_new_outbox(const mqtt_broker *b, bool online);
/* Sends what the outbox says (resends first). */
void mqtt_session_pump(mqtt_session *s);
/* session.c: writes `len` encoded bytes (taken) to the client, directly
 * or through its connection on another node. Errors: those of the write. */
hm_err mqtt_session_send_out(mqtt_session *s, uint8_t *bytes, size_t len);
/* session.c: encodes `p` (borrowed) and sends it at once. */
hm_err mqtt_session_write_now(mqtt_session *s, const mqtt_packet *p);

/* session_persist.c: the store keeps this session (persistence on,
 * CleanSession 0). */
bool mqtt_session_durable(const mqtt_session *s);
/* What this session tells its client waits for the commit (`always`). */
bool mqtt_session_gated(const mqtt_session *s);
/* The persistence state, allocated on first use. */
session_dur *mqtt_session_dur(mqtt_session *s);
/* Keeps receipt `r` (taken) to release with the next save. */
void mqtt_session_keep_receipt(mqtt_session *s, mqtt_receipt *r);
/* Sends the record to the store now if it changed, with its receipts. */
void mqtt_session_save_now(mqtt_session *s);
/* The session is no longer persistent: its record goes. */
void mqtt_session_unsave(mqtt_session *s);
/* Save number `n` is committed: what it covers goes to the client. */
void mqtt_session_release_gate(mqtt_session *s, uint64_t n);
/* Writes `p` (borrowed) to the client, or, when gated, holds it until the
 * state that produced it is committed. */
hm_err mqtt_session_send_packet(mqtt_session *s, const mqtt_packet *p);
/* The state changed: it is saved soon (persistent sessions only). */
void mqtt_session_mark_dirty(mqtt_session *s);
/* A dead member's session was restored here (fail-over): logs it and
 * saves it soon, under this node. */
void mqtt_session_adopted(mqtt_session *s);
/* The state as a session_state.h record stamped with move generation `gen`
 * (owned bytes on HM_OK). Errors: those of mqtt_session_state_save(). */
hm_err mqtt_session_encode(const mqtt_session *s, uint32_t gen, uint8_t **rec,
                           size_t *len);
/* An owned reference to connection receiver `name`, or NULL. */
hm_addr *mqtt_session_intern_conn(mqtt_session *s, const char *name);
/* Forgets the attached connection (the outbox goes offline). */
void mqtt_session_let_go(mqtt_session *s);
/* Ends the activation on purpose (no handoff). */
void mqtt_session_end(hm_ctx *ctx, mqtt_session *s);
/* The taken-over connection is gone: answer the pending one; `ids`
 * (taken, may be NULL) are its inbound QoS 2 ids. */
void mqtt_session_finish_takeover(hm_ctx *ctx, mqtt_session *s,
                                  mqtt_qos2_ids *ids);

/* The receiver's handler (session.c), for messages replayed after a move. */
hm_err mqtt_session_handle(hm_ctx *ctx, void *state, hm_msg *msg);
/* session_subs.c: forgets subscription `f` (borrowed; the tree is the
 * caller's). */
void mqtt_session_forget_sub(mqtt_session *s, const mqtt_bytes *f);
/* Removes every subscription from the tree (under the write lock: after
 * it, no router holds our token) and forgets them. */
void mqtt_session_drop_subs(mqtt_session *s);
/* Drops subscriptions (from the tree too), outbox and inbound QoS 2 ids. */
void mqtt_session_forget_state(mqtt_session *s);
/* Forgets the subscription list, leaving the tree as it is. */
void mqtt_session_forget_subs(mqtt_session *s);

/* ------------------------------------------------ in session_move.c */

/* While s->mv is set: whether it took `msg` (borrowed; held, kept or
 * forwarded). */
bool mqtt_session_move_intercept(hm_ctx *ctx, mqtt_session *s, hm_msg *msg);
/* A message before any client or state (cluster mode): keeps it for a
 * state that may follow. Returns whether it did. */
bool mqtt_session_move_early(hm_ctx *ctx, mqtt_session *s, hm_msg *msg);
/* The state came from node `old` (borrowed) and the subscriptions are in
 * the tree: hold what this node routes until the old node's done. */
void mqtt_session_move_adopted(mqtt_session *s, const char *old);
/* After the state: the messages kept before it, through the handler. */
void mqtt_session_move_replay_early(hm_ctx *ctx, mqtt_session *s);
/* Placement moved us to node `to` (`relay`: the entries pass to the token
 * "mqtt/fwd/<client id>"), or we leave (they stay ours, forwarding):
 * cluster_move.c removes them once every member routes to `to`. Returns
 * whether a move began. */
bool mqtt_session_move_away(mqtt_session *s, const char *to, bool relay);
/* This node leaves: hand the state to `owner`'s inbox and forward. */
void mqtt_session_move_leave(hm_ctx *ctx, mqtt_session *s, const char *owner);
/* Removes the entries that a move away from here left for `client_id`
 * (borrowed), of `filters` (borrowed): it is back. Under the tree's write
 * lock. */
void mqtt_session_move_unrelay(mqtt_broker *b, const char *client_id,
                               char *const *filters, size_t count);
/* Whether this session handed its state to a leave's inbox already (it
 * only forwards, or keeps custody): nothing more to hand over. */
bool mqtt_session_move_handed(const mqtt_session *s);
/* Frees the move state. */
void mqtt_session_move_fini(mqtt_session *s);
/* Node `node` (borrowed) is gone: a move from there is over. */
void mqtt_session_move_on_gone(hm_ctx *ctx, mqtt_session *s,
                               const char *node);
/* A copy of delivery `m` (borrowed), without its receipt unit. */
hm_msg *mqtt_session_copy_delivery(const hm_msg *m);
/* Destroys `m` (NULL accepted), releasing a delivery's receipt unit. */
void mqtt_session_msg_drop(hm_msg *m);

/* ---------------------------------------------- in session_takeover.c */

/* The takeover wait's timer (its arg: the takeover's number). */
extern const hm_type mqtt_session_takeover_type;
/* [MQTT-3.1.4-2] A new connection for a connected client id: kicks the
 * old one and answers the new one once the old one has detached, so the
 * QoS 2 ids it holds are not lost [MQTT-4.3.3-2]. Takes `msg` (the
 * attach) and `from` (the new connection). */
void mqtt_session_take_over(hm_ctx *ctx, mqtt_session *s, hm_msg *msg,
                            hm_addr *from);
/* The takeover timer numbered `n` fired: the new connection is answered
 * if the old one has not detached. */
void mqtt_session_takeover_timer(hm_ctx *ctx, mqtt_session *s, uint64_t n);
/* A connection waiting for a takeover that will not finish here (the
 * session leaves this node): kicked, so its client connects again and
 * reaches the new owner (ADR 0295). */
void mqtt_session_drop_pending(mqtt_session *s);

/* ------------------------------------------------- in session_out.c */

/* The timer that retries a stalled connection, and the room notice the
 * connection's receiver sends when its mailbox drains (their arg: the
 * retry's number; docs/adr/0300). */
extern const hm_type mqtt_session_retry_type;
extern const hm_type mqtt_session_room_type;
/* Sends `m` (taken on HM_OK) to the client's connection receiver, after
 * what waits for it; HM_EFULL from its mailbox (the cluster link to its
 * node is full) holds it, in order, until there is room (docs/adr/0230,
 * 0300): the turn's end must call mqtt_session_stall_wait().
 * Errors: HM_ECLOSED (no connection), those of hm_runtime_send() but
 * HM_EFULL. */
hm_err mqtt_session_to_conn(mqtt_session *s, hm_msg *m);
/* Whether messages wait for the connection (nothing more leaves the
 * outbox until they are sent). */
bool mqtt_session_stalled(const mqtt_session *s);
/* At the end of each of the session's turns (`ctx` borrowed): if messages
 * wait and nothing will wake the session for them yet, asks the
 * connection's receiver for a room notice (a slow timer if none can be
 * had). */
void mqtt_session_stall_wait(hm_ctx *ctx, mqtt_session *s);
/* Retry `gen` came (`notice`: a room notice, else a timer): sends what
 * waits, then pumps the outbox. */
void mqtt_session_stall_retry(mqtt_session *s, uint64_t gen, bool notice);
/* Drops what waits (the connection is gone). */
void mqtt_session_stall_drop(mqtt_session *s);
/* After an adoption: if the link to the connection's node is not up yet,
 * everything for the connection waits (a stall) until it is, at most a
 * few seconds, then the connection is let go (docs/adr/0266). */
void mqtt_session_await_link(mqtt_session *s);
/* What the stall still holds that the outbox will not resend (CONNACK,
 * SUBACK, UNSUBACK, "attached", "done"), in order, for a handoff. Returns
 * owned, or NULL if nothing (docs/adr/0296). */
char *mqtt_session_stall_owed(const mqtt_session *s);
/* After an adoption: sends `owed` (borrowed; may be NULL) to the
 * connection, in order, ahead of anything else. */
void mqtt_session_send_owed(mqtt_session *s, const char *owed);

/* --------------------------------------------- in session_cluster.c */

/* Node `node` (borrowed) died: a connection there will never detach. */
void mqtt_session_on_node_gone(hm_ctx *ctx, mqtt_session *s,
                               const char *node);
/* Sends the state to the new owner: to our own address (membership moved
 * us; `owner` NULL) or to "mqtt/members/<owner>" (this node is leaving). */
void mqtt_session_hand_over(mqtt_session *s, const char *owner);
/* The same state as a leave's handoff to an inbox, kept by the leaving
 * session until its move is over (ADR 0260). Owned; NULL if it cannot be
 * encoded. */
hm_msg *mqtt_session_leave_custody(mqtt_session *s);
/* Whether `node` (borrowed) is a live member (alive or suspect) as `b`
 * sees it now. */
bool mqtt_node_is_live(mqtt_broker *b, const char *node);
/* The live member but us that placed name `name` (borrowed) lives on, in
 * `out` (HM_NODE_NAME_MAX + 1 bytes). False if there is none. */
bool mqtt_session_cluster_owner(mqtt_broker *b, const char *name,
                                char *out);
/* The same state, for this node's relay `relay` (borrowed) of a move to
 * node `to` (borrowed), which keeps it until the move is over and gives it
 * back to the session's name if `to` dies first (ADR 0225). */
void mqtt_session_hand_over_custody(mqtt_session *s, hm_addr *relay,
                                    const char *to);
/* Whether connection receiver `name` (borrowed) lived on node `node`. */
bool mqtt_conn_lived_on(const char *name, const char *node);

/* --------------------------------------------- in session_adopt.c */

/* A state of this session with move generation `gen` arrived (`handoff`:
 * from another copy; else a store record): whether it replaces what this
 * activation holds (docs/adr/0290). Nothing held: yes. */
bool mqtt_session_gen_newer(const mqtt_session *s, uint32_t gen, bool handoff);
/* A handoff reached the session: adopts `h` (borrowed; its user name is
 * taken) unless the state here is newer (then dropped, logged). */
void mqtt_session_on_handoff(hm_ctx *ctx, mqtt_session *s, mqtt_handoff *h);
/* A stored record reached the session (start-up, or a fail-over): restores
 * `r` (borrowed) unless the state here is newer (then dropped, logged). */
void mqtt_session_on_restore(hm_ctx *ctx, mqtt_session *s, mqtt_restore *r);

#endif
