/* apps/mqtt/conn.c: the connection receiver, one per TCP connection.
 *
 * It owns the socket's side of the protocol: it decodes every packet,
 * enforces the CONNECT rules and the keepalive, answers what needs no
 * session state (PINGREQ, PUBACK/PUBREC/PUBCOMP for what the client
 * publishes), routes the client's publishes itself (broker.c), and forwards
 * what belongs to the session (subscriptions, acknowledgements of what the
 * session sent) to the session receiver. The key decision is that it
 * stops reading while the session handles a CONNECT, SUBSCRIBE or
 * UNSUBSCRIBE: frames that arrive meanwhile are held, in order, and
 * replayed when the session answers. So a PUBLISH sent right after a
 * SUBSCRIBE is routed after the subscription exists, as the client
 * expects, and the session writes CONNACK before anything it resends.
 * In a cluster the attach and the forwarded packets are requests the
 * session answers on receipt, so one refused on the way (a node whose
 * view of the members lags places the session elsewhere) is sent again
 * instead of leaving the connection waiting for ever (ADR 0295).
 *
 * Lifecycle: spawned pinned by the listener's accept callback; ends (and
 * its deactivate hook frees it) when "net.closed" arrives. The will is
 * published at the moment the broker decides to close for any reason
 * other than DISCONNECT, or when the network closes first. */
#include "apps/mqtt/conn_impl.h"
#include "apps/mqtt/outbox.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Timer messages: arg says which. TIMER_CONNECT: over TCP no timer is
 * armed: net's idle timeout (ADR 0150) closes a connection whose first
 * packet does not come in time (and the first packet must be CONNECT),
 * then one that breaks its keepalive. Over WebSocket the upgrade's bytes
 * count as traffic, so the CONNECT deadline is this runtime timer.
 * TIMER_SESSION: in a cluster, after the session's node is gone. */
enum {
    TIMER_CONNECT = 1,
    TIMER_SESSION = 3,
    TIMER_ATTACH = 4,
    TIMER_FORWARD = 5
};
/* In a cluster, after the session's node is gone: the time the session
 * has to say it moved (a clean leave hands it over) before the connection
 * takes it as lost and closes. */
#define SESSION_GRACE_MS 2000u
/* In a cluster (ADR 0295): an attach refused on the way (the node it went
 * to places the session elsewhere: the members' views differ for a
 * moment) is sent again after ATTACH_RETRY_MS, until ATTACH_GIVE_UP_MS
 * after the first, then the client gets CONNACK "server unavailable". A
 * session answers the request on receipt, so ATTACH_REPLY_MS only guards
 * against an answer lost with a node. */
#define ATTACH_RETRY_MS 50u
#define ATTACH_GIVE_UP_MS 4000u
#define ATTACH_REPLY_MS 10000u
/* Bytes of frames a client may send along with its upgrade request. */
#define WS_SLACK_LEN (64u * 1024u)
static const hm_type conn_timer_type = {.name = "mqtt.conn_timer"};

static size_t held_count(const mqtt_conn *c)
{
    return c->held ? c->held->count : 0;
}

/* Removes and returns the oldest held frame; frees the ring once empty. */
static hm_msg *unhold(mqtt_conn *c)
{
    held_ring *h = c->held;
    hm_msg *m = h->items[h->head];

    h->head = (h->head + 1) % h->cap;
    if (--h->count == 0) {
        hm_free(h);
        c->held = NULL;
    }
    return m;
}

void *mqtt_conn_state_create(mqtt_broker *b, uint64_t id, bool ws)
{
    mqtt_conn *c = hm_calloc(1, sizeof *c);

    (void)id; /* net's handle carries it from "net.opened" on */
    c->b = b;
    if (ws)
        c->ws = hm_calloc(1, sizeof *c->ws);
    /* relaxed: a statistic (see broker_impl.h). */
    atomic_fetch_add_explicit(&b->conns_open, 1, memory_order_relaxed);
    return c;
}

