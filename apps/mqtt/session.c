/* apps/mqtt/session.c: the session receiver, one per client id
 * ("mqtt/session/<client id>").
 *
 * A session is what MQTT says outlives a connection when CleanSession is 0
 * (section 3.1.2.4): the client's subscriptions, the QoS 1 and 2 messages
 * sent and not yet acknowledged, those queued for it, and the ids of QoS 2
 * messages it sent and has not released. It writes everything the client
 * receives because of that state: CONNACK (with session present), SUBACK,
 * UNSUBACK, every PUBLISH and PUBREL; the window and queue logic is the pure
 * module outbox.c.
 *
 * The key decision (ADR 0051) is that a session receiver is pinned, so idle
 * deactivation can never drop a persistent session, and ends itself
 * (hm_ctx_deactivate) when it has nothing to keep: when a clean session's
 * connection closes, or when a stray message (a delivery that raced the
 * end of a clean session) activates a session no client is attached to.
 * Its subscriber token in the tree is its own address; it removes its
 * subscriptions under the tree's write lock before dropping that address,
 * so a router never sends through a stale token. What only a cluster does
 * to a session (a member's death, the handoff when membership moves it,
 * ADR 0105) is in session_cluster.c; the state both share is in
 * session_impl.h. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/gate.h"
#include "apps/mqtt/outbox.h"
#include "apps/mqtt/session_impl.h"
#include "apps/mqtt/session_state.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <string.h>

static bool allows(mqtt_session *s, mqtt_acl_access access, const char *t,
                   size_t len)
{
    mqtt_acl_client who = {.client_id = session_id(s), .username = s->username};

    return mqtt_broker_allows(s->b, &who, access, t, len);
}

/* Sends `len` bytes at `bytes` (taken), one encoded packet without
 * WebSocket framing, to the connection receiver on another node, which
 * writes them; held in order while its mailbox is full (session_out.c).
 * Errors: those of mqtt_session_to_conn(); HM_ECLOSED when the client is
 * away. */
hm_err mqtt_session_send_out(mqtt_session *s, uint8_t *bytes, size_t len)
{
    mqtt_blob *blob;
    hm_msg *m;
    hm_err err;

    if (!s->conn_addr) {
        hm_free(bytes);
        return HM_ECLOSED;
    }
    blob = hm_alloc(sizeof *blob + len);
    blob->conn = NULL;
    blob->len = len;
    memcpy(blob->data, bytes, len);
    hm_free(bytes);
    m = hm_msg_create(&mqtt_out_type, blob, 0);
    if ((err = mqtt_session_to_conn(s, m)) != HM_OK)
        hm_msg_destroy(m);
    return err;
}

/* Writes `p` to the client now: on its socket when the connection is
 * here, else as "mqtt.out" to its receiver on the other node. Errors:
 * those of mqtt_write_packet() (here), of mqtt_packet_bytes() and
 * mqtt_session_send_out() (there). */
hm_err mqtt_session_write_now(mqtt_session *s, const mqtt_packet *p)
{
    uint8_t *buf;
    size_t len;
    hm_err err;

    if (s->conn)
        return mqtt_write_packet(s->conn, s->ws, p);
    if (!s->conn_addr)
        return HM_ECLOSED;
    if ((err = mqtt_packet_bytes(false, p, &buf, &len)) != HM_OK)
        return err;
    return mqtt_session_send_out(s, buf, len);
}

/* ----------------------------------------------------------- writing */

static void write_publish(mqtt_session *s, const mqtt_pub *pub, uint8_t qos,
                          uint16_t pid, bool dup)
{
    mqtt_packet p = {
        .type = MQTT_PUBLISH,
        .u.publish = {.dup = dup,
                      .qos = qos,
                      .retain = pub->retain,
                      .topic = {(const uint8_t *)pub->topic, pub->topic_len},
                      .packet_id = pid,
                      .payload = {pub->payload, pub->payload_len}}};
    hm_err err = mqtt_session_send_packet(s, &p);

    if (err == HM_OK) {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&s->b->sent, 1, memory_order_relaxed);
    } else if (qos > 0 && err == HM_EFULL && s->conn) {
        /* The client does not read: its exchange would stall the window
         * for good. Drop the connection; the message stays in flight and
         * is resent on reconnect. */
        HM_LOG_WARN("MQTT-SLOW-CLIENT", "client %s: write queue full",
                    session_id(s));
        hm_conn_abort(s->conn);
    }
}

