/* runtime/timer_intake.c: the bounded ring through which timers nobody can
 * cancel reach the timer store without the timer lock (see
 * timer_intake.h, docs/adr/0250, 0281).
 *
 * A producer reads `tail` (pos) and checks against `head` that cell pos is
 * free (pos - head < capacity: the consumer has filed the cell's last lap);
 * else the ring is full. It claims pos with a CAS on `tail`, writes the
 * cell and stores seq = pos + 1 (release). The one consumer files cell
 * `head` once its seq is head + 1 (acquire; the seq a cell keeps from its
 * last lap is head + 1 - capacity, never equal), and publishes how far it
 * got by storing `head` (release) once per drain. The consumer never writes
 * a cell: in Vyukov's queue it freed each one with a store of its seq,
 * which the next lap's producer then loaded, a cache miss on the arming
 * thread per line of cells; here the producer reads `head`, a line the
 * consumer writes once per drain. */
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
    /* 0: no cell's first lap (seq pos + 1 >= 1) looks published. */
    for (uint32_t i = 0; i < cap; i++)
        atomic_init(&q->cells[i].seq, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->head, 0);
}

void hm_timer_intake_fini(hm_timer_intake *q)
{
    hm_free(q->cells);
    q->cells = NULL;
}

bool hm_timer_intake_put(hm_timer_intake *q, uint64_t deadline_ms,
                         hm_addr *to, hm_msg *msg)
{
    /* relaxed: a first guess, checked by the CAS. */
    uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    hm_timer_cell *c;

    for (;;) {
        /* acquire: pairs with the consumer's release of head, so its reads
         * of the cell's last lap come before our writes to it. Signed: a
         * stale `pos` may be behind head; the CAS then fails and reloads
         * it. */
        int64_t used = (int64_t)(pos - atomic_load_explicit(
                                           &q->head, memory_order_acquire));
        if (used > (int64_t)q->mask)
            return false; /* full: the cell still holds the last lap's */
        /* seq_cst: the claim is the producer's half of the Dekker pair
         * with the timer thread's store of its wait deadline (the caller's
         * seq_cst load of it comes after). On failure `pos` is reloaded. */
        if (atomic_compare_exchange_weak(&q->tail, &pos, pos + 1))
            break;
    }
    c = &q->cells[pos & q->mask];
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
    /* relaxed: only the consumer (under the timer lock) writes head. */
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t n = 0;

    for (; head != end; head++, n++) {
        hm_timer_cell *c = &q->cells[head & q->mask];
        unsigned spins = 0;
        /* acquire: pairs with the producer's publishing release. A claimed
         * cell is written within a few instructions; wait for it (its
         * producer may have been preempted in between). */
        while (atomic_load_explicit(&c->seq, memory_order_acquire) !=
               head + 1) {
            if (!wait)
                goto out;
            if (++spins % 64 == 0)
                sched_yield();
            else
                cpu_relax();
        }
        hm_timers_arm_anon(t, c->deadline_ms, c->to, c->msg);
    }
out:
    /* release: our reads of the cells filed come before a producer's
     * writes of their next lap (pairs with its acquire load of head). */
    if (n > 0)
        atomic_store_explicit(&q->head, head, memory_order_release);
    return n;
}

bool hm_timer_intake_idle(hm_timer_intake *q)
{
    /* seq_cst: as in drain; a claim after this load is the claimer's to
     * signal (hm_rt_arm). relaxed: head is the consumer's own. */
    return atomic_load(&q->tail) ==
           atomic_load_explicit(&q->head, memory_order_relaxed);
}
