/* apps/mqtt/conn_packet.c: what the connection receiver does with each
 * packet the client sends, once it is cut and decoded (conn.c cuts and
 * holds frames; this file acts on them). CONNECT names the session and
 * hands it the socket, PUBLISH is routed here on the publisher's receiver
 * (ADR 0050), PUBREL and PINGREQ are answered here, and what concerns the
 * session's own deliveries (PUBACK, PUBREC, PUBCOMP, SUBSCRIBE,
 * UNSUBSCRIBE) is forwarded to it. The key decision is the order of
 * acknowledgements: with the `always` durability policy an
 * acknowledgement waits for its commit, and every acknowledgement leaves
 * in the order its packet came [MQTT-4.6.0-2/3], so a FIFO of pending
 * acknowledgements sits in front of the socket once one has had to wait. */
#include "apps/mqtt/conn_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

static void write_ack(hm_ctx *ctx, mqtt_conn *c, mqtt_packet_type type,
                      uint16_t pid)
{
    mqtt_packet p = {.type = type, .u.packet_id = pid};

    if (mqtt_write_packet(c->conn, c->ws != NULL, &p) != HM_OK)
        mqtt_conn_close(ctx, c, "write failed", true);
}

/* Queues an acknowledgement (already `done`, or waiting for its
 * receipt); returns its sequence number. */