static void write_ack(mqtt_session *s, mqtt_packet_type type, uint16_t pid)
{
    mqtt_packet p = {.type = type, .u.packet_id = pid};

    mqtt_session_send_packet(s, &p);
}

/* Sends what the outbox says: resends first after a reconnect, then
 * what the window has room for; nothing while the connection's mailbox
 * is full (the messages wait in the outbox, session_out.c). */
void mqtt_session_pump(mqtt_session *s)
{
    mqtt_out_action a;

    while (s->conn_addr && s->out && !mqtt_session_stalled(s) &&
           mqtt_outbox_next(s->out, &a)) {
        if (a.kind == MQTT_OUT_PUBREL) { /* [MQTT-4.3.3-1], [MQTT-4.4.0-1] */
            write_ack(s, MQTT_PUBREL, a.packet_id);
            continue;
        }
        write_publish(s, a.msg, a.qos, a.packet_id, a.dup);
        if (a.caller_owns_msg)
            mqtt_pub_release(a.msg);
    }
}

/* Delivers `pub` (taken) to the client at `qos`. Returns whether the
 * session keeps it (a QoS 1/2 message it will save). */
static bool deliver(mqtt_session *s, mqtt_pub *pub, uint8_t qos)
{
    if (!allows(s, MQTT_ACL_READ, pub->topic, pub->topic_len)) {
        mqtt_pub_release(pub);
        return false;
    }
    if (qos == 0 && !s->out && !mqtt_session_stalled(s)) {
        /* Nothing waits before it: straight out (here or to the node of
         * the connection), or dropped while the client is away (as the
         * outbox would). */
        if (s->conn_addr)
            write_publish(s, pub, 0, 0, false);
        mqtt_pub_release(pub);
        return false;
    }
    if (!s->out)
        s->out = mqtt_session_new_outbox(s->b, s->conn_addr != NULL);
    /* QoS 0 is dropped while the client is away; QoS 1/2 wait. */
    if (mqtt_outbox_push(s->out, pub, qos) != HM_OK) {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&s->b->dropped, 1, memory_order_relaxed);
        HM_LOG_DEBUG("MQTT-QUEUE-FULL", "client %s: dropped a message on %s",
                     session_id(s), pub->topic);
        mqtt_pub_release(pub);
        return false;
    }
    if (qos > 0)
        mqtt_session_mark_dirty(s);
    mqtt_session_pump(s);
    return qos > 0;
}

/* ----------------------------------------------------- subscriptions */

/* The retained messages a SUBSCRIBE's filters match, each with the QoS
 * it goes out at: the lesser of its own and its filter's grant. */
typedef struct retained_batch {
    mqtt_pub **pubs;
    uint8_t *qos;
    size_t count, cap;
    uint8_t granted; /* of the filter being matched */
} retained_batch;

static void collect_retained(void *arg, const mqtt_retained *r)
{
    retained_batch *rb = arg;

    if (rb->count == rb->cap) {
        rb->cap = rb->cap ? rb->cap * 2 : 8;
        rb->pubs = hm_realloc(rb->pubs, rb->cap * sizeof *rb->pubs);
        rb->qos = hm_realloc(rb->qos, rb->cap * sizeof *rb->qos);
    }
    /* Sent with RETAIN=1 because of the new subscription [MQTT-3.3.1-8]. */
    rb->qos[rb->count] = r->qos < rb->granted ? r->qos : rb->granted;
    rb->pubs[rb->count++] = mqtt_pub_create(r->topic, r->topic_len, r->payload,
                                            r->payload_len, r->qos, true);
}

/* The subscribe: every filter is added to the tree and its retained
 * messages [MQTT-3.3.1-6] copied in one section under both locks (the
 * retain lock first, ADR 0255), so a retained publish racing the SUBSCRIBE
 * reaches the client once, from the store or from the route; SUBACK then
 * goes out, and the copies after it. */