void mqtt_conn_state_destroy(void *state)
{
    mqtt_conn *c = state;

    if (!c)
        return;
    while (held_count(c) > 0)
        hm_msg_destroy(unhold(c));
    mqtt_pub_release(c->will);
    mqtt_qos2_box_destroy(c->in_qos2);
    if (c->cl) {
        if (c->cl->session_timer)
            hm_runtime_cancel_timer(c->b->rt, c->cl->session_timer);
        if (c->cl->attach_timer)
            hm_runtime_cancel_timer(c->b->rt, c->cl->attach_timer);
        if (c->cl->fwd_timer)
            hm_runtime_cancel_timer(c->b->rt, c->cl->fwd_timer);
        mqtt_blob_destroy(c->cl->fwd);
        hm_free(c->cl->session_node);
        hm_free(c->cl);
    }
    if (c->acks)
        hm_free(c->acks->v);
    hm_free(c->acks);
    if (c->deliveries) {
        mqtt_deliveries_fini(c->deliveries);
        hm_free(c->deliveries);
    }
    hm_conn_release(c->conn);
    hm_free(c->username);
    if (c->ws) {
        if (c->ws->connect_timer)
            hm_runtime_cancel_timer(c->b->rt, c->ws->connect_timer);
        hm_free(c->ws->head);
        mqtt_ws_decoder_destroy(c->ws->wsd);
        mqtt_framer_destroy(c->ws->mf);
        hm_free(c->ws);
    }
    hm_addr_release(c->session); /* last: client_id points into its name */
    /* relaxed: a statistic. */
    atomic_fetch_sub_explicit(&c->b->conns_open, 1, memory_order_relaxed);
    hm_free(c);
}

/* The routing scratch, made on first use. */
mqtt_deliveries *mqtt_conn_deliveries(mqtt_conn *c)
{
    if (!c->deliveries) {
        c->deliveries = hm_alloc(sizeof *c->deliveries);
        mqtt_deliveries_init(c->deliveries);
    }
    return c->deliveries;
}

static void conn_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason w)
{
    (void)ctx;
    (void)w;
    mqtt_conn_state_destroy(state);
}

const hm_hooks mqtt_conn_hooks = {.deactivate = conn_deactivate};

/* ------------------------------------------------------------ closing */

bool mqtt_conn_allows(mqtt_conn *c, mqtt_acl_access access, const char *topic,
                   size_t len)
{
    mqtt_acl_client who = {.client_id = c->client_id, .username = c->username};

    return mqtt_broker_allows(c->b, &who, access, topic, len);
}

static void publish_will(hm_ctx *ctx, mqtt_conn *c)
{
    if (!c->will)
        return;
    if (!mqtt_conn_allows(c, MQTT_ACL_WRITE, c->will->topic, c->will->topic_len)) {
        mqtt_pub_release(c->will);
        c->will = NULL;
        return;
    }
    HM_LOG_DEBUG("MQTT-WILL", "client %s: publishing its will on %s",
                 c->client_id, c->will->topic);
    mqtt_broker_route(c->b, ctx, mqtt_conn_deliveries(c), c->will, c->will_retain);
    mqtt_pub_release(c->will);
    c->will = NULL;
}

/* Closes the connection for `why`. The will is published unless the
 * client said DISCONNECT [MQTT-3.14.4-3]; `abort` resets instead of
 * flushing (after a protocol violation nothing more is owed). */
void mqtt_conn_close(hm_ctx *ctx, mqtt_conn *c, const char *why, bool abort)
{
    if (c->phase == CONN_CLOSING)
        return;
    HM_LOG_DEBUG("MQTT-CLOSE", "connection %llu (%s): %s",
                 mqtt_conn_id(c), c->client_id ? c->client_id : "-",
                 why);
    c->phase = CONN_CLOSING;
    publish_will(ctx, c);
    if (abort)
        hm_conn_abort(c->conn);
    else
        hm_conn_close(c->conn);
}

void mqtt_conn_send_session(hm_ctx *ctx, mqtt_conn *c, hm_msg *m)
{
    if (hm_ctx_send(ctx, c->session, m) != HM_OK) {
        hm_msg_destroy(m);
        mqtt_conn_close(ctx, c, "session unreachable", true);
    }
}

/* ---------------------------------------------------------- attaching */

static void arm_timer(hm_ctx *ctx, mqtt_conn *c, uint64_t which,
                      uint32_t delay_ms, hm_timer_id *id);

