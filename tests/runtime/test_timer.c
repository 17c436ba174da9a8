/* tests/runtime/test_timer.c: the timer store: order, cancel, periodic,
 * timers without a record (hm_timers_arm_anon). */
#include "runtime/timer.h"

#include <criterion/criterion.h>
#include <stdlib.h>

/* The heap stores these pointers without touching them when periodic is 0
 * and msg/to are opaque, so tests use fake non-NULL tokens for `msg`. */
#define TOKEN(n) ((hm_msg *)(uintptr_t)(0x1000 + (n)))

static int fired_token(hm_timer_fire *f)
{
    return (int)((uintptr_t)f->msg - 0x1000);
}

Test(timer, fires_in_deadline_order)
{
    hm_timers t;
    hm_timer_fire f;
    uint64_t deadlines[] = {50, 10, 40, 20, 30};

    hm_timers_init(&t, 0);
    for (int i = 0; i < 5; i++)
        hm_timers_arm(&t, deadlines[i], 0, NULL, TOKEN(deadlines[i]), 0);
    for (int expect = 10; expect <= 50; expect += 10) {
        cr_assert(hm_timers_pop_due(&t, 100, &f));
        cr_assert_eq(fired_token(&f), expect);
    }
    cr_assert_not(hm_timers_pop_due(&t, 100, &f));
    hm_timers_fini(&t);
}

Test(timer, equal_deadlines_fire_in_arming_order)
{
    hm_timers t;
    hm_timer_fire f;

    hm_timers_init(&t, 0);
    for (int i = 0; i < 100; i++)
        hm_timers_arm(&t, 7, 0, NULL, TOKEN(i), 0);
    for (int i = 0; i < 100; i++) {
        cr_assert(hm_timers_pop_due(&t, 7, &f));
        cr_assert_eq(fired_token(&f), i);
    }
    hm_timers_fini(&t);
}

Test(timer, nothing_fires_before_its_deadline)
{
    hm_timers t;
    hm_timer_fire f;

    hm_timers_init(&t, 0);
    hm_timers_arm(&t, 100, 0, NULL, TOKEN(1), 0);
    cr_assert_not(hm_timers_pop_due(&t, 99, &f));
    cr_assert(hm_timers_pop_due(&t, 100, &f));
    hm_timers_fini(&t);
}

Test(timer, cancel_removes_a_timer_and_returns_its_message)
{
    hm_timers t;
    hm_timer_fire f;
    hm_addr *to;
    hm_msg *msg;

    hm_timers_init(&t, 0);
    hm_timers_arm(&t, 10, 0, NULL, TOKEN(1), 0);
    hm_timer_id id = hm_timers_arm(&t, 20, 0, NULL, TOKEN(2), 0);
    hm_timers_arm(&t, 30, 0, NULL, TOKEN(3), 0);
    cr_assert(hm_timers_cancel(&t, id, &to, &msg));
    cr_assert_eq(msg, TOKEN(2));
    cr_assert(hm_timers_pop_due(&t, 100, &f));
    cr_assert_eq(fired_token(&f), 1);
    cr_assert(hm_timers_pop_due(&t, 100, &f));
    cr_assert_eq(fired_token(&f), 3);
    hm_timers_fini(&t);
}

Test(timer, a_stale_id_cancels_nothing_after_its_slot_is_reused)
{
    hm_timers t;
    hm_timer_fire f;
    hm_addr *to;
    hm_msg *msg;

    hm_timers_init(&t, 0);
    hm_timer_id old = hm_timers_arm(&t, 10, 0, NULL, TOKEN(1), 0);
    cr_assert(hm_timers_pop_due(&t, 10, &f));
    hm_timers_arm(&t, 20, 0, NULL, TOKEN(2), 0); /* reuses the slot */
    cr_assert_not(hm_timers_cancel(&t, old, &to, &msg));
    cr_assert_eq(hm_timers_count(&t), 1);
    hm_timers_fini(&t);
}