static void on_subscribe(mqtt_session *s, const mqtt_subscribe *sub_pkt)
{
    uint8_t *codes = hm_alloc(sub_pkt->count);
    retained_batch rb = {0};
    mqtt_sub_iter it;
    mqtt_sub_req r;
    size_t n = 0;

    mqtt_sub_iter_init(&it, MQTT_SUBSCRIBE, sub_pkt);
    pthread_rwlock_rdlock(&s->b->retain_lock);
    pthread_rwlock_wrlock(&s->b->tree_lock);
    while (mqtt_sub_iter_next(&it, &r)) {
        /* [MQTT-3.8.4-6] grant at most the configured maximum. */
        uint8_t g = r.qos < s->b->cfg.max_qos ? r.qos : s->b->cfg.max_qos;

        if (!allows(s, MQTT_ACL_SUBSCRIBE, (const char *)r.filter.ptr,
                    r.filter.len) ||
            mqtt_topic_tree_add(s->b->tree, (const char *)r.filter.ptr,
                                r.filter.len, token(s), g, NULL) != HM_OK)
            g = MQTT_SUBACK_FAILURE;
        else
            mqtt_session_remember_sub(s, &r.filter, g);
        if (g != MQTT_SUBACK_FAILURE) {
            rb.granted = g;
            mqtt_retain_match(s->b->retained, (const char *)r.filter.ptr,
                              r.filter.len, collect_retained, &rb);
        }
        codes[n++] = g;
    }
    pthread_rwlock_unlock(&s->b->tree_lock);
    pthread_rwlock_unlock(&s->b->retain_lock);
    mqtt_packet ack = {
        .type = MQTT_SUBACK,
        .u.suback = {.packet_id = sub_pkt->packet_id, .codes = {codes, n}}};
    mqtt_session_mark_dirty(s);
    mqtt_session_send_packet(s, &ack); /* [MQTT-3.8.4-1]; gated: after the commit */
    for (size_t i = 0; i < rb.count; i++)
        deliver(s, rb.pubs[i], rb.qos[i]);
    hm_free(rb.pubs);
    hm_free(rb.qos);
    hm_free(codes);
}

static void on_unsubscribe(mqtt_session *s, const mqtt_subscribe *u)
{
    mqtt_sub_iter it;
    mqtt_sub_req r;

    mqtt_sub_iter_init(&it, MQTT_UNSUBSCRIBE, u);
    pthread_rwlock_wrlock(&s->b->tree_lock);
    while (mqtt_sub_iter_next(&it, &r)) {
        if (mqtt_topic_tree_remove(s->b->tree, (const char *)r.filter.ptr,
                                   r.filter.len, token(s)) == HM_OK)
            mqtt_session_forget_sub(s, &r.filter);
    }
    pthread_rwlock_unlock(&s->b->tree_lock);
    mqtt_session_mark_dirty(s);
    write_ack(s, MQTT_UNSUBACK, u->packet_id); /* [MQTT-3.10.4-4] */
}

/* ------------------------------------------------------- connections */

/* Whether `msg` comes from the connection receiver `addr` (may be NULL):
 * its sender when it came from this node, or `name` (the connection its
 * payload names, may be NULL) when it came from another. */
static bool comes_from(const hm_msg *msg, const hm_addr *addr,
                       const char *name)
{
    if (!addr)
        return false;
    if (hm_msg_from(msg) == addr)
        return true;
    return name && strcmp(name, hm_addr_name(addr)) == 0;
}

/* An owned reference to connection receiver `name`, or NULL if it is not
 * one. */
hm_addr *mqtt_session_intern_conn(mqtt_session *s, const char *name)
{
    hm_addr *a;

    if (!name || strncmp(name, MQTT_CONN_PREFIX, strlen(MQTT_CONN_PREFIX)) ||
        hm_runtime_intern(s->b->rt, name, &a) != HM_OK)
        return NULL;
    return a;
}

static void send_empty(hm_ctx *ctx, hm_addr *to, const hm_type *type)
{
    hm_msg *m = hm_msg_create(type, NULL, 0);

    if (hm_ctx_send(ctx, to, m) != HM_OK)
        hm_msg_destroy(m);
}

/* An empty message of `type` to our connection, after what waits. */
static void send_ordered(mqtt_session *s, const hm_type *type)
{
    hm_msg *m = hm_msg_create(type, NULL, 0);

    if (mqtt_session_to_conn(s, m) != HM_OK)
        hm_msg_destroy(m);
}