/* A request to the session came back with `err`: true if it is to be
 * sent again (armed as `which` on `*timer`), false if the session cannot
 * be reached (its answer timed out, or it was refused for longer than
 * ATTACH_GIVE_UP_MS since `since_ms`). */
static bool try_again(hm_ctx *ctx, mqtt_conn *c, hm_err err,
                      uint64_t since_ms, uint64_t which, hm_timer_id *timer)
{
    if (err == HM_ETIMEDOUT ||
        hm_ctx_now_ms(ctx) - since_ms >= ATTACH_GIVE_UP_MS)
        return false;
    if (!c->cl->attach_retried)
        HM_LOG_INFO("MQTT-ATTACH-RETRY",
                    "client %s: refused on the way to its session (%s): the "
                    "members disagree about its node; trying again",
                    c->client_id, hm_err_str(err));
    c->cl->attach_retried = true;
    arm_timer(ctx, c, which, ATTACH_RETRY_MS, timer);
    return true;
}

static void attach_answered(hm_ctx *ctx, void *state, hm_msg *reply,
                            hm_err err, void *arg)
{
    mqtt_conn *c = state;
    mqtt_packet p = {.type = MQTT_CONNACK,
                     .u.connack.return_code = MQTT_CONNACK_SERVER_UNAVAILABLE};

    (void)reply;
    (void)arg;
    if (err == HM_OK || c->phase != CONN_ATTACHING ||
        try_again(ctx, c, err, c->cl->attach_since_ms, TIMER_ATTACH,
                  &c->cl->attach_timer))
        return; /* the session has it ("mqtt.attached" follows), or later */
    /* The session never had it (or its answer is lost with a node): the
     * client is refused and tries again; no will for a refused CONNECT. */
    HM_LOG_INFO("MQTT-CONNECT-REFUSED", "connection %llu: CONNACK %d: %s",
                mqtt_conn_id(c), MQTT_CONNACK_SERVER_UNAVAILABLE,
                "session unreachable");
    mqtt_pub_release(c->will);
    c->will = NULL;
    mqtt_write_packet(c->conn, c->ws != NULL, &p);
    mqtt_conn_close(ctx, c, "session unreachable", false);
}

void mqtt_conn_attach(hm_ctx *ctx, mqtt_conn *c)
{
    mqtt_attach *a = hm_alloc(sizeof *a);
    hm_msg *m;

    a->conn = hm_conn_ref(c->conn);
    a->conn_name = hm_strdup(hm_addr_name(hm_ctx_self(ctx)));
    a->ws = c->ws != NULL;
    a->clean = !c->persistent || c->fallback;
    a->username = c->username ? hm_strdup(c->username) : NULL;
    m = hm_msg_create(&mqtt_attach_type, a, 0);
    if (!c->b->node) {
        mqtt_conn_send_session(ctx, c, m);
        return;
    }
    if (!c->cl)
        c->cl = hm_calloc(1, sizeof *c->cl);
    if (!c->cl->attach_since_ms)
        c->cl->attach_since_ms = hm_ctx_now_ms(ctx);
    if (hm_ctx_request(ctx, c->session, m, ATTACH_REPLY_MS, attach_answered,
                       NULL, NULL) != HM_OK) {
        hm_msg_destroy(m);
        mqtt_conn_close(ctx, c, "session unreachable", true);
    }
}

static void send_forward(hm_ctx *ctx, mqtt_conn *c);

static void forward_answered(hm_ctx *ctx, void *state, hm_msg *reply,
                             hm_err err, void *arg)
{
    mqtt_conn *c = state;

    (void)reply;
    if (!c->cl->fwd || c->phase == CONN_CLOSING ||
        (uint32_t)(uintptr_t)arg != c->cl->fwd_seq)
        return; /* an answer about an earlier forward */
    if (err == HM_OK) { /* the session has it: "mqtt.done" follows */
        mqtt_blob_destroy(c->cl->fwd);
        c->cl->fwd = NULL;
        return;
    }
    if (!try_again(ctx, c, err, c->cl->fwd_since_ms, TIMER_FORWARD,
                   &c->cl->fwd_timer))
        mqtt_conn_close(ctx, c, "session unreachable", true);
}

/* Sends the kept forward again (a copy: the kept one stays until the
 * session has it). */
