/* apps/mqtt/session_out.c: what a session sends to its client's connection
 * receiver, in order, held while that receiver's mailbox is full
 * (docs/adr/0230).
 *
 * In a cluster a session often lives on another node than its client's
 * connection (ADR 0105), and everything it tells the client (CONNACK,
 * SUBACK, PUBLISH, PUBREL, the "attached" and "done" control messages)
 * goes through the cluster's proxy for that connection. While the link to
 * that node is slow or the node is stopped, the proxy holds and its
 * mailbox fills: the send returns HM_EFULL and the message is still ours.
 * Dropping it would lose a QoS 1/2 message until the client reconnects
 * (its packet id is in flight, so nothing resends it) or a SUBACK the
 * client waits for, and sending later messages past it would break the
 * order MQTT promises. So the first HM_EFULL starts a *stall*: that
 * message and every later one for the connection wait here, in order; the
 * session stops moving messages from its outbox into the window (they wait
 * in the outbox, under max_queued_messages, QoS 0 dropped and counted when
 * it is full, as for any full queue); and, at the end of the turn, the
 * session asks the runtime for a room notice (hm_ctx_notify_room, ADR 0240,
 * docs/adr/0300): the receiver that refused it (the proxy, or a bounded
 * local receiver) sends it "mqtt.session_room" once its mailbox has
 * drained to half its bound, and the session sends what waits, oldest
 * first, until all is sent or it is refused again (then it asks again). A
 * stalled session so takes no turn at all until there is room, and resumes
 * on the drain itself, not up to a retry period later (ADR 0230 retried on
 * a timer, 2 ms doubling to 200 ms: five failed sends a second per stalled
 * session). The runtime's hold/wake (hm_ctx_hold) does not fit: holding
 * would stop the session's acks and deliveries too. What is held here is
 * bounded by the inflight window at the stall plus a few control packets.
 *
 * A stall ends when its messages are sent, or when the connection goes
 * (mqtt_session_let_go: the client reconnects and the outbox resends what
 * was in flight, with DUP). A session that moves to another node hands
 * over its outbox, whose in-flight messages the new owner resends; the
 * rest of what is held here, the answers the connection waits for (a
 * CONNACK with its "attached", a SUBACK or UNSUBACK with its "done"),
 * goes in the handoff as `owed` (mqtt_session_stall_owed), and the new
 * owner sends it first (mqtt_session_send_owed, docs/adr/0296).
 *
 * The same holding covers a link that is not up *yet* (docs/adr/0266): a
 * session adopted by a node that has just joined may hear of its
 * connection's node before its link to that node is up; a send to the
 * connection then resolves to nowhere and is dropped silently (the name is
 * homed on a member that is not live here), so an in-flight QoS 1/2
 * message would wait for the client's next reconnection. The adoption
 * starts a stall that waits for the link (mqtt_session_await_link), with
 * timer retries (2 ms doubling to 200 ms: there is no mailbox to wait on,
 * the name resolves nowhere yet) for at most LINK_WAIT_MS; then the
 * session lets the connection go (the client reconnects, as for any lost
 * connection). Once the link is up, a full mailbox is waited for as above.
 * Everything here runs on the session's receiver. */
#include "apps/mqtt/session_impl.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <string.h>

#define RETRY_MIN_MS 2u
#define RETRY_MAX_MS 200u
/* The safety net's period, when no room notice could be asked for. */
#define RETRY_SAFETY_MS 1000u
/* The longest a session waits for the link to its connection's node. */
#define LINK_WAIT_MS 5000u

/* arg: the stall's retry number (a stale timer or notice does not
 * match). */
const hm_type mqtt_session_retry_type = {.name = "mqtt.session_retry"};
const hm_type mqtt_session_room_type = {.name = "mqtt.session_room"};

struct session_stall {
    hm_msg **q; /* a ring of messages for s->conn_addr, oldest first */
    size_t head, count, cap;
    uint32_t delay_ms; /* the next retry's delay */
    uint64_t gen;      /* the armed retry's or asked notice's number */
    hm_timer_id timer;
    bool asked;        /* a timer or a room notice is on its way */
    uint64_t held;     /* messages that waited here, for the log */
    uint64_t link_by_ms; /* waiting for the link until then; 0: not */
};

bool mqtt_session_stalled(const mqtt_session *s)
{
    return s->stall != NULL;
}

static void ring_push(session_stall *st, hm_msg *m)
{
    if (st->count == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 16;
        hm_msg **q = hm_alloc(cap * sizeof *q);

        for (size_t i = 0; i < st->count; i++)
            q[i] = st->q[(st->head + i) % st->cap];
        hm_free(st->q);
        st->q = q;
        st->cap = cap;
        st->head = 0;
    }
    st->q[(st->head + st->count++) % st->cap] = m;
}