static void on_forward(hm_ctx *ctx, mqtt_session *s, hm_msg *msg)
{
    const mqtt_blob *blob = hm_msg_payload(msg);
    bool mine = comes_from(msg, s->conn_addr, blob->conn);
    hm_addr *reply_to;
    mqtt_packet p;

    if (mine &&
        mqtt_decode(blob->data, blob->len, &s->b->limits, &p, NULL) == HM_OK) {
        if (p.type == MQTT_SUBSCRIBE)
            on_subscribe(s, &p.u.subscribe);
        else if (p.type == MQTT_UNSUBSCRIBE)
            on_unsubscribe(s, &p.u.subscribe);
    }
    if (mine)
        reply_to = hm_addr_ref(s->conn_addr);
    else if (blob->conn)
        reply_to = mqtt_session_intern_conn(s, blob->conn);
    else
        reply_to = hm_msg_from(msg) ? hm_addr_ref(hm_msg_from(msg)) : NULL;
    if (!reply_to)
        return;
    /* Always answered, or the connection would hold its frames forever;
     * ours after what we wrote to it (its SUBACK). */
    if (mine)
        send_ordered(s, &mqtt_done_type);
    else
        send_empty(ctx, reply_to, &mqtt_done_type);
    /* In a cluster, a connection that is not ours lost its session (its
     * node died, or it raced a move): closing it makes the client
     * reconnect and learn (session present = 0) what it has. */
    if (!mine && s->b->node)
        send_empty(ctx, reply_to, &mqtt_kick_type);
    hm_addr_release(reply_to);
}

/* An outbox, made when the first message has to wait in it; `online`:
 * a connection is attached. */
mqtt_outbox *mqtt_session_new_outbox(const mqtt_broker *b, bool online)
{
    mqtt_outbox *o = mqtt_outbox_create(&(mqtt_outbox_config){
        .max_inflight = b->cfg.max_inflight,
        .max_queued = b->cfg.unlimited_queue ? 0 : b->cfg.max_queued,
        .release = mqtt_pub_release});

    if (online)
        mqtt_outbox_go_online(o);
    return o;
}

/* Frees the outbox if nothing waits or is in flight in it. */
static void shed_outbox(mqtt_session *s)
{
    if (s->out && mqtt_outbox_inflight_count(s->out) == 0 &&
        mqtt_outbox_queued_count(s->out) == 0) {
        mqtt_outbox_destroy(s->out);
        s->out = NULL;
    }
}

void mqtt_session_forget_state(mqtt_session *s)
{
    mqtt_session_drop_subs(s);
    mqtt_outbox_destroy(s->out);
    s->out = NULL;
    mqtt_qos2_box_destroy(s->in_qos2);
    s->in_qos2 = NULL;
}

void mqtt_session_let_go(mqtt_session *s)
{
    if (!s->conn_addr)
        return;
    mqtt_session_stall_drop(s); /* the outbox resends on reconnect */
    hm_conn_release(s->conn);
    hm_addr_release(s->conn_addr);
    s->conn = NULL;
    s->conn_addr = NULL;
    s->link_logged = false; /* the next connection's first stall logs */
    if (s->dur) /* resent from the outbox on reconnect */
        mqtt_gate_drop(&s->dur->gate);
    if (s->out)
        mqtt_outbox_go_offline(s->out);
    shed_outbox(s);
    /* relaxed: a statistic. */
    atomic_fetch_sub_explicit(&s->b->connected, 1, memory_order_relaxed);
}

/* Ends this activation on purpose (no handoff: nothing to keep). */
void mqtt_session_end(hm_ctx *ctx, mqtt_session *s)
{
    s->ending = true;
    hm_ctx_deactivate(ctx);
}

/* Answers an attach or a forward sent as a request (a cluster's
 * connection, ADR 0295): the session has it, so the connection stops
 * trying. Once: a held message that runs again is answered already. */
static void ack_request(hm_ctx *ctx, hm_msg *msg)
{
    hm_msg *ok = hm_msg_create(&mqtt_done_type, NULL, 0);

    if (hm_ctx_reply(ctx, msg, ok) != HM_OK)
        hm_msg_destroy(ok);
}

