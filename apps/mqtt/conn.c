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
 *
 * Lifecycle: spawned pinned by the listener's accept callback; ends (and
 * its deactivate hook frees it) when "net.closed" arrives. The will is
 * published at the moment the broker decides to close for any reason
 * other than DISCONNECT, or when the network closes first. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/framer.h"
#include "apps/mqtt/outbox.h"
#include "apps/mqtt/ws.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

typedef enum {
    CONN_AWAIT_CONNECT, /* nothing yet but the socket */
    CONN_ATTACHING,     /* CONNECT sent on to the session */
    CONN_CONNECTED,     /* CONNACK written */
    CONN_CLOSING,       /* we asked net to close; frames are ignored */
} conn_phase;

/* Timer messages: arg says which. TIMER_CONNECT: over TCP no timer is
 * armed: net's idle timeout (ADR 0150) closes a connection whose first
 * packet does not come in time (and the first packet must be CONNECT),
 * then one that breaks its keepalive. Over WebSocket the upgrade's bytes
 * count as traffic, so the CONNECT deadline is this runtime timer.
 * TIMER_SESSION: in a cluster, after the session's node is gone. */
enum { TIMER_CONNECT = 1, TIMER_SESSION = 3 };
/* In a cluster, after the session's node is gone: the time the session
 * has to say it moved (a clean leave hands it over) before the connection
 * takes it as lost and closes. */
#define SESSION_GRACE_MS 2000u
/* Bytes of frames a client may send along with its upgrade request. */
#define WS_SLACK_LEN (64u * 1024u)
static const hm_type conn_timer_type = {.name = "mqtt.conn_timer"};

/* MQTT over WebSocket: net delivers bytes as they come; the upgrade request
 * is gathered in `head`, then frames go through `wsd` and the MQTT bytes
 * they carry through `mf`, which cuts packets. Allocated only for a
 * WebSocket listener's connections. */
typedef struct conn_ws {
    bool open; /* the upgrade was answered with 101 */
    hm_timer_id connect_timer; /* CONNECT must come by then */
    uint8_t *head;
    size_t head_len;
    mqtt_ws_decoder *wsd;
    mqtt_framer *mf;
} conn_ws;

/* Frames that arrived while the session was busy, in order: a ring,
 * allocated on the first held frame and freed when it empties. */
typedef struct held_ring {
    uint32_t head, count, cap;
    hm_msg *items[];
} held_ring;

/* Cluster mode only (ADR 0105): where the session lives, and the grace
 * timer armed when that node goes away. */
typedef struct conn_cluster {
    char *session_node; /* NULL until the session says */
    hm_timer_id session_timer;
} conn_cluster;

/* The layout is kept small for idle connections (ADR 0150): what only
 * some connections need (WebSocket, held frames, routing scratch, QoS 2
 * ids) hangs behind pointers that stay NULL until it is needed. */
typedef struct mqtt_conn {
    mqtt_broker *b;
    hm_conn *conn;    /* from "net.opened" */
    hm_addr *session; /* "mqtt/session/<client id>" once CONNECTed */
    const char *client_id; /* borrowed: the end of session's name */
    char *username;        /* NULL: anonymous */
    conn_ws *ws;           /* NULL: plain MQTT over TCP */
    held_ring *held;       /* NULL: nothing held */
    mqtt_pub *will;        /* NULL: none, or already published/discarded */
    mqtt_qos2_ids *in_qos2;      /* from the session; NULL: none yet */
    mqtt_deliveries *deliveries; /* routing scratch; NULL until needed */
    conn_cluster *cl;            /* cluster mode; NULL: a single node */
    uint8_t phase;       /* conn_phase */
    uint8_t close_cause; /* hm_err: see net_closed */
    bool waiting;    /* the session is handling a forwarded packet */
    bool net_closed; /* "net.closed" came while waiting; see on_closed */
    bool will_retain;
    bool fallback;   /* a partition: a temporary clean session */
    bool persistent; /* CleanSession 0: inbound QoS 2 ids are stored */
    bool detached;   /* "mqtt.detach" was sent to the session */
    struct ack_queue *acks; /* `always` persistence only; else NULL */
} mqtt_conn;

/* With the `always` durability policy a PUBACK, PUBREC or PUBCOMP leaves
 * only once what it acknowledges is committed (its receipt, saver.c), and
 * acknowledgements leave in the order the packets came [MQTT-4.6.0-2/3]:
 * a FIFO whose entries are numbered by a per-connection sequence. */
typedef struct pending_ack {
    uint8_t type;
    bool done;
    uint16_t packet_id;
} pending_ack;

struct ack_queue {
    pending_ack *v; /* ring */
    size_t head, count, cap;
    uint64_t head_seq; /* the sequence number of v[head] */
};

/* The connection's id, for logs (0 before "net.opened"). */
static unsigned long long conn_id(const mqtt_conn *c)
{
    return c->conn ? (unsigned long long)hm_conn_id(c->conn) : 0;
}

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
static mqtt_deliveries *deliveries(mqtt_conn *c)
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

