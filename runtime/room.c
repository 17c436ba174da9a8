/* runtime/room.c: backpressure that waits instead of polling (ADR 0240).
 *
 * A bounded mailbox (hm_receiver.mailbox_limit) refuses sends with HM_EFULL.
 * Two kinds of sender can then wait for it to drain instead of retrying:
 * a thread outside the runtime, which sleeps in hm_runtime_send_wait() as
 * a Go sender blocks on a full buffered channel; and a receiver, which can
 * never block, so it asks with hm_ctx_notify_room() to be sent a message
 * when the mailbox has room. Both rest on one signal: the consumer of the
 * mailbox, after each turn's subtraction from `queued`, looks at the
 * entry's ENT_ROOMWAIT bit (the line is its own during the turn), and when
 * the bit is set and `queued` is down to the low-water mark (half the
 * bound) it clears the bit, bumps the futex word of the entry's slot (one
 * of HM_ROOM_SLOTS, by the entry's address) and wakes the slot's
 * sleepers, and sends the notices registered for that entry. Waiting from
 * the mark rather than from the first free slot means a woken sender has
 * half a mailbox to fill before it sleeps again: one wake-up per
 * limit/2 messages, not one per message. Workers never wait: on a worker
 * (or a guest of hm_runtime_send_here, or in manual mode)
 * hm_runtime_send_wait() is hm_runtime_send(). A slot is shared by the
 * entries that hash to it; a sleeper woken for another entry checks its
 * own and sleeps again. */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/clock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct hm_room_notice {
    hm_room_notice *next;
    hm_addr *target; /* a reference: the mailbox waited on */
    hm_addr *notify; /* a reference: who gets the notice */
    hm_msg *msg;     /* owned until sent */
};

static hm_room_slot *slot_of(hm_runtime *rt, const hm_addr *e)
{
    uintptr_t p = (uintptr_t)e;

    /* Entries are 8-aligned slab objects; mix the bits above that. */
    return &rt->room[((p >> 3) ^ (p >> 9) ^ (p >> 15)) % HM_ROOM_SLOTS];
}

/* The mailbox has room: no bound, or `queued` at or below half of it. */
static bool has_room(hm_addr *e)
{
    /* seq_cst: the waiter's half of the Dekker pair (flag set, then this
     * read) with hm_room_drained (subtraction, then the flag's read). */
    uint32_t limit = atomic_load(&e->limit);

    return limit == 0 || atomic_load(&e->queued) <= limit / 2;
}

void hm_room_init(hm_runtime *rt)
{
    for (unsigned i = 0; i < HM_ROOM_SLOTS; i++)
        hm_rt_mutex_init(&rt->room[i].lock);
}

/* ------------------------------------------------------------ notices */

/* Pushes a notice past any bound (it was asked for, like a reply) with
 * its target as the sender; any thread, inside a turn or not: the woken
 * receiver is counted and scheduled here, never handed to w->next. */
static void send_notice(hm_runtime *rt, hm_room_notice *n)
{
    hm_addr *to = n->notify;

    n->msg->from = n->target; /* the record's reference moves in */
    /* relaxed: as in hm_rt_push_batch(); the turn subtracts it. */
    atomic_fetch_add_explicit(&to->queued, 1, memory_order_relaxed);
    if (hm_mailbox_push(&to->mb, &n->msg->node)) {
        /* seq_cst: counted before the receiver can run and park. */
        atomic_fetch_add(&rt->busy, 1);
        hm_sched_schedule(rt, to);
    }
    hm_addr_release(to);
    hm_free(n);
}

/* Unlinks from `sl` the notices for `target` (all of them, or only
 * `only` when not NULL) and returns them as a list; caller holds the
 * lock. */
static hm_room_notice *take_locked(hm_room_slot *sl, hm_addr *target,
                                   hm_room_notice *only)
{
    hm_room_notice **pp = &sl->list, *out = NULL, *n;

    while ((n = *pp)) {
        if (n->target == target && (!only || n == only)) {
            *pp = n->next;
            n->next = out;
            out = n;
            /* seq_cst: see hm_ctx_notify_room(). */
            atomic_fetch_sub(&sl->notices, 1);
        } else {
            pp = &n->next;
        }
    }
    return out;
}

static void send_all(hm_runtime *rt, hm_room_notice *list)
{
    /* The list is newest first; notices are independent, order is free. */
    while (list) {
        hm_room_notice *next = list->next;
        send_notice(rt, list);
        list = next;
    }
}

hm_err hm_ctx_notify_room(hm_ctx *ctx, hm_addr *to, hm_msg *notice)
{
    hm_runtime *rt = ctx->rt;
    hm_room_slot *sl = slot_of(rt, to);
    hm_room_notice *n;

    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    n = hm_alloc(sizeof *n);
    *n = (hm_room_notice){.target = hm_addr_ref(to),
                          .notify = hm_addr_ref(ctx->self),
                          .msg = notice};
    if (notice->from) { /* the notice's sender will be `to` */
        hm_addr_release(notice->from);
        notice->from = NULL;
    }
    pthread_mutex_lock(&sl->lock);
    n->next = sl->list;
    sl->list = n;
    /* seq_cst: counted before the flag is set, so a consumer that sees
     * the flag sees the count (and takes the lock). */
    atomic_fetch_add(&sl->notices, 1);
    pthread_mutex_unlock(&sl->lock);
    /* seq_cst: the flag, then has_room()'s read of `queued`. */
    atomic_fetch_or(&to->sflags, ENT_ROOMWAIT);
    if (has_room(to)) {
        /* Room already (or the drain came before the flag): send it now,
         * unless the consumer took it meanwhile (then it sends it). */
        pthread_mutex_lock(&sl->lock);
        n = take_locked(sl, to, n);
        pthread_mutex_unlock(&sl->lock);
        send_all(rt, n);
    }
    return HM_OK;
}