Test(timer, random_cancels_keep_the_heap_ordered)
{
    enum { N = 2000 };
    hm_timers t;
    hm_timer_fire f;
    hm_timer_id ids[N];
    bool cancelled[N] = {false};
    hm_addr *to;
    hm_msg *msg;
    uint64_t last = 0;
    int popped = 0, live = N;

    srand(42);
    hm_timers_init(&t, 0);
    for (int i = 0; i < N; i++)
        ids[i] = hm_timers_arm(&t, (uint64_t)(rand() % 1000), 0, NULL,
                               TOKEN(i), 0);
    for (int i = 0; i < N; i += 3) {
        cr_assert(hm_timers_cancel(&t, ids[i], &to, &msg));
        cancelled[i] = true;
        live--;
    }
    while (hm_timers_pop_due(&t, 1000, &f)) {
        cr_assert_geq(f.deadline_ms, last);
        cr_assert_not(cancelled[fired_token(&f)]);
        last = f.deadline_ms;
        popped++;
    }
    cr_assert_eq(popped, live);
    hm_timers_fini(&t);
}

Test(timer, far_and_near_timers_fire_in_one_order)
{
    hm_timers t;
    hm_timer_fire f;
    /* Beyond the wheel's horizon (8 ms x 4096), inside it, and due now. */
    uint64_t deadlines[] = {200000, 70000, 65, 64, 63, 0, 5000, 199999};
    uint64_t sorted[] = {0, 63, 64, 65, 5000, 70000, 199999, 200000};

    hm_timers_init(&t, 0);
    for (int i = 0; i < 8; i++)
        hm_timers_arm(&t, deadlines[i], 0, NULL, TOKEN(i), 0);
    for (int i = 0; i < 8; i++) {
        cr_assert(hm_timers_pop_due(&t, 300000, &f));
        cr_assert_eq(f.deadline_ms, sorted[i]);
    }
    hm_timers_fini(&t);
}

Test(timer, next_never_sleeps_past_a_timer_waiting_in_the_wheel)
{
    hm_timers t;
    hm_timer_fire f;
    uint64_t next = 0;

    hm_timers_init(&t, 1000);
    hm_timers_arm(&t, 5000, 0, NULL, TOKEN(1), 0);
    cr_assert(hm_timers_next(&t, &next));
    cr_assert_leq(next, 5000);
    /* Stepping the clock to each "next" reaches the timer on time. */
    while (!hm_timers_pop_due(&t, next, &f)) {
        cr_assert(hm_timers_next(&t, &next));
        cr_assert_leq(next, 5000);
    }
    cr_assert_eq(f.deadline_ms, 5000);
    hm_timers_fini(&t);
}

Test(timer, mass_cancellation_compacts_and_keeps_the_survivors)
{
    enum { N = 20000 };
    static hm_timer_id ids[N];
    hm_timers t;
    hm_timer_fire f;
    hm_addr *to;
    hm_msg *msg;
    int popped = 0;
    uint64_t last = 0;

    hm_timers_init(&t, 0);
    for (int i = 0; i < N; i++)
        ids[i] = hm_timers_arm(&t, (uint64_t)(i % 3 ? 10 : 5000) + i % 997,
                               0, NULL, TOKEN(i), 0);
    for (int i = 0; i < N; i++)
        if (i % 10 != 0)
            cr_assert(hm_timers_cancel(&t, ids[i], &to, &msg));
    cr_assert_eq(hm_timers_count(&t), N / 10);
    while (hm_timers_pop_due(&t, 10000, &f)) {
        cr_assert_eq(fired_token(&f) % 10, 0);
        cr_assert_geq(f.deadline_ms, last);
        last = f.deadline_ms;
        popped++;
    }
    cr_assert_eq(popped, N / 10);
    hm_timers_fini(&t);
}

/* A reference model: the live timers in an array, the earliest found by a
 * linear scan of (deadline, seq). */
typedef struct model_timer {
    uint64_t deadline, seq;
    hm_timer_id id;
    bool live;
} model_timer;