static void send_forward(hm_ctx *ctx, mqtt_conn *c)
{
    const mqtt_blob *f = c->cl->fwd;
    hm_msg *m = hm_msg_create(&mqtt_forward_type,
                              mqtt_blob_create(f->conn, f->data, f->len), 0);

    if (hm_ctx_request(ctx, c->session, m, ATTACH_REPLY_MS, forward_answered,
                       (void *)(uintptr_t)c->cl->fwd_seq, NULL) != HM_OK) {
        hm_msg_destroy(m);
        mqtt_conn_close(ctx, c, "session unreachable", true);
    }
}

void mqtt_conn_forward(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                       size_t len)
{
    if (!c->b->node) {
        mqtt_conn_send_session(
            ctx, c,
            hm_msg_create(&mqtt_forward_type,
                          mqtt_blob_create(NULL, data, len), 0));
        return;
    }
    if (!c->cl)
        c->cl = hm_calloc(1, sizeof *c->cl);
    mqtt_blob_destroy(c->cl->fwd); /* none: one at a time (`waiting`) */
    c->cl->fwd = mqtt_blob_create(hm_addr_name(hm_ctx_self(ctx)), data, len);
    c->cl->fwd_since_ms = hm_ctx_now_ms(ctx);
    c->cl->fwd_seq++;
    send_forward(ctx, c);
}

/* Tells the session the connection is gone, once, handing back the
 * inbound QoS 2 ids. */
void mqtt_conn_detach(hm_ctx *ctx, mqtt_conn *c)
{
    hm_msg *m;

    if (!c->session || c->detached)
        return;
    c->detached = true;
    /* Named: on another node the sender is the cluster's, not us. */
    m = hm_msg_create(
        &mqtt_detach_type,
        mqtt_ctl_create(hm_addr_name(hm_ctx_self(ctx)), c->in_qos2), 0);
    c->in_qos2 = NULL;
    if (hm_ctx_send(ctx, c->session, m) != HM_OK)
        hm_msg_destroy(m);
}

/* "net.closed": the end. The session learns it (and keeps the inbound
 * QoS 2 ids if it is persistent); the activation ends after this. If the
 * session is still handling a packet, the end waits for its answer: the
 * frames held meanwhile were received and count (a client that sends
 * CONNECT, PUBLISH, DISCONNECT and closes at once is common). */
static void on_closed(hm_ctx *ctx, mqtt_conn *c, hm_err cause)
{
    if (c->waiting && c->phase != CONN_CLOSING) {
        c->net_closed = true;
        c->close_cause = (uint8_t)cause;
        return;
    }
    if (c->phase != CONN_CLOSING && cause == HM_ETIMEDOUT &&
        c->phase != CONN_AWAIT_CONNECT) /* [MQTT-3.1.2-24] */
        HM_LOG_INFO("MQTT-KEEPALIVE",
                    "client %s: nothing for 1.5 x its keepalive",
                    c->client_id ? c->client_id : "-");
    else if (c->phase != CONN_CLOSING)
        HM_LOG_DEBUG("MQTT-CLOSE", "connection %llu (%s) closed: %s",
                     mqtt_conn_id(c), c->client_id ? c->client_id : "-",
                     cause == HM_ETIMEDOUT ? "no CONNECT in time"
                                           : hm_err_str(cause));
    publish_will(ctx, c);
    c->phase = CONN_CLOSING;
    mqtt_conn_detach(ctx, c);
    hm_ctx_deactivate(ctx);
}

/* ----------------------------------------------------------- timers */

static void arm_timer(hm_ctx *ctx, mqtt_conn *c, uint64_t which,
                      uint32_t delay_ms, hm_timer_id *id)
{
    hm_msg *m = hm_msg_create(&conn_timer_type, NULL, which);

    *id = 0;
    if (hm_runtime_send_after(hm_ctx_runtime(ctx), hm_ctx_self(ctx), m,
                              delay_ms, id) != HM_OK)
        hm_msg_destroy(m);
}