static bool allows(mqtt_conn *c, mqtt_acl_access access, const char *topic,
                   size_t len)
{
    mqtt_acl_client who = {.client_id = c->client_id, .username = c->username};

    return mqtt_broker_allows(c->b, &who, access, topic, len);
}

static void publish_will(hm_ctx *ctx, mqtt_conn *c)
{
    if (!c->will)
        return;
    if (!allows(c, MQTT_ACL_WRITE, c->will->topic, c->will->topic_len)) {
        mqtt_pub_release(c->will);
        c->will = NULL;
        return;
    }
    HM_LOG_DEBUG("MQTT-WILL", "client %s: publishing its will on %s",
                 c->client_id, c->will->topic);
    mqtt_broker_route(c->b, ctx, deliveries(c), c->will, c->will_retain);
    mqtt_pub_release(c->will);
    c->will = NULL;
}

/* Closes the connection for `why`. The will is published unless the
 * client said DISCONNECT [MQTT-3.14.4-3]; `abort` resets instead of
 * flushing (after a protocol violation nothing more is owed). */
static void close_conn(hm_ctx *ctx, mqtt_conn *c, const char *why, bool abort)
{
    if (c->phase == CONN_CLOSING)
        return;
    HM_LOG_DEBUG("MQTT-CLOSE", "connection %llu (%s): %s",
                 conn_id(c), c->client_id ? c->client_id : "-",
                 why);
    c->phase = CONN_CLOSING;
    publish_will(ctx, c);
    if (abort)
        hm_conn_abort(c->conn);
    else
        hm_conn_close(c->conn);
}

static void send_to_session(hm_ctx *ctx, mqtt_conn *c, hm_msg *m)
{
    if (hm_ctx_send(ctx, c->session, m) != HM_OK) {
        hm_msg_destroy(m);
        close_conn(ctx, c, "session unreachable", true);
    }
}

/* Tells the session the connection is gone, once, handing back the
 * inbound QoS 2 ids. */
static void detach(hm_ctx *ctx, mqtt_conn *c)
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
                     conn_id(c), c->client_id ? c->client_id : "-",
                     cause == HM_ETIMEDOUT ? "no CONNECT in time"
                                           : hm_err_str(cause));
    publish_will(ctx, c);
    c->phase = CONN_CLOSING;
    detach(ctx, c);
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
    if (which == TIMER_SESSION) { /* "mqtt.moved" would have cleared it */
        if (!c->cl)
            return;
        c->cl->session_timer = 0;
        if (c->cl->session_node && c->phase != CONN_CLOSING)
            close_conn(ctx, c, "session lost with its node", true);
        return;
    }
    if (which != TIMER_CONNECT || !c->ws)
        return;
    c->ws->connect_timer = 0;
    if (c->phase == CONN_AWAIT_CONNECT)
        close_conn(ctx, c, "no CONNECT in time", true);
}

/* ------------------------------------------------------------ packets */

static void write_ack(hm_ctx *ctx, mqtt_conn *c, mqtt_packet_type type,
                      uint16_t pid)
{
    mqtt_packet p = {.type = type, .u.packet_id = pid};

    if (mqtt_write_packet(c->conn, c->ws != NULL, &p) != HM_OK)
        close_conn(ctx, c, "write failed", true);
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
static void ack_done(hm_ctx *ctx, mqtt_conn *c, uint64_t seq, bool mark)
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
    ack_done(ctx, c, seq, mqtt_receipt_drop(r));
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
    ack_done(ctx, c, 0, false);
}

static void refuse_connect(hm_ctx *ctx, mqtt_conn *c, int code, const char *why)
{
    mqtt_packet p = {.type = MQTT_CONNACK,
                     .u.connack.return_code = (uint8_t)code};

    HM_LOG_INFO("MQTT-CONNECT-REFUSED", "connection %llu: CONNACK %d: %s",
                conn_id(c), code, why);
    mqtt_write_packet(c->conn, c->ws != NULL, &p);
    close_conn(ctx, c, why, false);
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
    mqtt_attach *a;
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
                 (unsigned long long)c->b->start_ms, conn_id(c));
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
    a = hm_alloc(sizeof *a);
    a->conn = hm_conn_ref(c->conn);
    a->conn_name = hm_strdup(hm_addr_name(hm_ctx_self(ctx)));
    a->ws = c->ws != NULL;
    a->clean = k->clean_session || c->fallback;
    c->persistent = !k->clean_session;
    a->username = c->username ? hm_strdup(c->username) : NULL;
    c->phase = CONN_ATTACHING;
    c->waiting = true; /* until "mqtt.attached" */
    HM_LOG_DEBUG("MQTT-CONNECT",
                 "connection %llu: client %s, clean %d, "
                 "keepalive %u s",
                 conn_id(c), c->client_id, k->clean_session,
                 ka_s);
    send_to_session(ctx, c, hm_msg_create(&mqtt_attach_type, a, 0));
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
    if (!allows(c, MQTT_ACL_WRITE, (const char *)p->topic.ptr, p->topic.len)) {
        /* Acknowledged all the same, as mosquitto does: the client cannot
         * tell a refused publish from one nobody subscribed to. */
        HM_LOG_DEBUG("MQTT-ACL-DENY", "client %s may not publish to %.*s",
                     c->client_id, (int)p->topic.len, p->topic.ptr);
    } else {
        /* Forwarded with RETAIN=0 whatever the flag was [MQTT-3.3.1-9]. */
        pub = mqtt_pub_create(p->topic.ptr, p->topic.len, p->payload.ptr,
                              p->payload.len, p->qos, false);
        pub->receipt = r;
        mqtt_broker_route(c->b, ctx, deliveries(c), pub, p->retain);
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
    mqtt_blob *blob = mqtt_blob_create(
        c->b->node ? hm_addr_name(hm_ctx_self(ctx)) : NULL, data, len);

    c->waiting = true;
    send_to_session(ctx, c, hm_msg_create(&mqtt_forward_type, blob, 0));
}

