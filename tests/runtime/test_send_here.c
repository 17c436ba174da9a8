/* tests/runtime/test_send_here.c: hm_runtime_send_here() (ADR 0175) on a
 * threaded runtime: the calling thread (not a worker) runs the turns of
 * receivers that may run anywhere, up to the turn budget, and leaves the
 * rest to the workers; messages keep their order either way. */
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

static const hm_type PING = {.name = "t.ping"}; /* arg: a sequence number */

/* What a receiver saw: on which thread it ran last, how many messages,
 * and whether they came in order. `next`, when set, gets each message
 * on (a chain). */
typedef struct probe {
    _Atomic(pthread_t) thread;
    _Atomic int count;
    _Atomic bool out_of_order;
    uint64_t expect;
    hm_addr *next;
} probe;

static hm_err probe_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    probe *p = state;

    atomic_store(&p->thread, pthread_self());
    if (hm_msg_arg(msg) != p->expect)
        atomic_store(&p->out_of_order, true);
    p->expect = hm_msg_arg(msg) + 1;
    atomic_fetch_add(&p->count, 1);
    if (p->next)
        hm_ctx_send(ctx, p->next,
                    hm_msg_create(&PING, NULL, hm_msg_arg(msg)));
    return HM_OK;
}

static hm_runtime *rt;

static void setup(void)
{
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
}

static void teardown(void)
{
    hm_runtime_destroy(rt);
}

static hm_addr *spawn(const char *name, probe *p, bool anywhere)
{
    hm_addr *a;

    cr_assert_eq(hm_runtime_spawn(rt, name,
                                  &(hm_receiver){.handler = probe_handle,
                                                 .state = p,
                                                 .pinned = true,
                                                 .runs_anywhere = anywhere},
                                  &a),
                 HM_OK);
    /* A spawned receiver's first turn (its activate hook) is a worker's:
     * send_here never runs an activation. */
    p->expect = UINT64_MAX;
    cr_assert_eq(
        hm_runtime_send(rt, a, hm_msg_create(&PING, NULL, UINT64_MAX)),
        HM_OK);
    cr_assert_eq(hm_runtime_wait_idle(rt, 5000), HM_OK);
    atomic_store(&p->count, 0);
    p->expect = 0;
    return a;
}

static void send_here(hm_addr *to, uint64_t seq, uint32_t turns)
{
    cr_assert_eq(
        hm_runtime_send_here(rt, to, hm_msg_create(&PING, NULL, seq), turns),
        HM_OK);
}

static probe *new_probe(void)
{
    probe *p = calloc(1, sizeof *p);

    cr_assert_not_null(p);
    return p;
}

TestSuite(send_here, .init = setup, .fini = teardown, .timeout = 20);

Test(send_here, runs_a_receiver_that_may_run_anywhere_on_the_caller)
{
    probe *p = new_probe();
    hm_addr *a = spawn("a", p, true);

    send_here(a, 0, 1);
    /* The turn ran inside the call: no waiting needed to see it. */
    cr_assert_eq(atomic_load(&p->count), 1);
    cr_assert(pthread_equal(atomic_load(&p->thread), pthread_self()));
    hm_addr_release(a);
    free(p);
}

Test(send_here, counts_the_deliveries_of_a_guest_turn)
{
    probe *p = new_probe();
    hm_addr *a = spawn("a", p, true);
    hm_runtime_stats before, after;

    hm_runtime_stats_get(rt, &before);
    for (uint64_t i = 0; i < 10; i++)
        send_here(a, i, 1);
    cr_assert_eq(hm_runtime_wait_idle(rt, 5000), HM_OK);
    cr_assert(pthread_equal(atomic_load(&p->thread), pthread_self()));
    hm_runtime_stats_get(rt, &after);
    /* A guest's worker struct lives for one call: its turns count in the
     * calling thread's shard of the shared counters. */
    cr_assert_eq(after.delivered - before.delivered, 10);
    cr_assert_eq(after.sent - before.sent, 10);
    hm_addr_release(a);
    free(p);
}

Test(send_here, leaves_other_receivers_to_the_workers)
{
    probe *p = new_probe();
    hm_addr *a = spawn("a", p, false);

    send_here(a, 0, 4);
    cr_assert_eq(hm_runtime_wait_idle(rt, 5000), HM_OK);
    cr_assert_eq(atomic_load(&p->count), 1);
    cr_assert_not(pthread_equal(atomic_load(&p->thread), pthread_self()));
    hm_addr_release(a);
    free(p);
}

Test(send_here, runs_what_the_turn_made_runnable_within_the_budget)
{
    probe *pa = new_probe(), *pb = new_probe(), *pc = new_probe();
    hm_addr *c = spawn("c", pc, true);
    hm_addr *b = spawn("b", pb, true);
    hm_addr *a = spawn("a", pa, true);

    pa->next = b;
    pb->next = c;
    send_here(a, 0, 2); /* a and b here; c is the third turn: a worker's */
    cr_assert_eq(atomic_load(&pb->count), 1);
    cr_assert(pthread_equal(atomic_load(&pb->thread), pthread_self()));
    cr_assert_eq(hm_runtime_wait_idle(rt, 5000), HM_OK);
    cr_assert_eq(atomic_load(&pc->count), 1);
    cr_assert_not(pthread_equal(atomic_load(&pc->thread), pthread_self()));
    hm_addr_release(a);
    hm_addr_release(b);
    hm_addr_release(c);
    free(pa);
    free(pb);
    free(pc);
}

Test(send_here, keeps_the_order_of_messages_sent_either_way)
{
    probe *p = new_probe();
    hm_addr *a = spawn("a", p, true);

    for (uint64_t i = 0; i < 20000; i++) {
        if (i % 3 == 0)
            send_here(a, i, 2);
        else
            cr_assert_eq(
                hm_runtime_send(rt, a, hm_msg_create(&PING, NULL, i)), HM_OK);
    }
    cr_assert_eq(hm_runtime_wait_idle(rt, 5000), HM_OK);
    cr_assert_eq(atomic_load(&p->count), 20000);
    cr_assert_not(atomic_load(&p->out_of_order));
    hm_addr_release(a);
    free(p);
}