/* A timer retry after the current delay (the link wait's backoff, or the
 * safety net's period). */
static void arm(mqtt_session *s)
{
    session_stall *st = s->stall;
    hm_msg *t = hm_msg_create(&mqtt_session_retry_type, NULL, ++st->gen);

    st->asked = true;
    if (hm_runtime_send_after(s->b->rt, s->self, t, st->delay_ms,
                              &st->timer) != HM_OK)
        hm_msg_destroy(t); /* the runtime is closing */
    st->delay_ms = st->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
                                                   : st->delay_ms * 2;
}

static session_stall *stall_new(mqtt_session *s)
{
    session_stall *st = s->stall = hm_calloc(1, sizeof *st);

    /* relaxed: a statistic, and a number unique on this node, so a timer
     * of an earlier stall never matches this one's. */
    st->gen = atomic_fetch_add_explicit(&s->b->link_stalls, 1,
                                        memory_order_relaxed)
              << 32;
    st->delay_ms = RETRY_MIN_MS;
    return st;
}

/* Whether a send to the connection reaches its receiver now: it is on
 * this node, or its node is a live member here (its link is up). */
static bool conn_reachable(const mqtt_session *s)
{
    char home[MQTT_MSG_NAME_MAX + 1], where[HM_NODE_NAME_MAX + 1];
    const char *name = hm_addr_name(s->conn_addr);

    if (!s->b->node || !mqtt_conn_name_node(name, home, sizeof home) ||
        strcmp(home, hm_node_name(s->b->node)) == 0)
        return true;
    return hm_node_lookup(s->b->node, name, where) == HM_OK &&
           strcmp(where, home) == 0;
}

void mqtt_session_await_link(mqtt_session *s)
{
    if (!s->conn_addr || s->stall || conn_reachable(s))
        return;
    stall_new(s)->link_by_ms = hm_clock_now_ms() + LINK_WAIT_MS;
    HM_LOG_INFO("MQTT-LINK-WAIT", "client %s: no link to %s yet; holding "
                "what goes to the client until it is up",
                session_id(s), hm_addr_name(s->conn_addr));
    arm(s);
}

/* Holds `m` (taken) behind what waits; starts a stall if none. */
static void hold(mqtt_session *s, hm_msg *m)
{
    session_stall *st = s->stall;

    if (!st) {
        st = stall_new(s);
        /* INFO once per connection: with notices, a burst on a slow link
         * stalls and resumes every half mailbox (counted in $SYS). */
        if (!s->link_logged)
            HM_LOG_INFO("MQTT-LINK-FULL",
                        "client %s: the link to %s is full; holding what "
                        "goes to the client",
                        session_id(s), hm_addr_name(s->conn_addr));
        else
            HM_LOG_DEBUG("MQTT-LINK-FULL",
                         "client %s: the link to %s is full again",
                         session_id(s), hm_addr_name(s->conn_addr));
        s->link_logged = true;
        ring_push(st, m); /* the turn's end asks for room */
    } else {
        ring_push(st, m);
    }
    st->held++;
    /* relaxed: a statistic. */
    atomic_fetch_add_explicit(&s->b->link_held, 1, memory_order_relaxed);
}

hm_err mqtt_session_to_conn(mqtt_session *s, hm_msg *m)
{
    hm_err err;

    if (!s->conn_addr)
        return HM_ECLOSED;
    if (s->stall) { /* behind what waits: the order is the client's */
        hold(s, m);
        return HM_OK;
    }
    err = hm_runtime_send(s->b->rt, s->conn_addr, m);
    if (err == HM_EFULL) {
        hold(s, m);
        return HM_OK;
    }
    return err;
}

void mqtt_session_stall_drop(mqtt_session *s)
{
    session_stall *st = s->stall;

    if (!st)
        return;
    hm_runtime_cancel_timer(s->b->rt, st->timer); /* a late one is stale */
    for (size_t i = 0; i < st->count; i++)
        hm_msg_destroy(st->q[(st->head + i) % st->cap]);
    hm_free(st->q);
    hm_free(st);
    s->stall = NULL;
}

void mqtt_session_stall_wait(hm_ctx *ctx, mqtt_session *s)
{
    session_stall *st = s->stall;
    hm_msg *m;

    if (!st || st->asked || !s->conn_addr)
        return; /* nothing waits, or something will wake us already */
    m = hm_msg_create(&mqtt_session_room_type, NULL, ++st->gen);
    st->asked = true;
    if (hm_ctx_notify_room(ctx, s->conn_addr, m) == HM_OK)
        return;
    hm_msg_destroy(m);
    /* No notice to be had: hm_ctx_notify_room() refuses only while the
     * runtime closes today, but its contract has an error, and a session
     * that asked for nothing would wait for good (the client's messages
     * held, its QoS 1/2 ones in flight). So a slow timer stands in: one
     * failed send a second, as the safety net, never the normal path. */
    st->delay_ms = RETRY_SAFETY_MS;
    arm(s);
}