static void on_fault(hm_ctx *ctx, mqtt_conn *c, const mqtt_fault *why)
{
    int code = mqtt_fault_connack_code(why->kind);

    if (c->phase == CONN_AWAIT_CONNECT && code >= 0) { /* [MQTT-3.1.2-2] */
        refuse_connect(ctx, c, code, why->rule);
        return;
    }
    HM_LOG_INFO("MQTT-MALFORMED", "connection %llu (%s): %s",
                conn_id(c), c->client_id ? c->client_id : "-",
                why->rule ? why->rule : "malformed packet");
    close_conn(ctx, c, "malformed packet", true);
}

/* One packet from the client: the one switch on packet type. */
static void on_packet(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                      size_t len)
{
    mqtt_fault why = {0};
    mqtt_packet p;

    if (mqtt_decode(data, len, &c->b->limits, &p, &why) != HM_OK) {
        on_fault(ctx, c, &why);
        return;
    }
    if (c->phase == CONN_AWAIT_CONNECT && p.type != MQTT_CONNECT) {
        close_conn(ctx, c, "[MQTT-3.1.0-1] first packet not CONNECT", true);
        return;
    }
    switch (p.type) {
    case MQTT_CONNECT:
        if (c->phase != CONN_AWAIT_CONNECT)
            close_conn(ctx, c, "[MQTT-3.1.0-2] second CONNECT", true);
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
        send_to_session(
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
        detach(ctx, c);
        close_conn(ctx, c, "DISCONNECT", false);
        break;
    default: /* server-to-client packets from a client */
        close_conn(ctx, c, "a packet only a server may send", true);
        break;
    }
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
    close_conn(ctx, c, why, false);
}

/* Gathers the upgrade request and answers it; what follows the request
 * is the start of the frame stream. */
static void ws_handshake(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                         size_t len)
{
    mqtt_ws_handshake hs;
    hm_err err;

    if (c->ws->head_len + len > MQTT_WS_MAX_REQUEST_LEN + WS_SLACK_LEN) {
        close_conn(ctx, c, "WebSocket upgrade request too long", true);
        return;
    }
    c->ws->head = hm_realloc(c->ws->head, c->ws->head_len + len);
    memcpy(c->ws->head + c->ws->head_len, data, len);
    c->ws->head_len += len;
    err = mqtt_ws_handshake_parse(c->ws->head, c->ws->head_len, &hs);
    if (err == HM_EAGAIN)
        return;
    if (err != HM_OK) {
        close_conn(ctx, c, "WebSocket upgrade request too long", true);
        return;
    }
    hm_conn_write(c->conn, hs.response, hs.response_len);
    if (!hs.accepted) {
        close_conn(ctx, c, hs.reason, false);
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
            on_packet(ctx, c, pkt.ptr, pkt.len);
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
        on_packet(ctx, c, data, len); /* the MQTT framer cut a packet */
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
        close_conn(ctx, c, "write failed", true);
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
        ack_done(ctx, c, hm_msg_arg(msg), true);
    } else if (t == &conn_timer_type) {
        on_timer(ctx, c, hm_msg_arg(msg));
    } else if (t == &mqtt_out_type) {
        on_out(ctx, c, hm_msg_payload(msg));
    } else if (t == &mqtt_kick_type) { /* [MQTT-3.1.4-2] */
        close_conn(ctx, c, "session taken over", true);
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
                    conn_id(c),
                    c->client_id ? c->client_id : "-",
                    hm_err_str(hm_net_msg_err(msg)));
        close_conn(ctx, c, "framing error", true);
    } else if (t == &hm_net_closed_type) {
        on_closed(ctx, c, hm_net_msg_err(msg));
    }
    return HM_OK;
}