static int model_earliest(model_timer *m, int n, uint64_t now)
{
    int best = -1;

    for (int i = 0; i < n; i++) {
        if (!m[i].live || m[i].deadline > now)
            continue;
        if (best < 0 || m[i].deadline < m[best].deadline ||
            (m[i].deadline == m[best].deadline && m[i].seq < m[best].seq))
            best = i;
    }
    return best;
}

Test(timer, random_arms_cancels_and_pops_match_a_sorted_model)
{
    enum { N = 30000 };
    static model_timer m[N];
    hm_timers t;
    hm_timer_fire f;
    hm_addr *to;
    hm_msg *msg;
    uint64_t now = 500;
    int n = 0;

    srand(7);
    hm_timers_init(&t, now);
    while (n < N) {
        int op = rand() % 10;
        if (op < 6) {
            /* Near (same ms often), mid, and beyond the 4,096 ms horizon. */
            uint64_t span = op < 3 ? 3 : op < 5 ? 3000 : 20000;
            uint64_t d = now + (uint64_t)rand() % span;
            m[n] = (model_timer){d, (uint64_t)n, 0, true};
            /* One in three has no id (no record, but the same order). */
            if (rand() % 3 == 0)
                hm_timers_arm_anon(&t, d, NULL, TOKEN(n));
            else
                m[n].id = hm_timers_arm(&t, d, 0, NULL, TOKEN(n), 0);
            n++;
        } else if (op < 8 && n > 0) {
            int k = rand() % n;
            bool ok = hm_timers_cancel(&t, m[k].id, &to, &msg);
            cr_assert_eq(ok, m[k].live && m[k].id != 0);
            if (ok)
                m[k].live = false;
        } else {
            now += (uint64_t)rand() % (op == 8 ? 3 : 700);
            int e;
            while ((e = model_earliest(m, n, now)) >= 0) {
                cr_assert(hm_timers_pop_due(&t, now, &f));
                cr_assert_eq(fired_token(&f), e, "now %llu: got %d, want %d",
                             (unsigned long long)now, fired_token(&f), e);
                m[e].live = false;
            }
            cr_assert_not(hm_timers_pop_due(&t, now, &f));
            uint64_t next;
            if (hm_timers_next(&t, &next))
                cr_assert_gt(next, now);
        }
    }
    hm_timers_fini(&t);
}

Test(timer, a_deadline_behind_the_cursor_fires_at_once_in_arming_order)
{
    hm_timers t;
    hm_timer_fire f;
    uint64_t next;

    hm_timers_init(&t, 0);
    hm_timers_arm(&t, 100, 0, NULL, TOKEN(1), 0);
    cr_assert(hm_timers_pop_due(&t, 100, &f)); /* the cursor is at 100 */
    /* Armed by threads that read the clock before the timer thread did. */
    hm_timers_arm(&t, 90, 0, NULL, TOKEN(2), 0);
    hm_timers_arm(&t, 80, 0, NULL, TOKEN(3), 0);
    cr_assert(hm_timers_next(&t, &next));
    cr_assert_eq(next, 100);
    cr_assert(hm_timers_pop_due(&t, 100, &f));
    cr_assert_eq(fired_token(&f), 2);
    cr_assert(hm_timers_pop_due(&t, 100, &f));
    cr_assert_eq(fired_token(&f), 3);
    cr_assert_not(hm_timers_pop_due(&t, 100, &f));
    hm_timers_fini(&t);
}