static void on_timer(hm_ctx *ctx, mqtt_conn *c, uint64_t which)
{
    if (which == TIMER_FORWARD) {
        if (c->cl)
            c->cl->fwd_timer = 0;
        if (c->cl && c->cl->fwd && c->phase != CONN_CLOSING)
            send_forward(ctx, c);
        return;
    }
    if (which == TIMER_ATTACH) {
        if (c->cl)
            c->cl->attach_timer = 0;
        if (c->phase == CONN_ATTACHING)
            mqtt_conn_attach(ctx, c);
        return;
    }
    if (which == TIMER_SESSION) { /* "mqtt.moved" would have cleared it */
        if (!c->cl)
            return;
        c->cl->session_timer = 0;
        if (c->cl->session_node && c->phase != CONN_CLOSING)
            mqtt_conn_close(ctx, c, "session lost with its node", true);
        return;
    }
    if (which != TIMER_CONNECT || !c->ws)
        return;
    c->ws->connect_timer = 0;
    if (c->phase == CONN_AWAIT_CONNECT)
        mqtt_conn_close(ctx, c, "no CONNECT in time", true);
}

/* ------------------------------------------------ MQTT over WebSocket */

static void ws_write_control(mqtt_conn *c, mqtt_ws_opcode op,
                             const mqtt_bytes *payload)
{
    uint8_t buf[MQTT_WS_MAX_HEADER_LEN + 125];
    size_t len;

    if (mqtt_ws_encode(
            &(mqtt_ws_frame){.opcode = op, .fin = true, .payload = *payload},
            buf, sizeof buf, &len) == HM_OK)
        hm_conn_write(c->conn, buf, len);
}

static void ws_fail(hm_ctx *ctx, mqtt_conn *c, uint16_t code, const char *why)
{
    uint8_t buf[4];

    hm_conn_write(c->conn, buf, mqtt_ws_encode_close(code, buf));
    mqtt_conn_close(ctx, c, why, false);
}

/* Gathers the upgrade request and answers it; what follows the request
 * is the start of the frame stream. */
static void ws_handshake(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                         size_t len)
{
    mqtt_ws_handshake hs;
    hm_err err;

    if (c->ws->head_len + len > MQTT_WS_MAX_REQUEST_LEN + WS_SLACK_LEN) {
        mqtt_conn_close(ctx, c, "WebSocket upgrade request too long", true);
        return;
    }
    c->ws->head = hm_realloc(c->ws->head, c->ws->head_len + len);
    memcpy(c->ws->head + c->ws->head_len, data, len);
    c->ws->head_len += len;
    err = mqtt_ws_handshake_parse(c->ws->head, c->ws->head_len, &hs);
    if (err == HM_EAGAIN)
        return;
    if (err != HM_OK) {
        mqtt_conn_close(ctx, c, "WebSocket upgrade request too long", true);
        return;
    }
    hm_conn_write(c->conn, hs.response, hs.response_len);
    if (!hs.accepted) {
        mqtt_conn_close(ctx, c, hs.reason, false);
        return;
    }
    c->ws->open = true;
    c->ws->wsd = mqtt_ws_decoder_create(NULL);
    c->ws->mf = mqtt_framer_create(&c->b->limits);
    mqtt_ws_decoder_push(c->ws->wsd, c->ws->head + hs.request_len,
                         c->ws->head_len - hs.request_len);
    hm_free(c->ws->head);
    c->ws->head = NULL;
    c->ws->head_len = 0;
}

/* Handles one WebSocket event; false when the stream must stop. */
static bool ws_event(hm_ctx *ctx, mqtt_conn *c, const mqtt_ws_event *ev)
{
    switch (ev->kind) {
    case MQTT_WS_EV_DATA:
        mqtt_framer_push(c->ws->mf, ev->payload.ptr, ev->payload.len);
        return true;
    case MQTT_WS_EV_PING:
        ws_write_control(c, MQTT_WS_OP_PONG, &ev->payload);
        return true;
    case MQTT_WS_EV_PONG:
        return true;
    case MQTT_WS_EV_CLOSE: /* an MQTT close without DISCONNECT: the will */
        ws_fail(ctx, c, MQTT_WS_CLOSE_NORMAL, "WebSocket closed");
        return false;
    }
    return false;
}

/* Handles every whole packet the stream holds, until the session must
 * answer first (`waiting`) or the connection closes. */
