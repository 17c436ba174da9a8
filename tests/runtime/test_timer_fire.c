/* tests/runtime/test_timer_fire.c: how fired timers reach receivers, in
 * deterministic manual mode. Timers that fire together for one receiver
 * travel as one mailbox node that its turn unpacks (docs/adr/0180); these
 * tests check that nothing about delivery changes for a handler: order,
 * cancels between arms, a deactivation or a hold in the middle of a batch,
 * mailbox limits, and dead letters when the runtime closes with a batch
 * still queued. */
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static const hm_type TICK = {.name = "f.tick"};
static const hm_type STOP = {.name = "f.stop"}; /* deactivate after it */
static const hm_type HOLD = {.name = "f.hold"}; /* hold it once */

/* What happened, in order: "<receiver> <arg>" per delivery. */
static struct {
    char lines[512][32];
    int count, activations, dead, holds;
    hm_err last_dead_reason;
} J;

static hm_runtime *rt;

static hm_err handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    if (hm_msg_type(msg) == &HOLD && J.holds++ == 0) {
        hm_ctx_hold(ctx);
        return HM_OK;
    }
    if (hm_msg_type(msg) == &STOP)
        hm_ctx_deactivate(ctx);
    if (J.count < 512)
        snprintf(J.lines[J.count++], sizeof J.lines[0], "%s %llu",
                 hm_addr_name(hm_ctx_self(ctx)),
                 (unsigned long long)hm_msg_arg(msg));
    return HM_OK;
}

/* "r/..." receivers; "l/..." ones have a mailbox of 2. */
static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    (void)arg;
    J.activations++;
    *out = (hm_receiver){.handler = handle,
                         .mailbox_limit = name[0] == 'l' ? 2 : 0};
    return HM_OK;
}

static void on_dead(void *arg, const char *to, const hm_msg *msg, hm_err why)
{
    (void)arg;
    (void)to;
    (void)msg;
    J.dead++;
    J.last_dead_reason = why;
}

static void setup(void)
{
    memset(&J, 0, sizeof J);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.manual = true,
                                                        .factory = factory,
                                                        .dead_letter = on_dead},
                                   &rt),
                 HM_OK);
}

static void teardown(void)
{
    if (rt)
        hm_runtime_destroy(rt);
}

static hm_addr *addr(const char *name)
{
    hm_addr *a;
    cr_assert_eq(hm_runtime_intern(rt, name, &a), HM_OK);
    return a;
}

/* Arms a one-shot `delay` ms from now; returns its id if `keep_id`. */
static hm_timer_id after(hm_addr *a, const hm_type *t, uint64_t arg,
                         uint32_t delay, bool keep_id)
{
    hm_timer_id id = 0;

    cr_assert_eq(hm_runtime_send_after(rt, a, hm_msg_create(t, NULL, arg),
                                       delay, keep_id ? &id : NULL),
                 HM_OK);
    return id;
}

static void expect(int i, const char *line)
{
    cr_assert(i < J.count, "only %d deliveries, wanted #%d", J.count, i);
    cr_assert_str_eq(J.lines[i], line);
}

TestSuite(timer_fire, .init = setup, .fini = teardown, .timeout = 10);

Test(timer_fire, timers_due_together_arrive_in_arming_order)
{
    hm_addr *a = addr("r/1");
    char want[32];

    for (int i = 0; i < 200; i++) /* more than one batch of the thread */
        after(a, &TICK, (uint64_t)i, 5, i % 2);
    hm_runtime_advance(rt, 5);
    cr_assert_eq(J.count, 200);
    for (int i = 0; i < 200; i++) {
        snprintf(want, sizeof want, "r/1 %d", i);
        expect(i, want);
    }
    hm_addr_release(a);
}

/* Runs of timers with no record, many batches at several deadlines: the
 * batches' arrays go back to the runtime's spares as they are unpacked and
 * carry the next ones (docs/adr/0280); nothing is lost or reordered. */
Test(timer_fire, recycled_batches_keep_every_message_in_order)
{
    hm_addr *a = addr("r/1");
    char want[32];
    int n = 0;

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 240; i++) /* three deadlines, two batches each */
            after(a, &TICK, (uint64_t)(round * 1000 + i), 1 + (uint32_t)i % 3,
                  false);
        hm_runtime_advance(rt, 3);
        cr_assert_eq(J.count, n + 240);
        for (int d = 1; d <= 3; d++)
            for (int i = d - 1; i < 240; i += 3) {
                snprintf(want, sizeof want, "r/1 %d", round * 1000 + i);
                expect(n++, want);
            }
    }
    hm_addr_release(a);
}