Test(timer, anonymous_and_recorded_timers_share_one_order)
{
    hm_timers t;
    hm_timer_fire f;
    hm_addr *to;
    hm_msg *msg;
    hm_timer_id ids[8];

    hm_timers_init(&t, 0);
    /* Equal deadlines, alternating kinds; beyond the horizon too. */
    for (int i = 0; i < 8; i++) {
        if (i % 2)
            hm_timers_arm_anon(&t, 50, NULL, TOKEN(i));
        else
            ids[i] = hm_timers_arm(&t, 50, 0, NULL, TOKEN(i), 0);
    }
    hm_timers_arm_anon(&t, 9000, NULL, TOKEN(100));
    hm_timers_arm(&t, 9000, 0, NULL, TOKEN(101), 0);
    hm_timers_arm_anon(&t, 9000, NULL, TOKEN(102));
    cr_assert_eq(hm_timers_count(&t), 11);
    /* Cancels in the middle of the bucket leave the rest in order. */
    cr_assert(hm_timers_cancel(&t, ids[2], &to, &msg));
    cr_assert_eq(msg, TOKEN(2));
    cr_assert(hm_timers_cancel(&t, ids[4], &to, &msg));
    cr_assert_not(hm_timers_pop_due(&t, 49, &f));
    int want[] = {0, 1, 3, 5, 6, 7};
    for (int i = 0; i < 6; i++) {
        cr_assert(hm_timers_pop_due(&t, 60, &f));
        cr_assert_eq(fired_token(&f), want[i]);
        cr_assert_eq(f.deadline_ms, 50);
        cr_assert_not(f.periodic);
    }
    cr_assert_not(hm_timers_pop_due(&t, 60, &f));
    for (int i = 100; i <= 102; i++) {
        cr_assert(hm_timers_pop_due(&t, 9000, &f));
        cr_assert_eq(fired_token(&f), i);
    }
    cr_assert_eq(hm_timers_count(&t), 0);
    hm_timers_fini(&t);
}

/* hm_timers_pop_due_n() gives what repeated hm_timers_pop_due() calls
 * would: runs of anonymous timers across block boundaries, records (one
 * cancelled) in between, never more than asked, never early. */
Test(timer, popping_many_at_once_keeps_the_order_of_single_pops)
{
    hm_timers t;
    hm_timer_fire f[64];
    hm_addr *to;
    hm_msg *msg;
    hm_timer_id cancelled = 0;
    int next = 0, i;
    uint32_t n, total = 0;

    hm_timers_init(&t, 0);
    /* 200 timers at 30 (more than three 63-entry blocks), every 50th one
     * with a record, then 10 anonymous ones at 31 and one at 40. */
    for (i = 0; i < 200; i++) {
        if (i % 50 == 25) {
            hm_timer_id id = hm_timers_arm(&t, 30, 0, NULL, TOKEN(i), 0);
            if (i == 75)
                cancelled = id;
        } else {
            hm_timers_arm_anon(&t, 30, NULL, TOKEN(i));
        }
    }
    for (i = 200; i < 210; i++)
        hm_timers_arm_anon(&t, 31, NULL, TOKEN(i));
    hm_timers_arm_anon(&t, 40, NULL, TOKEN(300));
    cr_assert(hm_timers_cancel(&t, cancelled, &to, &msg));
    cr_assert_eq(hm_timers_pop_due_n(&t, 29, f, 64), 0);
    while ((n = hm_timers_pop_due_n(&t, 31, f, 64)) > 0) {
        cr_assert_leq(n, 64);
        for (uint32_t k = 0; k < n; k++, next++) {
            if (next == 75)
                next++; /* the cancelled one */
            cr_assert_eq(fired_token(&f[k]), next);
            cr_assert_eq(f[k].deadline_ms, next < 200 ? 30u : 31u);
            cr_assert_not(f[k].periodic);
        }
        total += n;
    }
    cr_assert_eq(total, 209);
    cr_assert_eq(hm_timers_count(&t), 1);
    cr_assert_eq(hm_timers_pop_due_n(&t, 39, f, 64), 0);
    cr_assert_eq(hm_timers_pop_due_n(&t, 40, f, 1), 1);
    cr_assert_eq(fired_token(&f[0]), 300);
    cr_assert_eq(hm_timers_count(&t), 0);
    hm_timers_fini(&t);
}

