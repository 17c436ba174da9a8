/* runtime/timer.h: the timer heap: a 4-ary min-heap of armed timers ordered
 * by (deadline_ms, seq), over a slab of timer records (private to runtime/).
 *
 * The heap's entries carry their own keys, so sifting reads only the heap
 * array (a node's four children share one or two cache lines). With the keys
 * in the slab, a 1,000,000-timer binary heap spent most of its time in cache
 * misses. Timers due more than one window (8 ms) ahead wait in a ring of
 * unsorted per-window buckets and enter the heap a window before they are
 * due, so the heap only ever holds the next ~16 ms of timers and stays in
 * cache; firing order is still exactly (deadline, seq). Cancellation is
 * lazy (see timer.c).
 *
 * Like libuv's timer heap, equal deadlines fire in the order they were armed.
 * Records live in a slab with a free list, so arming allocates nothing once
 * the slab has grown, and a timer id is (generation << 32 | slot + 1): a
 * stale id (the timer fired, its slot was reused) fails to cancel instead of
 * cancelling a stranger. Not thread-safe: the runtime holds its timer lock
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
    bool in_wheel; /* its entry waits in a bucket, not in the heap */
} hm_tslot;

typedef struct hm_theap_entry {
    uint64_t deadline_ms;
    uint64_t seq;
    uint32_t slot;
} hm_theap_entry;

#define HM_TIMER_WHEEL_SLOTS 4096u
#define HM_TIMER_GRAIN_MS 8u

typedef struct hm_tbucket {
    hm_theap_entry *items;
    uint32_t len, cap;
} hm_tbucket;

typedef struct hm_timers {
    hm_tslot *slots;
    uint32_t nslots, slots_cap, free_head;
    hm_theap_entry *heap; /* live and dead (cancelled) entries */
    uint32_t heap_len, heap_cap;
    uint32_t armed, heap_dead;
    uint64_t seq;
    hm_tbucket wheel[HM_TIMER_WHEEL_SLOTS];
    uint64_t wheel_ms; /* start of the first window still in the wheel */
    uint32_t wheel_len, wheel_dead;
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

/* `now_ms` anchors the wheel's first window. */
void hm_timers_init(hm_timers *t, uint64_t now_ms);
/* Frees the arrays; the caller drains armed timers first. */
void hm_timers_fini(hm_timers *t);

/* Arms a timer. Takes the reference `to` and `msg`. Returns its id. */
hm_timer_id hm_timers_arm(hm_timers *t, uint64_t deadline_ms,
                          uint32_t period_ms, hm_addr *to, hm_msg *msg,
                          uint64_t tag);
/* Disarms `id`. On true, returns owned the timer's reference and message
 * (msg may be NULL) for the caller to release outside the lock. */
bool hm_timers_cancel(hm_timers *t, hm_timer_id id, hm_addr **to_out,
                      hm_msg **msg_out);
/* When to call hm_timers_pop_due() next (the earliest deadline, or the time
 * the next wheel window must enter the heap), if any timer is armed. */
bool hm_timers_next(hm_timers *t, uint64_t *deadline_out);
/* Pops the earliest timer if due at `now_ms`. A one-shot timer is freed; a
 * periodic one is re-armed one period later (skipping periods already
 * missed) and the fire holds an extra reference of `to`. With `now_ms` ==
 * UINT64_MAX every timer is due and is removed, periodic or not (draining at
 * close). */
bool hm_timers_pop_due(hm_timers *t, uint64_t now_ms, hm_timer_fire *out);
uint32_t hm_timers_count(const hm_timers *t);

#endif