void mqtt_session_stall_retry(mqtt_session *s, uint64_t gen, bool notice)
{
    session_stall *st = s->stall;

    if (!st || gen != st->gen)
        return; /* stale: the stall ended, or a later retry is armed */
    st->asked = false;
    st->timer = 0; /* it fired, or it was a notice */
    /* relaxed: statistics. */
    atomic_fetch_add_explicit(notice ? &s->b->link_notices
                                     : &s->b->link_retries,
                              1, memory_order_relaxed);
    if (st->link_by_ms && !conn_reachable(s)) {
        if (hm_clock_now_ms() < st->link_by_ms) {
            arm(s);
            return;
        }
        HM_LOG_WARN("MQTT-LINK-WAIT", "client %s: no link to %s in %u ms; "
                    "the connection is let go", session_id(s),
                    hm_addr_name(s->conn_addr), LINK_WAIT_MS);
        mqtt_session_let_go(s); /* drops the stall */
        return;
    }
    st->link_by_ms = 0; /* up: from now on, a full mailbox's stall */
    while (st->count > 0) {
        hm_msg *m = st->q[st->head];
        hm_err err = hm_runtime_send(s->b->rt, s->conn_addr, m);

        if (err == HM_EFULL)
            return; /* refused again: the turn's end asks for room */
        if (err != HM_OK)
            hm_msg_destroy(m); /* closing: nothing will take it */
        st->head = (st->head + 1) % st->cap;
        st->count--;
    }
    HM_LOG_DEBUG("MQTT-LINK-RESUMED", "client %s: %llu held messages sent",
                 session_id(s), (unsigned long long)st->held);
    mqtt_session_stall_drop(s);
    mqtt_session_pump(s); /* what waited in the outbox */
}

/* ---------------------------------------------------- owed on a move */

char *mqtt_session_stall_owed(const mqtt_session *s)
{
    const session_stall *st = s->stall;
    char *acc = NULL;
    size_t acc_len = 0;

    for (size_t i = 0; st && i < st->count; i++) {
        hm_msg *m = st->q[(st->head + i) % st->cap];
        const hm_type *t = hm_msg_type(m);
        mqtt_owed_entry e = {0};

        if (t == &mqtt_out_type) {
            mqtt_blob *b = hm_msg_payload(m);
            int type = b->len ? b->data[0] >> 4 : MQTT_PUBLISH;

            if (type == MQTT_PUBLISH || type == MQTT_PUBREL)
                continue; /* the outbox resends them (DUP) */
            e = (mqtt_owed_entry){.kind = 'o', .packet = b->data,
                                  .len = b->len};
        } else if (t == &mqtt_done_type) {
            e.kind = 'd';
        } else if (t == &mqtt_attached_type) {
            e = (mqtt_owed_entry){.kind = 'a', .present = hm_msg_arg(m)};
        } else {
            continue; /* "moved": the new owner sends its own */
        }
        mqtt_owed_append(&acc, &acc_len, &e);
    }
    HM_LOG_DEBUG("MQTT-OWED", "client %s: %zu held, owed %s", session_id(s),
                 st ? st->count : (size_t)0, acc ? acc : "-");
    return acc;
}

/* Entry `e` as the message it stood for (its packet taken). */
static hm_msg *owed_msg(const mqtt_session *s, mqtt_owed_entry *e)
{
    hm_msg *m;

    if (e->kind == 'd')
        return hm_msg_create(&mqtt_done_type, NULL, 0);
    if (e->kind == 'a')
        return hm_msg_create(
            &mqtt_attached_type,
            mqtt_ctl_create(hm_node_name(s->b->node), NULL), e->present);
    m = hm_msg_create(&mqtt_out_type,
                      mqtt_blob_create(NULL, e->packet, e->len), 0);
    hm_free(e->packet);
    return m;
}

void mqtt_session_send_owed(mqtt_session *s, const char *owed)
{
    mqtt_owed_entry e;
    size_t count = 0;
    hm_err err;

    while ((err = mqtt_owed_next(&owed, &e)) != HM_ENOTFOUND) {
        hm_msg *m;

        if (err != HM_OK) {
            HM_LOG_WARN("MQTT-HANDOFF", "client %s: a malformed owed "
                        "entry in the state; skipped", session_id(s));
            continue;
        }
        m = owed_msg(s, &e);
        if (mqtt_session_to_conn(s, m) != HM_OK)
            hm_msg_destroy(m);
        else
            count++;
    }
    if (count)
        HM_LOG_INFO("MQTT-HANDOFF", "client %s: %zu answers the old owner "
                    "held for the connection sent from here", session_id(s),
                    count);
}