static void ws_drain(hm_ctx *ctx, mqtt_conn *c)
{
    while (!c->waiting && c->phase != CONN_CLOSING && c->ws->open) {
        mqtt_fault why = {0};
        mqtt_ws_fault wf = {0};
        mqtt_ws_event ev;
        mqtt_bytes pkt;
        hm_err err = mqtt_framer_next(c->ws->mf, &pkt, &why);

        if (err == HM_OK) {
            mqtt_conn_packet(ctx, c, pkt.ptr, pkt.len);
            continue;
        }
        if (err != HM_EAGAIN) {
            ws_fail(ctx, c, MQTT_WS_CLOSE_PROTOCOL_ERROR, "malformed packet");
            return;
        }
        err = mqtt_ws_decoder_next(c->ws->wsd, &ev, &wf);
        if (err == HM_EAGAIN)
            return;
        if (err != HM_OK) {
            ws_fail(ctx, c,
                    wf.close_code ? wf.close_code
                                  : MQTT_WS_CLOSE_PROTOCOL_ERROR,
                    wf.reason ? wf.reason : "WebSocket framing");
            return;
        }
        if (!ws_event(ctx, c, &ev))
            return;
    }
}

/* Bytes or a packet from net, as the connection's protocol reads them. */
static void feed(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data, size_t len)
{
    if (!c->ws) {
        mqtt_conn_packet(ctx, c, data, len); /* the MQTT framer cut a packet */
        return;
    }
    if (!c->ws->open)
        ws_handshake(ctx, c, data, len);
    else
        mqtt_ws_decoder_push(c->ws->wsd, data, len);
    ws_drain(ctx, c);
}

/* ------------------------------------------------------ holding frames */

static void hold(mqtt_conn *c, hm_msg *frame)
{
    held_ring *h = c->held;

    if (!h || h->count == h->cap) {
        uint32_t cap = h ? h->cap * 2 : 8;
        held_ring *n = hm_alloc(sizeof *n + cap * sizeof n->items[0]);

        n->head = 0;
        n->count = h ? h->count : 0;
        n->cap = cap;
        for (uint32_t i = 0; i < n->count; i++)
            n->items[i] = h->items[(h->head + i) % h->cap];
        hm_free(h);
        c->held = h = n;
    }
    h->items[(h->head + h->count++) % h->cap] = frame;
}

/* The session answered: handle held frames until one makes us wait
 * again. Reading is not starved meanwhile: held frames count against
 * net's in-flight bound, which pauses the socket when it fills. */
static void resume(hm_ctx *ctx, mqtt_conn *c)
{
    c->waiting = false;
    if (c->ws)
        ws_drain(ctx, c); /* packets already in the stream come first */
    while (!c->waiting && held_count(c) > 0 && c->phase != CONN_CLOSING) {
        hm_msg *m = unhold(c);
        const uint8_t *data;
        size_t len;

        data = hm_net_msg_data(m, &len);
        feed(ctx, c, data, len);
        hm_msg_destroy(m);
    }
    if (c->net_closed && !c->waiting) {
        c->net_closed = false;
        on_closed(ctx, c, c->close_cause);
    }
}

static void on_frame(hm_ctx *ctx, mqtt_conn *c, hm_msg *msg)
{
    const uint8_t *data;
    size_t len;

    if (c->phase == CONN_CLOSING)
        return;
    if (c->waiting || held_count(c) > 0) {
        hold(c, hm_msg_move(msg));
        return;
    }
    data = hm_net_msg_data(msg, &len);
    feed(ctx, c, data, len);
}

static void set_session_node(mqtt_conn *c, const mqtt_ctl *ctl)
{
    if (ctl && ctl->name) {
        if (!c->cl)
            c->cl = hm_calloc(1, sizeof *c->cl);
        hm_free(c->cl->session_node);
        c->cl->session_node = hm_strdup(ctl->name);
        if (c->cl->session_timer &&
            hm_runtime_cancel_timer(c->b->rt, c->cl->session_timer))
            c->cl->session_timer = 0;
    }
}

/* The node where our session lived is gone. If it left cleanly the
 * session moved and says so ("mqtt.moved"); if not, it is lost. */
static void on_node_gone(hm_ctx *ctx, mqtt_conn *c, const char *gone)
{
    if (!c->cl || !c->cl->session_node || c->phase == CONN_CLOSING ||
        c->cl->session_timer || strcmp(c->cl->session_node, gone) != 0)
        return;
    arm_timer(ctx, c, TIMER_SESSION, SESSION_GRACE_MS, &c->cl->session_timer);
}

