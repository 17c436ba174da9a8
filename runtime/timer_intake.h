/* runtime/timer_intake.h: the lock-free intake of timers nobody can cancel
 * (private to runtime/).
 *
 * A one-shot timer armed without asking for its id (hm_runtime_send_after
 * with a NULL id, the common case) needs no record and can never be
 * cancelled (docs/adr/0180), so the arming thread need not take the timer
 * lock to file it: it claims a cell of this bounded ring with one RMW,
 * writes (deadline, receiver, message) and publishes the cell; whoever
 * holds the timer lock next (the timer thread at each wake and between fire
 * batches, or an arm that needs a record) files every claimed cell into the
 * timer store, in claim order, before touching the store. That order is a
 * valid arming order: an arm's claim comes after every arm its thread made
 * before, so "equal deadlines fire in arming order" still holds, and an arm
 * that takes the lock files the intake first, so it lands behind them.
 * The ring is Vyukov's bounded MPMC queue with one consumer (docs/adr/0250)
 * whose consumer never writes a cell (docs/adr/0281).
 *
 * Ownership: hm_timer_intake_put() takes the reference `to` and `msg` on
 * true; on false (the ring is full) the caller still owns both and arms
 * under the lock instead. hm_timer_intake_drain() hands them to the store. */
#ifndef HM_RUNTIME_TIMER_INTAKE_H
#define HM_RUNTIME_TIMER_INTAKE_H

#include "runtime/timer.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct hm_timer_cell {
    /* acquire/release: a producer publishes the cell with seq = pos + 1
     * (see timer_intake.c). */
    _Atomic uint64_t seq;
    uint64_t deadline_ms;
    hm_addr *to;
    hm_msg *msg;
} hm_timer_cell;

typedef struct hm_timer_intake {
    hm_timer_cell *cells;
    uint64_t mask; /* capacity - 1 */
    char pad0_[48];
    /* seq_cst: the next position to claim; see hm_timer_intake_put. */
    _Atomic uint64_t tail;
    char pad1_[56];
    /* Written by the consumer only (under the timer lock), with release
     * once per drain; producers load it (acquire) to know a cell is free:
     * the next position to file. */
    _Atomic uint64_t head;
    char pad2_[56]; /* the cells' pointer and mask above stay shared */
} hm_timer_intake;

/* `cap` is a power of two. */
void hm_timer_intake_init(hm_timer_intake *q, uint32_t cap);
/* Frees the ring; drain it first. */
void hm_timer_intake_fini(hm_timer_intake *q);

/* Claims and fills a cell with a one-shot timer nobody can cancel. False if
 * the ring is full (nothing taken). Any thread. The claim is a seq_cst RMW,
 * so a seq_cst load that follows it (the timer thread's wait deadline) is
 * ordered after it (docs/adr/0250). */
bool hm_timer_intake_put(hm_timer_intake *q, uint64_t deadline_ms,
                         hm_addr *to, hm_msg *msg);

/* Files into `t`, in claim order, the cells claimed before the call.
 * With `wait`, all of them, waiting for any that is claimed but not yet
 * written (a few instructions, unless its thread was preempted there): an
 * arm that is about to file its own timer needs every earlier one filed.
 * Without, it stops at the first such cell, so the timer thread never
 * waits on a preempted arming thread (hm_timer_intake_idle() then says
 * false). Returns how many it filed. Caller holds the timer lock (the only
 * consumer). */
uint32_t hm_timer_intake_drain(hm_timer_intake *q, hm_timers *t, bool wait);

/* Whether every cell claimed so far has been filed. Caller holds the timer
 * lock. */
bool hm_timer_intake_idle(hm_timer_intake *q);

#endif
