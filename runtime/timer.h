/* runtime/timer.h: the timer store: a timing wheel of 1 ms buckets that
 * timers expire from directly, with a 4-ary min-heap behind it for timers
 * beyond the wheel's horizon (private to runtime/).
 *
 * A timer due within HM_TIMER_WHEEL_SLOTS ms of the wheel's cursor is
 * appended to the bucket of its deadline's millisecond; every timer in a
 * bucket has the same deadline (in the cursor's own bucket, possibly one
 * already passed: see hm_timers_pop_due) and the bucket is in arming order, so
 * expiring buckets front to back gives exactly the (deadline, seq) order with
 * no sorting: arming and firing are O(1). A timer due later waits in the
 * heap (ordered by (deadline, seq), keys inline) and moves into its bucket,
 * in heap order, when the cursor comes within the horizon of its deadline;
 * a bucket is filled from the heap only while it is empty and before any
 * direct arm can reach it, so the order stays exact. The 8 ms-window wheel
 * that fed the heap before (docs/adr/0130) spent 450 of its 755
 * instructions per timer re-sorting each window in the heap.
 *
 * Like libuv's timer heap, equal deadlines fire in the order they were armed.
 * A timer nobody can cancel (armed without asking for its id) is kept in
 * its bucket entry alone (hm_timers_arm_anon): no record at all.
 * Records live in a slab with a free list, and buckets are lists of
 * blocks recycled through a spare list, so arming allocates nothing once
 * they have grown, and a timer id is
 * (generation << 32 | slot + 1): a stale id (the timer fired, its slot was
 * reused) fails to cancel instead of cancelling a stranger. Cancellation is
 * lazy (see timer.c). Not thread-safe: the runtime holds its timer lock
 * around every call. */
#ifndef HM_RUNTIME_TIMER_H
#define HM_RUNTIME_TIMER_H

#include "runtime/runtime.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct hm_tslot {
    uint64_t deadline_ms;
    uint64_t seq;
    uint64_t tag;
    hm_addr *to;  /* a reference held by the timer */
    hm_msg *msg;  /* one-shot: the message, owned; periodic: NULL */
    uint32_t period_ms;
    uint32_t gen;
    uint32_t next_free;
    bool armed;
    bool in_heap; /* its entry waits in the heap, not in a bucket */
} hm_tslot;

/* An entry in the far heap. */
typedef struct hm_theap_entry {
    uint64_t deadline_ms;
    uint64_t seq;
    uint32_t slot;
} hm_theap_entry;

/* An entry in a bucket; the deadline is the bucket's. Either a record's
 * (`msg` NULL: `slot`, and `seq32`, the low half of the record's seq, which
 * tells a live entry from a cancelled one), or a whole anonymous timer
 * (`msg` and `to`, owned; see hm_timers_arm_anon). */
typedef struct hm_twheel_entry {
    hm_msg *msg;
    union {
        hm_addr *to;
        struct {
            uint32_t slot;
            uint32_t seq32;
        } rec;
    } u;
} hm_twheel_entry;

#define HM_TIMER_WHEEL_SLOTS 4096u /* 1 ms each: a 4.096 s horizon */

/* A bucket is a list of blocks of entries (1 KiB each), taken from the
 * store's spare blocks and given back to them as they are emptied: arming
 * never copies a bucket to grow it, and the memory of a bucket drained by
 * firing is what the next arms fill. */
#define HM_TIMER_BLOCK_LEN 63u
typedef struct hm_tblock {
    struct hm_tblock *next; /* toward the bucket's last block */
    uint64_t pad_;          /* entries on 16-byte boundaries */
    hm_twheel_entry items[HM_TIMER_BLOCK_LEN];
} hm_tblock;

/* Empty: first == NULL. Else the entries still to expire run from `rd`
 * (in `first`) to `wr` (in `last`, where the next arm writes). */
