/* tests/stress/stress_hold.c: hm_ctx_hold / hm_runtime_wake under races.
 *
 * held_gate: a receiver with a small mailbox bound takes messages only
 *   while it has credits; without, it announces that it waits and holds
 *   the message. Two threads send (retrying on HM_EFULL) while a feeder
 *   thread hands out credits and wakes it, sometimes with no one waiting.
 *   Invariants: every message handled once, in each sender's order, never
 *   two at once; the run ends (no wake-up lost). */
#include "runtime/runtime.h"
#include "tests/stress/harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define NSEND 2

static const hm_type SEQ = {.name = "s.seq"};

static _Atomic long credits;
static _Atomic int waiting;
static _Atomic int running;
static _Atomic long handled;
static _Atomic int violations;
static uint64_t next_seq[NSEND]; /* the gate's own state */
static hm_runtime *rt;
static hm_addr *gate;
static long per_sender;

static hm_err gate_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    uint64_t sender = hm_msg_arg(msg) >> 32, seq = hm_msg_arg(msg) & 0xffffffffu;

    (void)state;
    if (atomic_exchange(&running, 1))
        atomic_fetch_add(&violations, 1);
    if (atomic_load(&credits) <= 0) {
        /* seq_cst store then load, against the feeder's add then
         * exchange: one of us sees the other. */
        atomic_store(&waiting, 1);
        if (atomic_load(&credits) <= 0) {
            atomic_store(&running, 0);
            hm_ctx_hold(ctx);
            return HM_OK;
        }
    }
    atomic_fetch_sub(&credits, 1);
    if (sender >= NSEND || next_seq[sender] != seq)
        atomic_fetch_add(&violations, 1);
    else
        next_seq[sender]++;
    atomic_fetch_add(&handled, 1);
    atomic_store(&running, 0);
    return HM_OK;
}

static void *sender_main(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;

    for (long i = 0; i < per_sender; i++) {
        hm_msg *m = hm_msg_create(&SEQ, NULL, (id << 32) | (uint64_t)i);
        while (hm_runtime_send(rt, gate, m) != HM_OK)
            sched_yield(); /* HM_EFULL: the gate holds */
    }
    return NULL;
}

static void *feeder_main(void *arg)
{
    double deadline = stress_now_s() + 60;

    (void)arg;
    for (unsigned i = 0; atomic_load(&handled) < NSEND * per_sender; i++) {
        CHECK(stress_now_s() < deadline); /* a lost wake-up */
        if (atomic_load(&credits) < 8)
            atomic_fetch_add(&credits, 1 + (long)(i % 13));
        if (atomic_exchange(&waiting, 0) || i % 7 == 0)
            hm_runtime_wake(rt, gate);
        if (i % 3 == 0)
            sched_yield();
    }
    return NULL;
}

static void held_gate(void)
{
    pthread_t s[NSEND], f;

    per_sender = stress_scaled(20000);
    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt) ==
          HM_OK);
    CHECK(hm_runtime_spawn(rt, "gate",
                           &(hm_receiver){.handler = gate_handle,
                                          .mailbox_limit = 16},
                           &gate) == HM_OK);
    for (uintptr_t i = 0; i < NSEND; i++)
        pthread_create(&s[i], NULL, sender_main, (void *)i);
    pthread_create(&f, NULL, feeder_main, NULL);
    for (int i = 0; i < NSEND; i++)
        pthread_join(s[i], NULL);
    pthread_join(f, NULL);
    CHECK(atomic_load(&violations) == 0);
    CHECK(atomic_load(&handled) == NSEND * per_sender);
    for (int i = 0; i < NSEND; i++)
        CHECK(next_seq[i] == (uint64_t)per_sender);
    hm_addr_release(gate);
    hm_runtime_destroy(rt);
}

int main(void)
{
    RUN_SCENARIO(held_gate);
    return 0;
}