static uint64_t ack_push(mqtt_conn *c, mqtt_packet_type type, uint16_t pid,
                         bool done)
{
    struct ack_queue *q = c->acks;

    if (!q)
        q = c->acks = hm_calloc(1, sizeof *q);
    if (q->count == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        pending_ack *v = hm_alloc(cap * sizeof *v);

        for (size_t i = 0; i < q->count; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        hm_free(q->v);
        q->v = v;
        q->cap = cap;
        q->head = 0;
    }
    q->v[(q->head + q->count++) % q->cap] =
        (pending_ack){.type = (uint8_t)type, .done = done, .packet_id = pid};
    return q->head_seq + q->count - 1;
}

static bool ack_is_pending(const mqtt_conn *c, mqtt_packet_type type,
                           uint16_t pid)
{
    const struct ack_queue *q = c->acks;

    for (size_t i = 0; q && i < q->count; i++) {
        const pending_ack *a = &q->v[(q->head + i) % q->cap];

        if (!a->done && a->type == type && a->packet_id == pid)
            return true;
    }
    return false;
}

/* Marks `seq` done (if it is still queued) and writes every done
 * acknowledgement at the head, in order. */
void mqtt_conn_ack_done(hm_ctx *ctx, mqtt_conn *c, uint64_t seq, bool mark)
{
    struct ack_queue *q = c->acks;

    if (!q)
        return;
    if (mark && seq >= q->head_seq && seq - q->head_seq < q->count)
        q->v[(q->head + (seq - q->head_seq)) % q->cap].done = true;
    while (q->count > 0 && q->v[q->head].done) {
        pending_ack a = q->v[q->head];

        q->head = (q->head + 1) % q->cap;
        q->count--;
        q->head_seq++;
        if (c->phase != CONN_CLOSING)
            write_ack(ctx, c, (mqtt_packet_type)a.type, a.packet_id);
    }
}

/* Acknowledges when `r` (the connection's unit of the receipt created for
 * `seq`, taken) is the last, else when "mqtt.durable" says so. */
static void ack_when_durable(hm_ctx *ctx, mqtt_conn *c, mqtt_receipt *r,
                             uint64_t seq)
{
    mqtt_conn_ack_done(ctx, c, seq, mqtt_receipt_drop(r));
}

/* Without `always` persistence: at once; with it, in order behind the
 * acknowledgements still waiting. */
static void ack_now(hm_ctx *ctx, mqtt_conn *c, mqtt_packet_type type,
                    uint16_t pid)
{
    if (!c->acks || c->acks->count == 0) {
        write_ack(ctx, c, type, pid);
        return;
    }
    ack_push(c, type, pid, true);
    mqtt_conn_ack_done(ctx, c, 0, false);
}

static void refuse_connect(hm_ctx *ctx, mqtt_conn *c, int code, const char *why)
{
    mqtt_packet p = {.type = MQTT_CONNACK,
                     .u.connack.return_code = (uint8_t)code};

    HM_LOG_INFO("MQTT-CONNECT-REFUSED", "connection %llu: CONNACK %d: %s",
                mqtt_conn_id(c), code, why);
    mqtt_write_packet(c->conn, c->ws != NULL, &p);
    mqtt_conn_close(ctx, c, why, false);
}

static void take_will(mqtt_conn *c, const mqtt_connect *k)
{
    if (!k->will)
        return;
    c->will = mqtt_pub_create(k->will_topic.ptr, k->will_topic.len,
                              k->will_payload.ptr, k->will_payload.len,
                              k->will_qos, false);
    c->will_retain = k->will_retain;
}

static void on_connect(hm_ctx *ctx, mqtt_conn *c, const mqtt_connect *k)
{
    char name[HM_ADDR_MAX_LEN + 1], gen[48];
    uint32_t ka_s = k->keepalive_s;
    const char *id;
    size_t id_len;
    int code;

    /* Before the session is named, so a refused client never wakes one. */
    if ((code = mqtt_broker_authenticate(c->b, k)) != 0) {
        refuse_connect(ctx, c, code, "refused by the admission rules");
        return;
    }
    if (k->client_id.len > 0) {
        id = (const char *)k->client_id.ptr;
        id_len = k->client_id.len;
    } else { /* [MQTT-3.1.3-6] a zero-byte id with clean session: assign one */
        snprintf(gen, sizeof gen, "hermes-%llx-%llu",
                 (unsigned long long)c->b->start_ms, mqtt_conn_id(c));
        id = gen;
        id_len = strlen(gen);
    }
    /* The codec refused U+0000 in the id [MQTT-1.5.3-2], so %.*s copies
     * all of it. */
    if (snprintf(name, sizeof name, MQTT_SESSION_PREFIX "%.*s", (int)id_len,
                 id) >= (int)sizeof name ||
        hm_runtime_intern(hm_ctx_runtime(ctx), name, &c->session) != HM_OK) {
        refuse_connect(ctx, c, MQTT_CONNACK_ID_REJECTED, "client id too long");
        return;
    }
    c->client_id = hm_addr_name(c->session) + strlen(MQTT_SESSION_PREFIX);
    if (c->b->node && !mqtt_session_reachable(c->b, name)) {
        /* A partition: the client's session is on a member we cannot
         * reach. It gets a clean session here meanwhile (ADR 0105). The
         * client id then points into the fallback session's name. */
        HM_LOG_INFO("MQTT-FALLBACK", "client %s: its session's node is "
                    "unreachable; a clean session here meanwhile",
                    c->client_id);
        c->fallback = true;
        if (snprintf(name, sizeof name, MQTT_FALLBACK_PREFIX "%.*s",
                     (int)id_len, id) >= (int)sizeof name) {
            refuse_connect(ctx, c, MQTT_CONNACK_ID_REJECTED,
                           "client id too long");
            return;
        }
        hm_addr_release(c->session);
        c->session = NULL;
        c->client_id = NULL;
        if (hm_runtime_intern(hm_ctx_runtime(ctx), name, &c->session) !=
            HM_OK) {
            refuse_connect(ctx, c, MQTT_CONNACK_SERVER_UNAVAILABLE,
                           "session unreachable");
            return;
        }
        c->client_id =
            hm_addr_name(c->session) + strlen(MQTT_FALLBACK_PREFIX);
    }
    if (k->has_username)
        c->username =
            hm_strndup((const char *)k->username.ptr, k->username.len);
    take_will(c, k);
    if (c->ws && c->ws->connect_timer &&
        hm_runtime_cancel_timer(c->b->rt, c->ws->connect_timer))
        c->ws->connect_timer = 0;
    /* [MQTT-3.1.2-24] net closes the connection after 1.5 x keepalive
     * without a packet (0: never), and on_closed publishes the will. */
    hm_conn_set_idle_timeout(c->conn, ka_s * 1500u);
    c->persistent = !k->clean_session;
    c->phase = CONN_ATTACHING;
    c->waiting = true; /* until "mqtt.attached" */
    HM_LOG_DEBUG("MQTT-CONNECT",
                 "connection %llu: client %s, clean %d, "
                 "keepalive %u s",
                 mqtt_conn_id(c), c->client_id, k->clean_session,
                 ka_s);
    mqtt_conn_attach(ctx, c);
}

static void on_publish(hm_ctx *ctx, mqtt_conn *c, const mqtt_publish *p)
{
    mqtt_packet_type ack = p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
    mqtt_receipt *r = NULL;
    uint64_t seq = 0;
    mqtt_pub *pub;

    /* relaxed: a statistic. */
    atomic_fetch_add_explicit(&c->b->received, 1, memory_order_relaxed);
    if (p->qos == 2 && !c->in_qos2)
        c->in_qos2 = hm_calloc(1, sizeof *c->in_qos2);
    if (p->qos == 2 && !mqtt_qos2_ids_receive(c->in_qos2, p->packet_id)) {
        /* A resend of a message we already routed [MQTT-4.3.3-2]; if its
         * PUBREC still waits for a commit, that one answers it. */
        if (!ack_is_pending(c, MQTT_PUBREC, p->packet_id))
            ack_now(ctx, c, MQTT_PUBREC, p->packet_id);
        return;
    }
    if (p->qos > 0 && c->b->durable_always) { /* saver.c */
        seq = ack_push(c, ack, p->packet_id, false);
        r = mqtt_receipt_create(c->b, hm_ctx_self(ctx), seq);
    }
    if (p->qos == 2 && c->persistent && c->b->persist)
        mqtt_saver_inbound(c->b, c->client_id, p->packet_id, true,
                           r ? mqtt_receipt_ref(r) : NULL);
    if (!mqtt_conn_allows(c, MQTT_ACL_WRITE, (const char *)p->topic.ptr, p->topic.len)) {
        /* Acknowledged all the same, as mosquitto does: the client cannot
         * tell a refused publish from one nobody subscribed to. */
        HM_LOG_DEBUG("MQTT-ACL-DENY", "client %s may not publish to %.*s",
                     c->client_id, (int)p->topic.len, p->topic.ptr);
    } else {
        /* Forwarded with RETAIN=0 whatever the flag was [MQTT-3.3.1-9]. */
        pub = mqtt_pub_create(p->topic.ptr, p->topic.len, p->payload.ptr,
                              p->payload.len, p->qos, false);
        pub->receipt = r;
        mqtt_broker_route(c->b, ctx, mqtt_conn_deliveries(c), pub, p->retain);
        mqtt_pub_release(pub);
    }
    /* [MQTT-4.3.2-2], [MQTT-4.3.3-2] */
    if (r)
        ack_when_durable(ctx, c, r, seq);
    else if (p->qos > 0)
        ack_now(ctx, c, ack, p->packet_id);
}

/* PUBREL: forget the id and answer PUBCOMP [MQTT-4.3.3-2]; a persistent
 * client's stored id goes too, before PUBCOMP with `always` (else a
 * restart would take its next PUBLISH with that id for a resend). */
static void on_pubrel(hm_ctx *ctx, mqtt_conn *c, uint16_t pid)
{
    mqtt_receipt *r = NULL;
    uint64_t seq = 0;

    if (c->in_qos2)
        mqtt_qos2_ids_release(c->in_qos2, pid);
    if (c->persistent && c->b->persist) {
        if (c->b->durable_always) {
            seq = ack_push(c, MQTT_PUBCOMP, pid, false);
            r = mqtt_receipt_create(c->b, hm_ctx_self(ctx), seq);
        }
        mqtt_saver_inbound(c->b, c->client_id, pid, false,
                           r ? mqtt_receipt_ref(r) : NULL);
    }
    if (r)
        ack_when_durable(ctx, c, r, seq);
    else
        ack_now(ctx, c, MQTT_PUBCOMP, pid);
}

/* Forwards a SUBSCRIBE or UNSUBSCRIBE, whole, and holds further frames
 * until the session says "mqtt.done". */
static void forward(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data, size_t len)
{
    c->waiting = true;
    mqtt_conn_forward(ctx, c, data, len);
}

static void on_fault(hm_ctx *ctx, mqtt_conn *c, const mqtt_fault *why)
{
    int code = mqtt_fault_connack_code(why->kind);

    if (c->phase == CONN_AWAIT_CONNECT && code >= 0) { /* [MQTT-3.1.2-2] */
        refuse_connect(ctx, c, code, why->rule);
        return;
    }
    HM_LOG_INFO("MQTT-MALFORMED", "connection %llu (%s): %s",
                mqtt_conn_id(c), c->client_id ? c->client_id : "-",
                why->rule ? why->rule : "malformed packet");
    mqtt_conn_close(ctx, c, "malformed packet", true);
}

/* One packet from the client: the one switch on packet type. */
void mqtt_conn_packet(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                      size_t len)
{
    mqtt_fault why = {0};
    mqtt_packet p;

    if (mqtt_decode(data, len, &c->b->limits, &p, &why) != HM_OK) {
        on_fault(ctx, c, &why);
        return;
    }
    if (c->phase == CONN_AWAIT_CONNECT && p.type != MQTT_CONNECT) {
        mqtt_conn_close(ctx, c, "[MQTT-3.1.0-1] first packet not CONNECT", true);
        return;
    }
    switch (p.type) {
    case MQTT_CONNECT:
        if (c->phase != CONN_AWAIT_CONNECT)
            mqtt_conn_close(ctx, c, "[MQTT-3.1.0-2] second CONNECT", true);
        else
            on_connect(ctx, c, &p.u.connect);
        break;
    case MQTT_PUBLISH:
        on_publish(ctx, c, &p.u.publish);
        break;
    case MQTT_PUBREL: /* [MQTT-4.3.3-2] release the id, answer PUBCOMP */
        on_pubrel(ctx, c, p.u.packet_id);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        /* In a cluster the session may be on another node, where the
         * sender is not us: the ack names its connection. */
        mqtt_conn_send_session(
            ctx, c,
            hm_msg_create(&mqtt_ack_type,
                          c->b->node ? mqtt_ctl_create(
                                           hm_addr_name(hm_ctx_self(ctx)),
                                           NULL)
                                     : NULL,
                          (uint64_t)p.type << 16 | p.u.packet_id));
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        forward(ctx, c, data, len);
        break;
    case MQTT_PINGREQ: /* [MQTT-3.12.4-1] */
        write_ack(ctx, c, MQTT_PINGRESP, 0);
        break;
    case MQTT_DISCONNECT: /* [MQTT-3.14.4-3] discard the will */
        mqtt_pub_release(c->will);
        c->will = NULL;
        /* Before the socket closes: a client that sees the close and
         * publishes (or reconnects) finds its session offline, not still
         * sending to this connection. */
        mqtt_conn_detach(ctx, c);
        mqtt_conn_close(ctx, c, "DISCONNECT", false);
        break;
    default: /* server-to-client packets from a client */
        mqtt_conn_close(ctx, c, "a packet only a server may send", true);
        break;
    }
}