typedef struct hm_tbucket {
    hm_twheel_entry *rd, *wr;
    hm_tblock *first, *last;
} hm_tbucket;

typedef struct hm_timers {
    hm_tslot *slots;
    uint32_t nslots, slots_cap, free_head;
    hm_theap_entry *heap; /* timers due at or after cursor + horizon */
    uint32_t heap_len, heap_cap;
    uint32_t armed, heap_dead;
    uint64_t seq;
    hm_tbucket wheel[HM_TIMER_WHEEL_SLOTS];
    uint64_t used[HM_TIMER_WHEEL_SLOTS / 64]; /* bit set: bucket not empty */
    uint64_t cursor_ms; /* the earliest millisecond not yet fully expired */
    uint32_t wheel_len, wheel_dead; /* entries in buckets, cancelled ones */
    hm_tblock *spare; /* emptied blocks, linked by next */
    uint32_t nspare;
} hm_timers;

/* What fired: `to` is a reference the caller now owns (release it after the
 * send); `msg` is owned, or NULL when the caller builds the message from
 * `tag` (a periodic tick, or a request's timeout). */
typedef struct hm_timer_fire {
    hm_addr *to;
    hm_msg *msg;
    uint64_t tag;
    uint64_t deadline_ms;
    bool periodic;
} hm_timer_fire;

/* `now_ms` is where the wheel's cursor starts. */
void hm_timers_init(hm_timers *t, uint64_t now_ms);
/* Frees the arrays; the caller drains armed timers first. */
void hm_timers_fini(hm_timers *t);

/* Arms a timer. Takes the reference `to` and `msg`. Returns its id. */
hm_timer_id hm_timers_arm(hm_timers *t, uint64_t deadline_ms,
                          uint32_t period_ms, hm_addr *to, hm_msg *msg,
                          uint64_t tag);
/* Arms a one-shot timer that nobody can cancel (no id): if it is due
 * within the wheel's horizon, the bucket entry holds `to` and `msg` and no
 * record is made, so arming and firing touch no slot (docs/adr/0180); else
 * it is armed as hm_timers_arm() would. Takes the reference `to` and
 * `msg` (not NULL). Fires in the same (deadline, arming) order as the
 * others. */
void hm_timers_arm_anon(hm_timers *t, uint64_t deadline_ms, hm_addr *to,
                        hm_msg *msg);
/* Disarms `id`. On true, returns owned the timer's reference and message
 * (msg may be NULL) for the caller to release outside the lock. */
bool hm_timers_cancel(hm_timers *t, hm_timer_id id, hm_addr **to_out,
                      hm_msg **msg_out);
/* When to call hm_timers_pop_due() next (the earliest deadline; a timer
 * armed with a deadline already behind the cursor counts as due at the
 * cursor), if any timer is armed. */
bool hm_timers_next(hm_timers *t, uint64_t *deadline_out);
/* Pops the earliest timer if due at `now_ms`, in (deadline, seq) order; a
 * timer armed with a deadline the cursor had already passed (the arming
 * thread read the clock before the timer thread did) fires at the cursor's
 * millisecond, in arming order. A one-shot timer is freed; a
 * periodic one is re-armed one period later (skipping periods already
 * missed) and the fire holds an extra reference of `to`. With `now_ms` ==
 * UINT64_MAX every timer is due and is removed, periodic or not (draining at
 * close). */
bool hm_timers_pop_due(hm_timers *t, uint64_t now_ms, hm_timer_fire *out);
/* Pops up to `max` timers into out[0..n) as hm_timers_pop_due() would,
 * one after the other; returns n. A run of timers with no record (armed
 * with hm_timers_arm_anon) is copied out of its bucket in one loop. */
uint32_t hm_timers_pop_due_n(hm_timers *t, uint64_t now_ms,
                             hm_timer_fire *out, uint32_t max);
uint32_t hm_timers_count(const hm_timers *t);

#endif
