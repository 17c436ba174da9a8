/* tests/stress/stress_room.c: waiting for room under races (ADR 0240).
 *
 * blocking_senders: four plain threads feed one receiver with a small
 *   mailbox bound through hm_runtime_send_wait(), while two pump
 *   receivers feed it too with hm_ctx_send() and, when refused, ask for a
 *   room notice instead of retrying. Invariants: every message handled
 *   exactly once, in each sender's order; every refused pump gets its
 *   notice (the run ends: no wake-up lost, on the futex or the notices).
 * close_while_asleep: threads asleep in hm_runtime_send_wait() on a
 *   receiver that never drains, and a pump whose notice never comes, when
 *   hm_runtime_destroy() runs: every sleeper returns HM_ECLOSED, nothing
 *   leaks (ASan), no race (TSan). */
#include "runtime/runtime.h"
#include "tests/stress/harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define NTHREADS 4
#define NPUMPS 2
#define NSOURCES (NTHREADS + NPUMPS)

static const hm_type SEQ = {.name = "s.seq"};
static const hm_type GO = {.name = "s.go"};
static const hm_type ROOM = {.name = "s.room"};

static hm_runtime *rt;
static hm_addr *sink;
static long per_source;
static uint64_t next_seq[NSOURCES]; /* the sink's own state */
static _Atomic long handled;
static _Atomic int violations;

static hm_err sink_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    uint64_t src = hm_msg_arg(msg) >> 32, seq = hm_msg_arg(msg) & 0xffffffffu;

    (void)ctx;
    (void)state;
    if (src >= NSOURCES || next_seq[src] != seq)
        atomic_fetch_add(&violations, 1);
    else
        next_seq[src]++;
    atomic_fetch_add(&handled, 1);
    return HM_OK;
}

static void *thread_main(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;

    for (long i = 0; i < per_source; i++) {
        hm_msg *m = hm_msg_create(&SEQ, NULL, (id << 32) | (uint64_t)i);
        hm_err err = hm_runtime_send_wait(rt, sink, m, UINT32_MAX);
        if (err != HM_OK) {
            hm_msg_destroy(m);
            CHECK(err == HM_ECLOSED);
            break;
        }
    }
    return NULL;
}

typedef struct pump {
    uint64_t id, next, refused, notices;
} pump;

static hm_err pump_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    pump *p = state;

    if (hm_msg_type(msg) == &ROOM) {
        p->notices++;
        if (hm_msg_from(msg) != sink)
            atomic_fetch_add(&violations, 1);
    }
    while (p->next < (uint64_t)per_source) {
        hm_msg *m = hm_msg_create(&SEQ, NULL, (p->id << 32) | p->next);
        hm_err err = hm_ctx_send(ctx, sink, m);
        if (err == HM_OK) {
            p->next++;
            continue;
        }
        hm_msg_destroy(m);
        if (err == HM_ECLOSED)
            break; /* close_while_asleep */
        if (err != HM_EFULL) {
            atomic_fetch_add(&violations, 1);
            break;
        }
        p->refused++;
        m = hm_msg_create(&ROOM, NULL, 0);
        if ((err = hm_ctx_notify_room(ctx, sink, m)) != HM_OK) {
            hm_msg_destroy(m);
            if (err != HM_ECLOSED)
                atomic_fetch_add(&violations, 1);
        }
        break;
    }
    return HM_OK;
}

static void start(uint32_t bound, hm_handler_fn sink_fn, pump *pumps,
                  hm_addr **pa, pthread_t *th)
{
    char name[32];

    for (int i = 0; i < NSOURCES; i++)
        next_seq[i] = 0;
    atomic_store(&handled, 0);
    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt) ==
          HM_OK);
    CHECK(hm_runtime_spawn(rt, "sink",
                           &(hm_receiver){.handler = sink_fn,
                                          .mailbox_limit = bound},
                           &sink) == HM_OK);
    for (int i = 0; i < NPUMPS; i++) {
        pumps[i] = (pump){.id = NTHREADS + (uint64_t)i};
        snprintf(name, sizeof name, "pump/%d", i);
        CHECK(hm_runtime_spawn(rt, name,
                               &(hm_receiver){.handler = pump_handle,
                                              .state = &pumps[i]},
                               &pa[i]) == HM_OK);
    }
    for (uintptr_t i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, thread_main, (void *)i);
    for (int i = 0; i < NPUMPS; i++)
        CHECK(hm_runtime_send(rt, pa[i], hm_msg_create(&GO, NULL, 0)) ==
              HM_OK);
}

static void blocking_senders(void)
{
    static const uint32_t bounds[] = {1, 2, 16, 64};
    pump pumps[NPUMPS];
    hm_addr *pa[NPUMPS];
    pthread_t th[NTHREADS];

    per_source = stress_scaled(5000);
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        double deadline = stress_now_s() + 120;

        start(bounds[b], sink_handle, pumps, pa, th);
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(th[i], NULL);
        while (atomic_load(&handled) < NSOURCES * per_source) {
            CHECK(stress_now_s() < deadline); /* a lost notice */
            sched_yield();
        }
        CHECK(hm_runtime_wait_idle(rt, 30000) == HM_OK);
        CHECK(atomic_load(&violations) == 0);
        CHECK(atomic_load(&handled) == NSOURCES * per_source);
        for (int i = 0; i < NSOURCES; i++)
            CHECK(next_seq[i] == (uint64_t)per_source);
        for (int i = 0; i < NPUMPS; i++) {
            CHECK(pumps[i].notices == pumps[i].refused);
            hm_addr_release(pa[i]);
        }
        hm_addr_release(sink);
        hm_runtime_destroy(rt);
    }
}

/* A sink that never takes a message: it holds the first forever. */
static hm_err stuck_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    (void)msg;
    hm_ctx_hold(ctx);
    return HM_OK;
}

static void close_while_asleep(void)
{
    pump pumps[NPUMPS];
    hm_addr *pa[NPUMPS];
    pthread_t th[NTHREADS];
    hm_runtime_stats st;
    long rounds = stress_scaled(20);

    per_source = 1000;
    for (long r = 0; r < rounds; r++) {
        double deadline = stress_now_s() + 60;

        start(8, stuck_handle, pumps, pa, th);
        for (int i = 0; i < NPUMPS; i++)
            hm_addr_release(pa[i]);
        hm_addr_release(sink);
        /* No thread may call in once destroy has started: wait until all
         * sleep (or retry) inside hm_runtime_send_wait(). The pumps may
         * still be running, or have asked for their notice. */
        do {
            CHECK(stress_now_s() < deadline);
            sched_yield();
            hm_runtime_stats_get(rt, &st);
        } while (st.send_waiting < NTHREADS);
        hm_runtime_destroy(rt);
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(th[i], NULL);
    }
    CHECK(atomic_load(&violations) == 0);
}

int main(void)
{
    RUN_SCENARIO(blocking_senders);
    RUN_SCENARIO(close_while_asleep);
    return 0;
}
