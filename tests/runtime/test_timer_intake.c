/* tests/runtime/test_timer_intake.c: the lock-free intake of timers nobody
 * can cancel (runtime/timer_intake.h, docs/adr/0250): claim order kept into
 * the timer store, a full ring refusing without taking anything, and
 * producers on several threads racing one draining consumer. */
#include "runtime/timer_intake.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* The store keeps `msg` without touching it (it only prefetches it), so
 * fake non-NULL tokens stand for messages, as in test_timer.c. */
#define TOKEN(n) ((hm_msg *)(uintptr_t)(0x1000 + (n)))

static uint64_t token_of(const hm_timer_fire *f)
{
    return (uint64_t)((uintptr_t)f->msg - 0x1000);
}

Test(timer_intake, arms_are_filed_in_claim_order)
{
    hm_timer_intake q;
    hm_timers t;
    hm_timer_fire f;

    hm_timer_intake_init(&q, 8);
    hm_timers_init(&t, 0);
    hm_timers_arm_anon(&t, 5, NULL, TOKEN(0)); /* armed before the intake's */
    for (int i = 1; i <= 5; i++)
        cr_assert(hm_timer_intake_put(&q, 5, NULL, TOKEN(i)));
    cr_assert_eq(hm_timers_count(&t), 1, "nothing filed before a drain");
    cr_assert_eq(hm_timer_intake_drain(&q, &t, true), 5);
    hm_timers_arm(&t, 5, 0, NULL, TOKEN(6), 0); /* a record, after them */
    cr_assert_eq(hm_timer_intake_drain(&q, &t, true), 0);
    cr_assert_not(hm_timers_pop_due(&t, 4, &f), "never before the deadline");
    for (uint64_t i = 0; i <= 6; i++) {
        cr_assert(hm_timers_pop_due(&t, 5, &f));
        cr_assert_eq(token_of(&f), i);
    }
    cr_assert_not(hm_timers_pop_due(&t, 5, &f));
    hm_timers_fini(&t);
    hm_timer_intake_fini(&q);
}

Test(timer_intake, a_full_intake_refuses_until_a_drain_makes_room)
{
    hm_timer_intake q;
    hm_timers t;
    hm_timer_fire f;

    hm_timer_intake_init(&q, 4);
    hm_timers_init(&t, 0);
    for (int lap = 0; lap < 3; lap++) { /* the cells are reused each lap */
        for (int i = 0; i < 4; i++)
            cr_assert(hm_timer_intake_put(&q, 7, NULL, TOKEN(lap * 4 + i)));
        cr_assert_not(hm_timer_intake_put(&q, 7, NULL, TOKEN(99)));
        cr_assert_eq(hm_timer_intake_drain(&q, &t, true), 4);
    }
    cr_assert_eq(hm_timers_count(&t), 12);
    for (uint64_t i = 0; i < 12; i++) {
        cr_assert(hm_timers_pop_due(&t, 7, &f));
        cr_assert_eq(token_of(&f), i, "the refused arm took no place");
    }
    hm_timers_fini(&t);
    hm_timer_intake_fini(&q);
}

Test(timer_intake, the_timer_threads_drain_stops_at_a_cell_not_yet_written)
{
    hm_timer_intake q;
    hm_timers t;
    hm_timer_fire f;
    hm_timer_cell *c;

    hm_timer_intake_init(&q, 8);
    hm_timers_init(&t, 0);
    cr_assert(hm_timer_intake_put(&q, 2, NULL, TOKEN(0)));
    /* A producer preempted between its claim and its writes: cell 1. */
    atomic_fetch_add(&q.tail, 1);
    c = &q.cells[1];
    cr_assert(hm_timer_intake_put(&q, 2, NULL, TOKEN(2)));
    cr_assert_eq(hm_timer_intake_drain(&q, &t, false), 1, "stops before it");
    cr_assert_not(hm_timer_intake_idle(&q));
    c->deadline_ms = 2; /* the producer runs again */
    c->to = NULL;
    c->msg = TOKEN(1);
    atomic_store(&c->seq, 2);
    cr_assert_eq(hm_timer_intake_drain(&q, &t, false), 2);
    cr_assert(hm_timer_intake_idle(&q));
    for (uint64_t i = 0; i < 3; i++) {
        cr_assert(hm_timers_pop_due(&t, 2, &f));
        cr_assert_eq(token_of(&f), i, "claim order kept across the stop");
    }
    hm_timers_fini(&t);
    hm_timer_intake_fini(&q);
}

enum { PRODUCERS = 4, PER_PRODUCER = 20000 };

static hm_timer_intake race_q;

static void *producer_main(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;

    for (uint64_t i = 0; i < PER_PRODUCER; i++)
        while (!hm_timer_intake_put(&race_q, 3, NULL,
                                    TOKEN(id << 20 | i)))
            sched_yield(); /* full: the consumer is behind */
    return NULL;
}

Test(timer_intake, racing_producers_each_keep_their_order, .timeout = 60)
{
    pthread_t th[PRODUCERS];
    uint64_t next[PRODUCERS] = {0};
    uint32_t filed = 0;
    hm_timers t;
    hm_timer_fire f;

    hm_timer_intake_init(&race_q, 64); /* small: producers find it full */
    hm_timers_init(&t, 0);
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&th[i], NULL, producer_main, (void *)i);
    while (filed < PRODUCERS * PER_PRODUCER) {
        /* The timer thread's way: never wait for a claimed cell. */
        uint32_t n = hm_timer_intake_drain(&race_q, &t, false);
        filed += n;
        if (n == 0)
            sched_yield();
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    cr_assert(hm_timer_intake_idle(&race_q));
    cr_assert_eq(hm_timer_intake_drain(&race_q, &t, true), 0);
    for (uint32_t k = 0; k < filed; k++) {
        cr_assert(hm_timers_pop_due(&t, 3, &f));
        uint64_t tok = token_of(&f), p = tok >> 20, i = tok & 0xfffff;
        cr_assert_lt(p, PRODUCERS);
        cr_assert_eq(i, next[p], "producer %llu: %llu after %llu",
                     (unsigned long long)p, (unsigned long long)i,
                     (unsigned long long)next[p]);
        next[p]++;
    }
    cr_assert_not(hm_timers_pop_due(&t, 3, &f));
    hm_timers_fini(&t);
    hm_timer_intake_fini(&race_q);
}