Test(timer_fire, cancels_between_arms_leave_the_rest_in_order)
{
    hm_addr *a = addr("r/1");
    hm_timer_id ids[10];

    for (int i = 0; i < 10; i++)
        ids[i] = after(a, &TICK, (uint64_t)i, 7, true);
    cr_assert(hm_runtime_cancel_timer(rt, ids[0]));
    cr_assert(hm_runtime_cancel_timer(rt, ids[4]));
    cr_assert(hm_runtime_cancel_timer(rt, ids[9]));
    hm_runtime_advance(rt, 7);
    cr_assert_eq(J.count, 7);
    const char *want[] = {"r/1 1", "r/1 2", "r/1 3", "r/1 5",
                          "r/1 6", "r/1 7", "r/1 8"};
    for (int i = 0; i < 7; i++)
        expect(i, want[i]);
    hm_addr_release(a);
}

Test(timer_fire, a_deactivation_inside_a_batch_reactivates_for_the_rest)
{
    hm_addr *a = addr("r/1");

    for (int i = 0; i < 6; i++)
        after(a, i == 2 ? &STOP : &TICK, (uint64_t)i, 3, false);
    hm_runtime_advance(rt, 3);
    cr_assert_eq(J.count, 6);
    cr_assert_eq(J.activations, 2);
    expect(2, "r/1 2");
    expect(5, "r/1 5");
    hm_addr_release(a);
}

Test(timer_fire, interleaved_receivers_each_get_their_own_order)
{
    hm_addr *a = addr("r/a"), *b = addr("r/b");
    int na = 0, nb = 0;

    /* a a b a b b a ...: runs of one and of several. */
    for (int i = 0; i < 40; i++)
        after(i % 3 == 2 ? b : a, &TICK, (uint64_t)i, 4, false);
    hm_runtime_advance(rt, 4);
    cr_assert_eq(J.count, 40);
    for (int i = 0, last_a = -1, last_b = -1; i < 40; i++) {
        char who;
        int arg;
        cr_assert_eq(sscanf(J.lines[i], "r/%c %d", &who, &arg), 2);
        if (who == 'a') {
            cr_assert_gt(arg, last_a);
            last_a = arg;
            na++;
        } else {
            cr_assert_gt(arg, last_b);
            last_b = arg;
            nb++;
        }
    }
    cr_assert_eq(na, 27);
    cr_assert_eq(nb, 13);
    hm_addr_release(a);
    hm_addr_release(b);
}

Test(timer_fire, a_hold_inside_a_batch_keeps_the_rest_behind_it)
{
    hm_addr *a = addr("r/1");

    for (int i = 0; i < 5; i++)
        after(a, i == 1 ? &HOLD : &TICK, (uint64_t)i, 2, false);
    hm_runtime_advance(rt, 2);
    cr_assert_eq(J.count, 1); /* 0, then 1 is held */
    cr_assert_eq(hm_runtime_wake(rt, a), HM_OK);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.count, 5);
    for (int i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof want, "r/1 %d", i);
        expect(i, want);
    }
    hm_addr_release(a);
}

Test(timer_fire, a_mailbox_limit_refuses_what_does_not_fit)
{
    hm_addr *l = addr("l/1");

    /* Activate it first, so that its limit (2) is installed. */
    cr_assert_eq(hm_runtime_send(rt, l, hm_msg_create(&TICK, NULL, 100)),
                 HM_OK);
    hm_runtime_run_until_idle(rt);
    for (int i = 0; i < 5; i++)
        after(l, &TICK, (uint64_t)i, 1, false);
    hm_runtime_advance(rt, 1);
    cr_assert_eq(J.dead, 3);
    cr_assert_eq(J.last_dead_reason, HM_EFULL);
    cr_assert_eq(J.count, 3); /* 100, 0, 1 */
    expect(2, "l/1 1");
    hm_addr_release(l);
}

Test(timer_fire, a_batch_queued_at_close_is_dead_lettered_message_by_message)
{
    hm_addr *a = addr("r/1");
    hm_runtime_stats st;

    /* The receiver holds a message, so the batch that fires next stays
     * queued, unopened, until the runtime closes. */
    after(a, &HOLD, 0, 1, false);
    hm_runtime_advance(rt, 1);
    cr_assert_eq(J.holds, 1);
    for (int i = 1; i <= 8; i++)
        after(a, &TICK, (uint64_t)i, 3, false);
    hm_runtime_advance(rt, 3);
    cr_assert_eq(J.count, 0);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.timers_fired, 9);
    hm_addr_release(a);
    hm_runtime_destroy(rt);
    rt = NULL;
    cr_assert_eq(J.dead, 9); /* the held message and the batch's eight */
    cr_assert_eq(J.last_dead_reason, HM_ECLOSED);
}
