/* runtime/timer_intake.c: the bounded ring through which timers nobody can
 * cancel reach the timer store without the timer lock (see
 * timer_intake.h, docs/adr/0250).
 *
 * Cell i starts with seq = i. A producer reads `tail` (pos) and the seq of
 * cell pos: equal, the cell is free and it claims pos with a CAS on `tail`;
 * smaller, the ring is full; larger, another producer claimed pos first and
 * it reads `tail` again. It then writes the cell and stores seq = pos + 1
 * (release). The one consumer files cell `head` once its seq is head + 1
 * (acquire) and frees it for the next lap with seq = head + capacity
 * (release: the producer of that lap writes the cell only after it reads
 * that seq, so after our reads). */
#include "runtime/timer_intake.h"

#include "runtime/alloc.h"

#include <sched.h>

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void hm_timer_intake_init(hm_timer_intake *q, uint32_t cap)
{
    q->cells = hm_alloc((size_t)cap * sizeof *q->cells);
    q->mask = cap - 1;
    for (uint32_t i = 0; i < cap; i++)
        atomic_init(&q->cells[i].seq, i);
    atomic_init(&q->tail, 0);
    q->head = 0;
}

void hm_timer_intake_fini(hm_timer_intake *q)
{
    hm_free(q->cells);
    q->cells = NULL;
}

bool hm_timer_intake_put(hm_timer_intake *q, uint64_t deadline_ms,
                         hm_addr *to, hm_msg *msg)
{
    /* relaxed: a first guess, checked against the cell's seq and by the
     * CAS. */
    uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    hm_timer_cell *c;

    for (;;) {
        c = &q->cells[pos & q->mask];
        /* acquire: pairs with the consumer's release that freed the cell,
         * so our writes below come after its reads. */
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - pos);
        if (diff == 0) {
            /* seq_cst: the claim is the producer's half of the Dekker pair
             * with the timer thread's store of its wait deadline (the
             * caller's seq_cst load of it comes after). On failure `pos`
             * is reloaded. */
            if (atomic_compare_exchange_weak(&q->tail, &pos, pos + 1))
                break;
        } else if (diff < 0) {
            return false; /* full: the cell still holds the last lap's */
        } else {
            /* relaxed: another producer took pos; look again. */
            pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
        }
    }
    c->deadline_ms = deadline_ms;
    c->to = to;
    c->msg = msg;
    /* release: publishes the three fields to the consumer's acquire. */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return true;
}

uint32_t hm_timer_intake_drain(hm_timer_intake *q, hm_timers *t, bool wait)
{
    /* seq_cst: the consumer's half of the Dekker pair (after its seq_cst
     * store of the wait deadline, when it is about to sleep). */
    uint64_t end = atomic_load(&q->tail);
    uint32_t n = 0;

    for (; q->head != end; q->head++, n++) {
        hm_timer_cell *c = &q->cells[q->head & q->mask];
        unsigned spins = 0;
        /* acquire: pairs with the producer's publishing release. A claimed
         * cell is written within a few instructions; wait for it (its
         * producer may have been preempted in between). */
        while (atomic_load_explicit(&c->seq, memory_order_acquire) !=
               q->head + 1) {
            if (!wait)
                return n;
            if (++spins % 64 == 0)
                sched_yield();
            else
                cpu_relax();
        }
        hm_timers_arm_anon(t, c->deadline_ms, c->to, c->msg);
        /* release: our reads of the cell come before the next lap's
         * writes (pairs with the producer's acquire load of seq). */
        atomic_store_explicit(&c->seq, q->head + q->mask + 1,
                              memory_order_release);
    }
    return n;
}

bool hm_timer_intake_idle(hm_timer_intake *q)
{
    /* seq_cst: as in drain; a claim after this load is the claimer's to
     * signal (hm_rt_arm). */
    return atomic_load(&q->tail) == q->head;
}