/* The connection receiver an attach came from: its sender here, or the
 * address it names when it came from another node. Returns owned or NULL. */
static hm_addr *attach_source(mqtt_session *s, hm_msg *msg)
{
    const mqtt_attach *a = hm_msg_payload(msg);

    if (a->conn && hm_msg_from(msg))
        return hm_addr_ref(hm_msg_from(msg));
    return a->conn ? NULL : mqtt_session_intern_conn(s, a->conn_name);
}

/* Attaches the connection receiver `from` (taken) as `a` (borrowed; its
 * user name is taken) describes. */
static void on_attach(hm_ctx *ctx, mqtt_session *s, mqtt_attach *a,
                      hm_addr *from)
{
    bool present = false;
    hm_msg *reply;

    if (a->clean || !s->persistent) {
        mqtt_session_forget_state(s); /* [MQTT-3.1.2-6] */
        s->adopted = false; /* a new state: the client's own */
    }
    else
        present = s->attached_ever; /* [MQTT-3.2.2-2] */
    if (a->clean)
        mqtt_session_unsave(s);
    s->persistent = !a->clean;
    mqtt_session_mark_dirty(s);
    s->attached_ever = true;
    s->conn = a->conn ? hm_conn_ref(a->conn) : NULL;
    s->ws = a->ws;
    s->conn_addr = from;
    hm_free(s->username);
    s->username = a->username;
    a->username = NULL;
    /* relaxed: a statistic. */
    atomic_fetch_add_explicit(&s->b->connected, 1, memory_order_relaxed);
    mqtt_session_send_packet(s, &(mqtt_packet){.type = MQTT_CONNACK,
                                  .u.connack = {.session_present = present}});
    reply = hm_msg_create(
        &mqtt_attached_type,
        mqtt_ctl_create(s->b->node ? hm_node_name(s->b->node) : NULL,
                        s->in_qos2),
        present);
    s->in_qos2 = NULL;
    if (mqtt_session_to_conn(s, reply) != HM_OK) /* after the CONNACK */
        hm_msg_destroy(reply);
    if (s->out)
        mqtt_outbox_go_online(s->out); /* resends (DUP) come first */
    mqtt_session_pump(s);
}

/* The taken-over connection is gone (it detached, handing back `ids`,
 * taken, or its node died): answer the new one. */
void mqtt_session_finish_takeover(hm_ctx *ctx, mqtt_session *s,
                                  mqtt_qos2_ids *ids)
{
    hm_msg *attach = s->pending_attach;
    hm_addr *from = s->pending_from;

    mqtt_qos2_box_destroy(s->in_qos2);
    s->in_qos2 = ids;
    hm_addr_release(s->old_conn_addr);
    s->old_conn_addr = NULL;
    s->pending_attach = NULL;
    s->pending_from = NULL;
    if (attach)
        on_attach(ctx, s, hm_msg_payload(attach), from);
    else
        hm_addr_release(from);
    hm_msg_destroy(attach);
}

static void on_detach(hm_ctx *ctx, mqtt_session *s, hm_msg *msg)
{
    mqtt_ctl *c = hm_msg_payload(msg);
    const char *name = c ? c->name : NULL;
    mqtt_qos2_ids *ids;

    if (comes_from(msg, s->old_conn_addr, name)) {
        ids = c ? c->ids : NULL;
        if (c)
            c->ids = NULL;
        mqtt_session_finish_takeover(ctx, s, ids);
        return;
    }
    if (!comes_from(msg, s->conn_addr, name))
        return; /* a connection already taken over */
    mqtt_session_let_go(s);
    if (!s->persistent) { /* a clean session ends with its connection */
        mqtt_session_end(ctx, s);
        return;
    }
    mqtt_qos2_box_destroy(s->in_qos2);
    s->in_qos2 = c ? c->ids : NULL;
    if (c)
        c->ids = NULL;
    mqtt_session_mark_dirty(s);
}