static void on_attached(hm_ctx *ctx, mqtt_conn *c, hm_msg *msg)
{
    mqtt_ctl *ctl = hm_msg_payload(msg);

    if (c->phase != CONN_ATTACHING)
        return;
    mqtt_qos2_box_destroy(c->in_qos2);
    c->in_qos2 = ctl ? ctl->ids : NULL; /* NULL: made on a QoS 2 */
    if (ctl)
        ctl->ids = NULL;
    set_session_node(c, ctl);
    c->phase = CONN_CONNECTED;
    resume(ctx, c);
}

/* A packet the session (on another node) wrote: to the socket, in a
 * WebSocket frame when the client speaks WebSocket. */
static void on_out(hm_ctx *ctx, mqtt_conn *c, const mqtt_blob *blob)
{
    uint8_t head[MQTT_WS_MAX_HEADER_LEN];
    size_t head_len = 0;
    uint8_t *buf;
    hm_err err;

    if (c->phase == CONN_CLOSING || !c->conn)
        return;
    if (c->ws)
        head_len = mqtt_ws_frame_header(
            &(mqtt_ws_frame){.opcode = MQTT_WS_OP_BINARY,
                             .fin = true,
                             .payload = {NULL, blob->len}},
            head);
    buf = hm_alloc(head_len + blob->len);
    memcpy(buf, head, head_len);
    memcpy(buf + head_len, blob->data, blob->len);
    if ((err = hm_conn_write_take(c->conn, buf, head_len + blob->len)) !=
        HM_OK) {
        hm_free(buf);
        /* The client does not read (or is gone): what was in flight is
         * resent when it reconnects. */
        if (err == HM_EFULL)
            HM_LOG_WARN("MQTT-SLOW-CLIENT", "client %s: write queue full",
                        c->client_id ? c->client_id : "-");
        mqtt_conn_close(ctx, c, "write failed", true);
    }
}

hm_err mqtt_conn_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    mqtt_conn *c = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &hm_net_frame_type) {
        on_frame(ctx, c, msg);
    } else if (t == &mqtt_attached_type) {
        on_attached(ctx, c, msg);
    } else if (t == &mqtt_done_type) {
        resume(ctx, c);
    } else if (t == &mqtt_durable_type) {
        mqtt_conn_ack_done(ctx, c, hm_msg_arg(msg), true);
    } else if (t == &conn_timer_type) {
        on_timer(ctx, c, hm_msg_arg(msg));
    } else if (t == &mqtt_out_type) {
        on_out(ctx, c, hm_msg_payload(msg));
    } else if (t == &mqtt_kick_type) { /* [MQTT-3.1.4-2] */
        if (hm_msg_req_id(msg) && !hm_msg_is_reply(msg)) { /* "closing" */
            hm_msg *ok = hm_msg_create(&mqtt_done_type, NULL, 0);

            if (hm_ctx_reply(ctx, msg, ok) != HM_OK)
                hm_msg_destroy(ok);
        }
        mqtt_conn_close(ctx, c, "session taken over", true);
    } else if (t == &mqtt_moved_type) {
        set_session_node(c, hm_msg_payload(msg));
    } else if (t == &mqtt_node_gone_type) {
        on_node_gone(ctx, c, hm_msg_payload(msg));
    } else if (t == &hm_net_opened_type) {
        c->conn = hm_conn_ref(hm_net_msg_conn(msg));
        if (c->ws)
            arm_timer(ctx, c, TIMER_CONNECT, c->b->cfg.connect_timeout_ms,
                      &c->ws->connect_timer);
    } else if (t == &hm_net_error_type) {
        HM_LOG_INFO("MQTT-MALFORMED", "connection %llu (%s): framing: %s",
                    mqtt_conn_id(c),
                    c->client_id ? c->client_id : "-",
                    hm_err_str(hm_net_msg_err(msg)));
        mqtt_conn_close(ctx, c, "framing error", true);
    } else if (t == &hm_net_closed_type) {
        on_closed(ctx, c, hm_net_msg_err(msg));
    }
    return HM_OK;
}
