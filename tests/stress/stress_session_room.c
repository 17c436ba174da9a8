/* tests/stress/stress_session_room.c: an MQTT session refilling a slow
 * connection receiver through room notices (docs/adr/0300), under races.
 *
 * slow_consumer: a real broker's session is attached to a receiver named
 *   like a connection on another node (so everything goes to it as
 *   "mqtt.out", as to a cluster proxy) with a mailbox bound of 8, which
 *   yields the CPU now and then while it handles a message, so it drains
 *   on one worker while the session, on another, is refused, holds, asks
 *   for a notice and sends again, many times over. Invariants: every
 *   numbered message arrives once and in order (no notice lost: the run
 *   ends; a lost one would stall it for good, as no timer runs), and the
 *   session was woken by notices, never by the safety-net timer. */
#include "apps/mqtt/codec.h"
#include "tests/apps/mqtt/remote_conn.h"
#include "tests/stress/harness.h"

#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define LIMIT 8
#define CONN_NAME "mqtt/conn/t/stress1"

static long count;
static uint32_t next_num; /* the consumer's own state */
static _Atomic long received;
static _Atomic int violations;

static hm_err conn_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    const mqtt_blob *blob;
    mqtt_packet p;
    uint32_t v;

    (void)ctx;
    (void)state;
    if (hm_msg_type(msg) != &mqtt_out_type)
        return HM_OK; /* "mqtt.attached" */
    blob = hm_msg_payload(msg);
    if (mqtt_decode(blob->data, blob->len, NULL, &p, NULL) != HM_OK) {
        atomic_fetch_add(&violations, 1);
        return HM_OK;
    }
    if (p.type != MQTT_PUBLISH)
        return HM_OK; /* the CONNACK */
    if (p.u.publish.payload.len != sizeof v) {
        atomic_fetch_add(&violations, 1);
        return HM_OK;
    }
    memcpy(&v, p.u.publish.payload.ptr, sizeof v);
    if (v != next_num)
        atomic_fetch_add(&violations, 1);
    next_num = v + 1;
    if (v % 16 == 0)
        sched_yield(); /* slower than the session: its mailbox fills */
    atomic_fetch_add(&received, 1);
    return HM_OK;
}

static void slow_consumer(void)
{
    remote_conn rc;
    mqtt_broker *b;
    double deadline;

    count = stress_scaled(20000);
    CHECK(remote_conn_start(&rc, CONN_NAME, "mqtt/session/stress1",
                            conn_handle, LIMIT) == HM_OK);
    b = rc.b;
    CHECK(remote_conn_attach(&rc) == HM_OK);
    for (uint32_t i = 0; i < (uint32_t)count; i++)
        CHECK(remote_conn_deliver(&rc, i) == HM_OK);
    /* A bound on the run, not an expectation of speed (TSan is slow). */
    deadline = stress_now_s() + 120;
    while (atomic_load(&received) < count && stress_now_s() < deadline)
        usleep(2000);
    CHECK(atomic_load(&received) == count);
    CHECK(hm_runtime_wait_idle(b->rt, 20000) == HM_OK);
    CHECK(atomic_load(&violations) == 0);
    CHECK(atomic_load(&b->link_stalls) > 0); /* the scenario did stall */
    CHECK(atomic_load(&b->link_notices) > 0);
    CHECK(atomic_load(&b->link_retries) == 0);
    printf("     %ld messages, %llu stalls, %llu notices\n", count,
           (unsigned long long)atomic_load(&b->link_stalls),
           (unsigned long long)atomic_load(&b->link_notices));
    remote_conn_stop(&rc);
}

int main(void)
{
    RUN_SCENARIO(slow_consumer);
    return 0;
}