static void on_ack(mqtt_session *s, hm_msg *msg)
{
    const mqtt_ctl *c = hm_msg_payload(msg);
    uint64_t arg = hm_msg_arg(msg);
    uint16_t pid = (uint16_t)(arg & 0xffff);

    if (!comes_from(msg, s->conn_addr, c ? c->name : NULL))
        return;
    /* PUBREC queues the PUBREL that pump sends [MQTT-4.3.3-1]. An
     * unknown id is a late duplicate, legal after a reconnect. */
    if (!s->out || mqtt_outbox_ack(s->out, (int)(arg >> 16), pid) != HM_OK)
        HM_LOG_DEBUG("MQTT-ACK-UNKNOWN", "client %s: %s for id %u",
                     session_id(s), mqtt_packet_type_name((int)(arg >> 16)),
                     pid);
    else
        mqtt_session_mark_dirty(s);
    mqtt_session_pump(s);
}

/* ----------------------------------------------------------- handler */

/* A delivery: the message goes to the outbox; its receipt unit (if the
 * publisher waits for commits) is kept until our next save commits, or
 * released now if we do not keep the message. */
static void on_deliver(mqtt_session *s, hm_msg *msg)
{
    uint8_t granted = (uint8_t)hm_msg_arg(msg);
    mqtt_pub *pub = hm_msg_take_payload(msg);
    mqtt_receipt *r = pub->receipt; /* before deliver() may free pub */

    if (deliver(s, pub, pub->qos < granted ? pub->qos : granted) && r &&
        mqtt_session_gated(s))
        mqtt_session_keep_receipt(s, r);
    else
        mqtt_receipt_release(r);
}

static void handle_msg(hm_ctx *ctx, mqtt_session *s, hm_msg *msg)
{
    const hm_type *t = hm_msg_type(msg);

    if ((t == &mqtt_attach_type || t == &mqtt_forward_type) &&
        hm_msg_req_id(msg) && !hm_msg_is_reply(msg))
        ack_request(ctx, msg); /* in a cluster: "it is here" (ADR 0295) */
    if (s->mv && mqtt_session_move_intercept(ctx, s, msg))
        return; /* held, kept or forwarded while moving */
    if (t == &mqtt_restore_type) {
        mqtt_session_on_restore(ctx, s, hm_msg_payload(msg));
        return;
    }
    if (t == &mqtt_saved_type || t == &mqtt_flush_type) {
        if (t == &mqtt_saved_type)
            mqtt_session_release_gate(s, hm_msg_arg(msg));
        else if (hm_msg_arg(msg) == 0 && s->dur) /* not the final flush */
            s->dur->flush_queued = false;
        if (t == &mqtt_flush_type)
            mqtt_session_save_now(s);
        if (!s->attached_ever)
            hm_ctx_deactivate(ctx); /* a stray: no session to keep */
        return;
    }
    if (t == &mqtt_attach_type) {
        hm_addr *from = attach_source(s, msg);

        if (!from)
            return;
        s->from_store = false; /* a client's copy from now on */
        if (s->conn_addr || s->old_conn_addr)
            mqtt_session_take_over(ctx, s, msg, from);
        else
            on_attach(ctx, s, hm_msg_payload(msg), from);
        return;
    }
    if (t == &mqtt_handoff_type) {
        mqtt_session_on_handoff(ctx, s, hm_msg_payload(msg));
        mqtt_session_move_replay_early(ctx, s);
        return;
    }
    if (!s->attached_ever && mqtt_session_move_early(ctx, s, msg))
        return; /* in a cluster, a state may follow (a move) */
    if (!s->attached_ever) {
        /* A message for a session no client holds: a delivery or ack that
         * raced the end of a clean session. Nothing to keep. */
        if (t == &mqtt_forward_type)
            on_forward(ctx, s, msg);
        else if (t == &mqtt_deliver_type) /* its receipt unit */
            mqtt_receipt_release(((mqtt_pub *)hm_msg_payload(msg))->receipt);
        mqtt_session_end(ctx, s);
        return;
    }
    if (t == &mqtt_deliver_type) {
        on_deliver(s, msg);
    } else if (t == &mqtt_ack_type) {
        on_ack(s, msg);
    } else if (t == &mqtt_forward_type) {
        on_forward(ctx, s, msg);
    } else if (t == &mqtt_detach_type) {
        on_detach(ctx, s, msg);
    } else if (t == &mqtt_node_gone_type) {
        mqtt_session_on_node_gone(ctx, s, hm_msg_payload(msg));
    } else if (t == &mqtt_leave_type) {
        mqtt_session_move_leave(ctx, s, hm_msg_payload(msg));
    } else if (t == &mqtt_session_retry_type ||
               t == &mqtt_session_room_type) {
        mqtt_session_stall_retry(s, hm_msg_arg(msg),
                                 t == &mqtt_session_room_type);
    } else if (t == &mqtt_session_takeover_type) {
        mqtt_session_takeover_timer(ctx, s, hm_msg_arg(msg));
    }
}