/* ------------------------------------------------------------ draining */

void hm_room_drained_slow(hm_runtime *rt, hm_addr *e, uint32_t left)
{
    /* relaxed: the bound is advisory, as in reserve(). */
    uint32_t limit = atomic_load_explicit(&e->limit, memory_order_relaxed);
    hm_room_slot *sl;
    hm_room_notice *list = NULL;

    if (limit && left > limit / 2)
        return; /* not yet: the waiters would find it full again */
    sl = slot_of(rt, e);
    /* seq_cst: cleared before the slot's word moves, so a waiter that
     * wakes and finds no room sets it again and is seen next time. */
    atomic_fetch_and(&e->sflags, ~(uint32_t)ENT_ROOMWAIT);
    atomic_fetch_add(&sl->seq, 1);
    if (atomic_load(&sl->sleepers))
        syscall(SYS_futex, &sl->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
                NULL, 0);
    if (atomic_load(&sl->notices)) {
        pthread_mutex_lock(&sl->lock);
        list = take_locked(sl, e, NULL);
        pthread_mutex_unlock(&sl->lock);
        send_all(rt, list);
    }
}

/* ------------------------------------------------------- blocking send */

/* Sleeps until `e` has room, the runtime closes, or `deadline_ns` (0: no
 * deadline) passes. HM_OK means "try again", not "there is room". */
static hm_err wait_room(hm_runtime *rt, hm_addr *e, uint64_t deadline_ns)
{
    hm_room_slot *sl = slot_of(rt, e);
    hm_err err = HM_OK;

    /* seq_cst: hm_room_drained_slow() reads it after moving `seq`. */
    atomic_fetch_add(&sl->sleepers, 1);
    for (;;) {
        /* seq_cst: read before the checks; a drain or close after them
         * moves it, so the futex wait below returns at once. */
        uint32_t seq = atomic_load(&sl->seq);
        struct timespec ts, *tsp = NULL;

        /* seq_cst: the flag, then has_room()'s read of `queued`. */
        atomic_fetch_or(&e->sflags, ENT_ROOMWAIT);
        if (atomic_load(&rt->closing)) {
            err = HM_ECLOSED;
            break;
        }
        if (has_room(e))
            break;
        if (deadline_ns) {
            uint64_t now = hm_clock_now_ns();
            if (now >= deadline_ns) {
                err = HM_ETIMEDOUT;
                break;
            }
            ts.tv_sec = (time_t)((deadline_ns - now) / 1000000000u);
            ts.tv_nsec = (long)((deadline_ns - now) % 1000000000u);
            tsp = &ts;
        }
        syscall(SYS_futex, &sl->seq, FUTEX_WAIT_PRIVATE, seq, tsp, NULL, 0);
    }
    atomic_fetch_sub(&sl->sleepers, 1);
    return err;
}

hm_err hm_room_send_wait_slow(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                              uint32_t timeout_ms)
{
    uint64_t deadline_ns = 0;
    hm_err err;

    if (rt->manual || hm_sched_self(rt))
        return HM_EFULL; /* must not block: nothing would drain */
    if (timeout_ms == 0)
        return HM_ETIMEDOUT;
    if (timeout_ms != UINT32_MAX)
        deadline_ns = hm_clock_now_ns() + (uint64_t)timeout_ms * 1000000u;
    /* seq_cst: hm_room_close() reads it after setting `closing`; from
     * here to the decrement this thread may sleep and retry. */
    atomic_fetch_add(&rt->room_waiters, 1);
    while ((err = wait_room(rt, to, deadline_ns)) == HM_OK &&
           (err = hm_rt_send_from(rt, NULL, to, msg)) == HM_EFULL)
        ;
    /* seq_cst: the last touch of `rt`; hm_room_close() may return (and
     * the runtime be freed) as soon as this reaches zero. */
    atomic_fetch_sub(&rt->room_waiters, 1);
    return err;
}

uint32_t hm_room_waiting(hm_runtime *rt)
{
    /* relaxed: a gauge for the stats. */
    return atomic_load_explicit(&rt->room_waiters, memory_order_relaxed);
}

/* ------------------------------------------------------------- closing */

void hm_room_close(hm_runtime *rt)
{
    struct timespec pause = {0, 100000}; /* 0.1 ms */

    for (unsigned i = 0; i < HM_ROOM_SLOTS; i++) {
        /* seq_cst: after the store of `closing`; a waiter reads `seq`
         * before `closing`, so it sees closing or its wait fails. */
        atomic_fetch_add(&rt->room[i].seq, 1);
        syscall(SYS_futex, &rt->room[i].seq, FUTEX_WAKE_PRIVATE, INT_MAX,
                NULL, NULL, 0);
    }
    /* The woken leave at once (they see `closing`); a thread entering
     * now fails its send with HM_ECLOSED and never waits. */
    while (atomic_load(&rt->room_waiters))
        nanosleep(&pause, NULL);
}

void hm_room_fini(hm_runtime *rt)
{
    for (unsigned i = 0; i < HM_ROOM_SLOTS; i++) {
        hm_room_slot *sl = &rt->room[i];
        hm_room_notice *n = sl->list;

        while (n) {
            hm_room_notice *next = n->next;
            hm_msg_destroy(n->msg);
            hm_addr_release(n->target);
            hm_addr_release(n->notify);
            hm_free(n);
            n = next;
        }
        sl->list = NULL;
        pthread_mutex_destroy(&sl->lock);
    }
}
