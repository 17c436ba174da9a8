/* tests/apps/mqtt/test_session_room.c: a session whose connection's
 * receiver is full waits for a room notice, not a timer (docs/adr/0300).
 *
 * A real broker (its runtime, its session receivers) runs in the process;
 * the client's connection is played by a receiver named like one on
 * another node ("mqtt/conn/...", attached with no socket, so everything
 * the session tells the client goes to it as "mqtt.out" messages, as to a
 * cluster's proxy), with a small mailbox bound and a gate: while the gate
 * is shut it holds its first message (hm_ctx_hold), so its mailbox fills
 * and the session's sends get HM_EFULL, as they do from a proxy whose link
 * is full. The test delivers numbered QoS 0 messages, waits for the
 * runtime to go quiet (the session stalled), and counts the stalled
 * session's wake-ups ($SYS/broker/cluster/writes/notices and
 * .../retries) over one second: none (ADR 0230's timer made about ten).
 * Then it opens the gate and checks that every message arrives, in order,
 * once, and that what resumed the session was a room notice, never a
 * timer. Nothing asserts on time; every wait is bounded. */
#include "apps/mqtt/codec.h"
#include "tests/apps/mqtt/remote_conn.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LIMIT 8    /* the connection receiver's mailbox bound */
#define COUNT 300  /* messages delivered to the session */
#define CONN_NAME "mqtt/conn/t/room1"

static struct {
    atomic_bool open;     /* the gate */
    atomic_uint holds;    /* times the receiver held a message */
    pthread_mutex_t lock; /* guards what follows */
    uint32_t got[COUNT];
    size_t n;          /* PUBLISH packets received */
    size_t others;     /* other messages (CONNACK, "mqtt.attached") */
    bool bad;          /* a PUBLISH that did not decode or overflowed */
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record(const mqtt_blob *blob)
{
    mqtt_packet p;
    uint32_t v;

    if (mqtt_decode(blob->data, blob->len, NULL, &p, NULL) != HM_OK) {
        g.bad = true;
        return;
    }
    if (p.type != MQTT_PUBLISH) {
        g.others++;
        return;
    }
    if (p.u.publish.payload.len != sizeof v || g.n == COUNT) {
        g.bad = true;
        return;
    }
    memcpy(&v, p.u.publish.payload.ptr, sizeof v);
    g.got[g.n++] = v;
}

static hm_err conn_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    if (!atomic_load(&g.open)) {
        atomic_fetch_add(&g.holds, 1);
        hm_ctx_hold(ctx); /* hm_runtime_wake() runs it again */
        return HM_OK;
    }
    pthread_mutex_lock(&g.lock);
    if (hm_msg_type(msg) == &mqtt_out_type)
        record(hm_msg_payload(msg));
    else
        g.others++;
    pthread_mutex_unlock(&g.lock);
    return HM_OK;
}

static uint64_t wakeups(mqtt_broker *b)
{
    return atomic_load(&b->link_notices) + atomic_load(&b->link_retries);
}

/* Messages handed to any handler so far (the broker runs nothing else:
 * no client, no $SYS). */
static uint64_t delivered(mqtt_broker *b)
{
    hm_runtime_stats st;

    hm_runtime_stats_get(b->rt, &st);
    return st.delivered;
}

static size_t received(void)
{
    size_t n;

    pthread_mutex_lock(&g.lock);
    n = g.n;
    pthread_mutex_unlock(&g.lock);
    return n;
}

Test(session_room, a_stalled_session_sleeps_then_resumes_on_the_notice,
     .timeout = 60)
{
    remote_conn rc;
    mqtt_broker *b;
    uint64_t before, after, d0;

    cr_assert_eq(remote_conn_start(&rc, CONN_NAME, "mqtt/session/room1",
                                   conn_handle, LIMIT),
                 HM_OK);
    b = rc.b;
    d0 = delivered(b);
    cr_assert_eq(remote_conn_attach(&rc), HM_OK);
    for (uint32_t i = 0; i < COUNT; i++)
        cr_assert_eq(remote_conn_deliver(&rc, i), HM_OK);
    /* The session handled them all and is stalled on the full receiver
     * (not idle: the held message counts as work, so its handlers' count
     * tells: the attach, the deliveries and the receiver's held one). */
    for (int i = 0; i < 2000 && delivered(b) < d0 + COUNT + 2; i++)
        usleep(10000); /* a bound, not an expectation */
    cr_assert_geq(delivered(b), d0 + COUNT + 2);
    cr_assert_geq(atomic_load(&g.holds), 1);
    cr_assert_eq(atomic_load(&b->link_stalls), 1, "the session never "
                 "stalled: the scenario did not fill the receiver");
    cr_assert_eq(received(), 0);

    /* Stalled for a second: no wake-up at all (no timer, no notice). */
    before = wakeups(b);
    d0 = delivered(b);
    sleep(1);
    after = wakeups(b);
    cr_assert_eq(delivered(b), d0, "something ran while stalled");
    cr_assert_eq(after, before, "a stalled session woke %llu times in a "
                 "second", (unsigned long long)(after - before));

    /* The receiver drains: the notice resumes the session, in order. */
    atomic_store(&g.open, true);
    cr_assert_eq(hm_runtime_wake(b->rt, rc.conn), HM_OK);
    for (int i = 0; i < 2000 && received() < COUNT; i++)
        usleep(10000); /* a bound, not an expectation */
    cr_assert_eq(hm_runtime_wait_idle(b->rt, 20000), HM_OK);
    pthread_mutex_lock(&g.lock);
    cr_assert_not(g.bad);
    cr_assert_eq(g.n, COUNT, "%zu of %d arrived", g.n, COUNT);
    for (uint32_t i = 0; i < COUNT; i++)
        cr_assert_eq(g.got[i], i, "message %u came as number %u", i,
                     g.got[i]);
    cr_assert_eq(g.others, 2); /* the CONNACK, then "mqtt.attached" */
    pthread_mutex_unlock(&g.lock);
    cr_assert_geq(atomic_load(&b->link_notices), 1);
    cr_assert_eq(atomic_load(&b->link_retries), 0,
                 "a timer, not the notice, resumed the session");

    remote_conn_stop(&rc);
}