Test(timer, draining_at_close_returns_anonymous_timers_too)
{
    hm_timers t;
    hm_timer_fire f;
    int seen = 0;

    hm_timers_init(&t, 0);
    hm_timers_arm_anon(&t, 10, NULL, TOKEN(1));
    hm_timers_arm(&t, 20, 0, NULL, TOKEN(2), 0);
    hm_timers_arm_anon(&t, 10000, NULL, TOKEN(3));
    hm_timers_arm(&t, 5, 7, NULL, NULL, 9); /* periodic: drained as well */
    while (hm_timers_pop_due(&t, UINT64_MAX, &f))
        seen++;
    cr_assert_eq(seen, 4);
    cr_assert_eq(hm_timers_count(&t), 0);
    hm_timers_fini(&t);
}

/* Buckets are lists of 63-entry blocks: a bucket many blocks long keeps its
 * arming order across block boundaries, through cancels that empty whole
 * blocks, a compaction that moves survivors across blocks, and arms that
 * follow it. */
Test(timer, a_bucket_of_many_blocks_keeps_its_order_through_compaction)
{
    enum { N = 5000 };
    static hm_timer_id ids[N];
    hm_timers t;
    hm_timer_fire f;
    hm_addr *to;
    hm_msg *msg;
    int expect = 0;

    hm_timers_init(&t, 0);
    for (int i = 0; i < N; i++) {
        if (i % 5 == 4)
            hm_timers_arm_anon(&t, 7, NULL, TOKEN(i)); /* cannot cancel */
        else
            ids[i] = hm_timers_arm(&t, 7, 0, NULL, TOKEN(i), 0);
    }
    /* Every recorded timer of [1000, 3000) goes, and every other one
     * elsewhere: enough dead entries to compact (more than half, more than
     * 1,024), whole blocks emptied in the middle. */
    for (int i = 0; i < N; i++)
        if (ids[i] && ((i >= 1000 && i < 3000) || i % 2))
            cr_assert(hm_timers_cancel(&t, ids[i], &to, &msg));
    cr_assert_lt(t.wheel_dead, 1024, "compaction did not run");
    /* More after the compaction, appended behind the survivors. */
    for (int i = 0; i < 100; i++)
        hm_timers_arm_anon(&t, 7, NULL, TOKEN(N + i));
    cr_assert_not(hm_timers_pop_due(&t, 6, &f));
    for (int i = 0; i < N + 100; i++) {
        bool live = i >= N || !ids[i] ||
                    !((i >= 1000 && i < 3000) || i % 2);
        if (!live)
            continue;
        cr_assert(hm_timers_pop_due(&t, 7, &f));
        cr_assert_eq(fired_token(&f), i, "got %d, want %d", fired_token(&f),
                     i);
        expect++;
    }
    cr_assert_not(hm_timers_pop_due(&t, 7, &f));
    cr_assert_eq(hm_timers_count(&t), 0);
    cr_assert_gt(expect, 0);
    hm_timers_fini(&t);
}

/* The blocks a drained bucket gives back are what the next arms take, up
 * to a bound: a burst does not keep its memory. */
Test(timer, drained_blocks_are_reused_and_bounded)
{
    enum { N = 100000 };
    hm_timers t;
    hm_timer_fire f;
    uint32_t spare;
    int popped = 0;

    hm_timers_init(&t, 0);
    for (int i = 0; i < N; i++)
        hm_timers_arm_anon(&t, 3, NULL, TOKEN(i));
    cr_assert_eq(t.nspare, 0);
    while (hm_timers_pop_due(&t, 3, &f))
        cr_assert_eq(fired_token(&f), popped++);
    cr_assert_eq(popped, N);
    spare = t.nspare;
    cr_assert_gt(spare, 0);
    cr_assert_leq(spare, 1024); /* 100,000 entries were ~1,600 blocks */
    for (int i = 0; i < 10 * (int)HM_TIMER_BLOCK_LEN; i++)
        hm_timers_arm_anon(&t, 4 + (uint64_t)i % 2, NULL, TOKEN(i));
    cr_assert_eq(t.nspare, spare - 10, "arms took no spare block");
    while (hm_timers_pop_due(&t, UINT64_MAX, &f))
        ;
    hm_timers_fini(&t);
}