hm_err mqtt_session_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    mqtt_session *s = state;

    handle_msg(ctx, s, msg);
    /* A send refused for room in this turn waits for a notice (ADR 0300);
     * here, once per turn, as only a turn has the ctx to ask with. */
    mqtt_session_stall_wait(ctx, s);
    return HM_OK;
}

/* ---------------------------------------------------------- lifecycle */

/* An idle session is one 128-byte malloc chunk: a field more costs every
 * idle connection 16 bytes (see session_impl.h). */
_Static_assert(sizeof(mqtt_session) <= 120, "mqtt_session outgrew 120 bytes");

static hm_err session_activate(hm_ctx *ctx, void *state)
{
    mqtt_session *s = state;
    const char *name;

    s->self = hm_addr_ref(hm_ctx_self(ctx));
    name = hm_addr_name(s->self);
    /* "mqtt/session/<id>", or in a cluster's partition "mqtt/fallback/<id>"
     * (broker.c's factory makes both). */
    s->id_off = (uint8_t)(strncmp(name, MQTT_FALLBACK_PREFIX,
                                  strlen(MQTT_FALLBACK_PREFIX)) == 0
                              ? strlen(MQTT_FALLBACK_PREFIX)
                              : strlen(MQTT_SESSION_PREFIX));
    return HM_OK;
}

static void session_deactivate(hm_ctx *ctx, void *state,
                               hm_deactivate_reason why)
{
    mqtt_session *s = state;

    (void)ctx;
    /* Ended by the cluster (its node is no longer the owner), not by
     * itself: the state goes to the new owner. */
    if (why == HM_DEACTIVATE_REQUESTED && !s->ending && s->b->node &&
        s->attached_ever && (s->persistent || s->conn_addr) &&
        !mqtt_session_move_handed(s)) {
        char to[HM_NODE_NAME_MAX + 1];

        mqtt_session_hand_over(s, NULL);
        /* Our entries stay in the tree, forwarding, until every member
         * routes to the new owner (cluster_move.c owns them now). */
        if (hm_node_lookup(s->b->node, hm_addr_name(s->self), to) == HM_OK)
            mqtt_session_move_away(s, to, true);
    }
    mqtt_session_move_fini(s);
    mqtt_session_drop_pending(s);
    mqtt_session_drop_subs(s); /* before the token (self) goes */
    mqtt_session_let_go(s);
    mqtt_session_stall_drop(s);
    hm_addr_release(s->old_conn_addr);
    mqtt_outbox_destroy(s->out);
    mqtt_qos2_box_destroy(s->in_qos2);
    if (s->dur) {
        for (size_t i = 0; i < s->dur->receipt_count; i++)
            mqtt_receipt_release(s->dur->receipts[i]);
        hm_free(s->dur->receipts);
        mqtt_gate_fini(&s->dur->gate);
        hm_free(s->dur);
    }
    hm_free(s->username);
    /* relaxed: a statistic. */
    atomic_fetch_sub_explicit(&s->b->sessions, 1, memory_order_relaxed);
    hm_addr_release(s->self); /* last: session_id() points into its name */
    hm_free(s);
}

static const hm_hooks session_hooks = {.activate = session_activate,
                                       .deactivate = session_deactivate};

void mqtt_session_make(mqtt_broker *b, const char *client_id, hm_receiver *out)
{
    mqtt_session *s = hm_calloc(1, sizeof *s);

    (void)client_id; /* activate takes it from our own name */
    s->b = b;
    /* relaxed: a statistic. */
    atomic_fetch_add_explicit(&b->sessions, 1, memory_order_relaxed);
    *out = (hm_receiver){.handler = mqtt_session_handle,
                         .state = s,
                         .hooks = &session_hooks,
                         .pinned = true,
                         .runs_anywhere = true};
}
