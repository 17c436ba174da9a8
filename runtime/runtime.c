/* runtime/runtime.c: the runtime's life cycle, sending, and a receiver's
 * turn on a worker: activation, delivery, failure and deactivation.
 *
 * A turn (hm_rt_run_entry) pops up to `batch` messages from one entry's
 * mailbox and handles them in order on the calling worker; nothing else can
 * run that entry meanwhile, because only the sender that found the mailbox
 * parked schedules it and only a park ends the turn. Everything that changes
 * an activation (the factory, hooks, become, deactivation) happens inside a
 * turn, so none of it needs a lock and none of it can race a message.
 * Deactivation in particular is a step of the turn, after which the next
 * message in the same mailbox finds no activation and calls the factory:
 * no message is lost, none is handled by two activations, and no receiver
 * is deactivated in the middle of a message (docs/adr/0003). */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/durable_impl.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>


uint64_t hm_rt_now_ms(hm_runtime *rt)
{
    if (rt->manual)
        return atomic_load_explicit(&rt->manual_now_ms, memory_order_relaxed);
    return hm_clock_now_ms();
}

uint64_t hm_runtime_now_ms(hm_runtime *rt)
{
    return hm_rt_now_ms(rt);
}

void hm_rt_busy_dec(hm_runtime *rt)
{
    hm_worker *w = hm_sched_self(rt);

    /* A worker owes it (docs/adr/0205): busy is one line that every
     * worker's wakes and parks wrote, twice per activation in `create`. */
    if (w && w->index >= 0 && !rt->manual) {
        w->busy_owed++;
        return;
    }
    hm_rt_busy_sub(rt, 1);
}

void hm_rt_busy_sub(hm_runtime *rt, int64_t n)
{
    /* seq_cst: Dekker pair with hm_runtime_wait_idle(), which increments
     * idle_waiters and then reads busy. */
    if (atomic_fetch_sub(&rt->busy, n) == n &&
        atomic_load(&rt->idle_waiters) > 0) {
        pthread_mutex_lock(&rt->idle_lock);
        pthread_cond_broadcast(&rt->idle_cond);
        pthread_mutex_unlock(&rt->idle_lock);
    }
}

/* ---------------------------------------------------------------- sends */

/* Counts a message into e's mailbox, unless `bounded` and the bound is
 * reached (false). */
static inline bool reserve(hm_addr *e, bool bounded)
{
    /* relaxed: the bound is advisory under concurrency (several senders
     * may overshoot it by one each); the count itself is exact. */
    uint32_t limit = atomic_load_explicit(&e->limit, memory_order_relaxed);
    uint32_t q = atomic_fetch_add_explicit(&e->queued, 1,
                                           memory_order_relaxed);

    if (bounded && limit && q >= limit) {
        atomic_fetch_sub_explicit(&e->queued, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* Appends `m` (counted by reserve) to e's mailbox; `w` is
 * hm_sched_self(rt). */
static inline void enqueue(hm_runtime *rt, hm_worker *w, hm_addr *e,
                           hm_msg *m)
{
    if (hm_mailbox_push(&e->mb, &m->node))
        hm_sched_wake(rt, w, e);
}

hm_err hm_rt_push(hm_runtime *rt, hm_addr *e, hm_msg *m, bool bounded)
{
    if (!reserve(e, bounded))
        return HM_EFULL;
    enqueue(rt, hm_sched_self(rt), e, m);
    return HM_OK;
}

/* Sets m's sender to `from` (a new reference), dropping the old one. */
static inline void set_from(hm_msg *m, hm_addr *from)
{
    if (m->from) {
        hm_msg_set_from(m, from);
    } else {
        /* relaxed: hm_addr_ref(), inlined: the caller holds a reference
         * to `from` (a handle, or the running entry), so no ordering is
         * needed to keep it alive. */
        atomic_fetch_add_explicit(&from->refs, 1, memory_order_relaxed);
        m->from = from;
    }
}

/* The send path shared by handlers (ctx->w known) and other threads. The
 * message is counted and stamped with its sender before it is published,
 * so a failure leaves it as it was, and the mailbox push is the last
 * call (what follows it needs only rt, w and e). */
static inline hm_err send_from(hm_runtime *rt, hm_worker *w, hm_addr *from,
                               hm_addr *to, hm_msg *m)
{
    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    if (!reserve(to, true))
        return HM_EFULL;
    if (from)
        set_from(m, from);
    if (w)
        counter_add(&w->st.sent, 1);
    else
        HM_COUNT(rt, NULL, sent);
    enqueue(rt, w, to, m);
    return HM_OK;
}

hm_err hm_rt_send_from(hm_runtime *rt, hm_addr *from, hm_addr *to,
                       hm_msg *m)
{
    return send_from(rt, hm_sched_self(rt), from, to, m);
}

hm_err hm_runtime_send(hm_runtime *rt, hm_addr *to, hm_msg *msg)
{
    return hm_rt_send_from(rt, NULL, to, msg);
}

hm_err hm_runtime_send_wait(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                            uint32_t timeout_ms)
{
    hm_err err = send_from(rt, hm_sched_self(rt), NULL, to, msg);

    if (__builtin_expect(err != HM_EFULL, 1))
        return err;
    return hm_room_send_wait_slow(rt, to, msg, timeout_ms); /* room.c */
}

hm_err hm_runtime_send_from(hm_runtime *rt, hm_addr *from, hm_addr *to,
                            hm_msg *msg)
{
    return hm_rt_send_from(rt, from, to, msg);
}

/* A name's length and hash, or false if it is not a valid name (or a
 * reserved `$` name and not `internal`). */
static inline bool name_ok(const char *name, bool internal, size_t *len_out,
                           uint32_t *hash_out)
{
    return hm_dir_hash_name(name, len_out, hash_out) &&
           (name[0] != '$' || internal);
}

/* Sends by name: the lookup and the push happen under the shard lock, so
 * the entry cannot be reclaimed in between. `w` is hm_sched_self(rt) (a
 * handler's ctx->w). One hash pass, one lookup; a refused send leaves
 * the message as it was. */
static hm_err send_name_from(hm_runtime *rt, hm_worker *w, hm_addr *from,
                             const char *name, hm_msg *m, bool internal)
{
    size_t len;
    uint32_t h;
    hm_shard *sh;
    hm_addr *e;

    if (!name_ok(name, internal, &len, &h))
        return HM_EINVAL;
    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    sh = hm_dir_shard(rt, h);
    pthread_mutex_lock(&sh->lock);
    e = hm_dir_get_locked(rt, sh, name, len, h);
    if (!reserve(e, true)) {
        pthread_mutex_unlock(&sh->lock);
        return HM_EFULL;
    }
    if (from)
        set_from(m, from);
    enqueue(rt, w, e, m);
    pthread_mutex_unlock(&sh->lock);
    HM_COUNT(rt, w, sent);
    return HM_OK;
}

hm_err hm_runtime_send_name(hm_runtime *rt, const char *name, hm_msg *msg)
{
    return send_name_from(rt, hm_sched_self(rt), NULL, name, msg, false);
}

hm_err hm_ctx_send(hm_ctx *ctx, hm_addr *to, hm_msg *msg)
{
    return send_from(ctx->rt, ctx->w, ctx->self, to, msg);
}

hm_err hm_ctx_send_name(hm_ctx *ctx, const char *name, hm_msg *msg)
{
    return send_name_from(ctx->rt, ctx->w, ctx->self, name, msg, false);
}

static hm_err intern(hm_runtime *rt, const char *name, bool internal,
                     hm_addr **out)
{
    size_t len;
    uint32_t h;
    hm_shard *sh;

    if (!name_ok(name, internal, &len, &h))
        return HM_EINVAL;
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    sh = hm_dir_shard(rt, h);
    pthread_mutex_lock(&sh->lock);
    *out = hm_addr_ref(hm_dir_get_locked(rt, sh, name, len, h));
    pthread_mutex_unlock(&sh->lock);
    return HM_OK;
}

hm_err hm_runtime_intern(hm_runtime *rt, const char *name, hm_addr **out)
{
    return intern(rt, name, false, out);
}

/* ---------------------------------------------------- activation state */

static void set_flags(hm_addr *e, uint32_t on, uint32_t off)
{
    /* relaxed: the flags are hints for the sweeper and spawn; ordering for
     * reclamation comes from the mailbox's park/claim pair. */
    uint32_t s = atomic_load_explicit(&e->sflags, memory_order_relaxed);

    /* One RMW, and none when nothing changes: an activation used to pay
     * three locked instructions here, each draining the stores that had
     * just initialised the entry. The sweeper's fetch_or (IDLECHK) and
     * hm_runtime_wake's CAS may race us: the CAS retries. */
    while (((s | on) & ~off) != s &&
           !atomic_compare_exchange_weak_explicit(&e->sflags, &s,
                                                  (s | on) & ~off,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

static void stamp(hm_runtime *rt, hm_addr *e)
{
    /* relaxed: a coarse clock for the sweeper. */
    atomic_store_explicit(
        &e->last_epoch,
        atomic_load_explicit(&rt->epoch, memory_order_relaxed),
        memory_order_relaxed);
}

static void install(hm_runtime *rt, hm_addr *e, const hm_receiver *r)
{
    e->handler = r->handler;
    e->state = r->state;
    e->hooks = r->hooks;
    atomic_store_explicit(&e->limit,
                          r->mailbox_limit ? r->mailbox_limit
                                           : rt->cfg.mailbox_limit,
                          memory_order_relaxed);
    set_flags(e,
              ENT_ACTIVE | (r->pinned ? ENT_PINNED : 0) |
                  (r->runs_anywhere ? ENT_ANYWHERE : 0),
              r->runs_anywhere ? 0 : ENT_ANYWHERE);
    stamp(rt, e);
}


/* Ends the activation: the hook runs (and frees the state), outstanding
 * requests are dropped, and the entry is left with no activation. */
void hm_rt_deactivate(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                      hm_deactivate_reason why)
{
    const hm_hooks *hooks = e->hooks;
    void *state = e->state;

    /* Durable state is saved first (store.h); if that fails, the state
     * is not thrown away unless the runtime is closing. */
    if (hm_durable_is(e) && !hm_durable_save_on_exit(rt, ctx, e, why))
        return;
    e->handler = NULL;
    e->state = NULL;
    e->hooks = NULL;
    hm_req_drop_all(rt, e);
    atomic_store_explicit(&e->limit, rt->cfg.mailbox_limit,
                          memory_order_relaxed);
    set_flags(e, 0,
              ENT_ACTIVE | ENT_PINNED | ENT_PENDING | ENT_NEEDHOOK |
                  ENT_RAWREPLY);
    if (hooks && hooks->deactivate)
        hooks->deactivate(ctx, state, why);
    HM_COUNT(rt, ctx->w, deactivations);
}

/* Runs a spawned receiver's activate hook; false if it refused. */
static bool run_activate_hook(hm_runtime *rt, hm_ctx *ctx, hm_addr *e)
{
    hm_err err;

    set_flags(e, 0, ENT_NEEDHOOK);
    if (hm_durable_is(e) && hm_durable_load(rt, ctx, e) != HM_OK) {
        hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_ERROR);
        return false;
    }
    if (!e->hooks || !e->hooks->activate)
        return true;
    if ((err = e->hooks->activate(ctx, e->state)) == HM_OK)
        return true;
    HM_LOG_WARN("RT-ACTIVATE-FAIL", "%s: activate hook failed: %s", e->name,
                hm_err_str(err));
    hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_ERROR);
    return false;
}

/* Activates `e` through the factory for message `m`. On false, `m` has
 * been dead-lettered. */
static bool activate(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m)
{
    hm_receiver r = {0};
    hm_err err = HM_ENOTFOUND;

    if (e->name[0] != '$' && rt->cfg.factory)
        err = rt->cfg.factory(rt->cfg.factory_arg, e->name, &r);
    if (err == HM_OK && !r.handler)
        err = HM_EINVAL;
    if (err != HM_OK) {
        hm_rt_dead_letter(rt, ctx->w, e, m, err);
        return false;
    }
    install(rt, e, &r);
    HM_COUNT(rt, ctx->w, activations);
    if (!run_activate_hook(rt, ctx, e)) {
        hm_rt_dead_letter(rt, ctx->w, e, m, HM_EHANDLER);
        return false;
    }
    return true;
}

void hm_rt_dead_letter(hm_runtime *rt, hm_worker *w, hm_addr *e, hm_msg *m,
                       hm_err reason)
{
    HM_COUNT(rt, w, dead_letters);
    if (rt->cfg.dead_letter)
        rt->cfg.dead_letter(rt->cfg.dead_letter_arg, e->name, m, reason);
    else
        HM_LOG_DEBUG("RT-DEAD-LETTER", "%s: %s message undeliverable: %s",
                     e->name, m->type->name, hm_err_str(reason));
    if ((m->flags & (MSG_REQUEST | MSG_REPLIED)) == MSG_REQUEST)
        hm_req_error_reply(rt, e, m, reason);
    hm_msg_destroy(m);
}

/* ----------------------------------------------------------------- turn */

/* What follows a handler call that failed, deactivated, held its message
 * or needs durable state written; destroys `m` unless it is held. */
static void after_handler(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m,
                          hm_err err)
{
    if (err == HM_OK && (hm_durable_is(e) || m->type == &hm_type_reminder))
        err = hm_durable_after(rt, ctx, e, m); /* write-through */
    if (err != HM_OK) {
        HM_COUNT(rt, ctx->w, handler_errors);
        HM_LOG_WARN("RT-HANDLER-FAIL", "%s: handler failed on %s: %s",
                    e->name, m->type->name, hm_err_str(err));
        if ((m->flags & (MSG_REQUEST | MSG_REPLIED)) == MSG_REQUEST)
            hm_req_error_reply(rt, e, m, HM_EHANDLER);
        hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_ERROR);
    } else if (ctx->deactivate && e->handler) {
        hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_REQUESTED);
    }
    ctx->deactivate = false;
    if (ctx->hold && err == HM_OK) {
        ctx->held = m; /* handled again first, after hm_runtime_wake() */
        return;
    }
    ctx->hold = false;
    hm_msg_destroy(m);
}

static inline void deliver(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                           hm_msg *m)
{
    bool reminder = m->type == &hm_type_reminder;
    hm_err err;

    /* A reminder's tick that was forgotten or replaced after it fired. */
    if (reminder && !hm_durable_reminder_due(rt, e, m)) {
        hm_msg_destroy(m);
        return;
    }
    ctx->delivered++; /* counted and stamped once per turn */
    err = e->handler(ctx, e->state, m);
    if (err != HM_OK || ctx->deactivate || ctx->hold || reminder ||
        hm_durable_is(e))
        after_handler(rt, ctx, e, m, err);
    else
        hm_msg_destroy(m);
}

static void handle_system(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m)
{
    switch (m->sys) {
    case SYS_IDLE_CHECK:
        set_flags(e, 0, ENT_IDLECHK);
        if (ctx->delivered)
            stamp(rt, e); /* a delivery earlier in this turn */
        if (e->handler && (!e->pending || e->pending->count == 0) &&
            !(atomic_load_explicit(&e->sflags, memory_order_relaxed) &
              ENT_PINNED) &&
            hm_rt_idle_expired(rt, e))
            hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_IDLE);
        break;
    case SYS_TIMEOUT:
        hm_req_handle_timeout(rt, ctx, e, m);
        return; /* consumed */
    case SYS_RETIRE:
        if (e->handler)
            hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_REQUESTED);
        break;
    }
    hm_msg_destroy(m);
}

static void handle_one(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m)
{
    if (m->flags & (MSG_SYSTEM | MSG_REPLY)) {
        if (m->flags & MSG_SYSTEM)
            handle_system(rt, ctx, e, m);
        else
            hm_req_handle_reply(rt, ctx, e, m);
        return;
    }
    if (!e->handler && !activate(rt, ctx, e, m))
        return;
    if ((atomic_load_explicit(&e->sflags, memory_order_relaxed) &
         ENT_NEEDHOOK) &&
        !run_activate_hook(rt, ctx, e)) {
        hm_rt_dead_letter(rt, ctx->w, e, m, HM_EHANDLER);
        return;
    }
    deliver(rt, ctx, e, m);
}

void hm_rt_deliver(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m)
{
    deliver(rt, ctx, e, m);
}

/* --------------------------------------------------------- the context */

hm_addr *hm_ctx_self(hm_ctx *ctx)
{
    return ctx->self;
}

hm_runtime *hm_ctx_runtime(hm_ctx *ctx)
{
    return ctx->rt;
}

uint64_t hm_ctx_now_ms(hm_ctx *ctx)
{
    return hm_rt_now_ms(ctx->rt);
}

void hm_ctx_become(hm_ctx *ctx, hm_handler_fn handler, void *state)
{
    HM_ASSERT(handler != NULL);
    ctx->self->handler = handler;
    ctx->self->state = state;
}

void *hm_ctx_state(hm_ctx *ctx)
{
    return ctx->self->state;
}

void hm_ctx_deactivate(hm_ctx *ctx)
{
    ctx->deactivate = true;
}

/* Ends a turn whose handler held a message (now at the front of its
 * mailbox): the entry stays unparked (senders only queue, and the held
 * message still counts against the mailbox bound, so they soon see
 * HM_EFULL) and off the run queues until hm_runtime_wake(). True if it is
 * held now; false if a wake came during the turn (run it again). */
static bool hold_entry(hm_addr *e)
{
    /* relaxed: the CAS below decides. */
    uint32_t s = atomic_load_explicit(&e->sflags, memory_order_relaxed);

    for (;;) {
        uint32_t next = s & ENT_WOKEN ? s & ~ENT_WOKEN : s | ENT_HELD;

        /* acq_rel: release publishes the mailbox's front and the
         * activation to the worker that hm_runtime_wake() schedules;
         * acquire pairs with its CAS. The other sflags writers are RMWs,
         * which continue the release sequence. */
        if (atomic_compare_exchange_weak_explicit(&e->sflags, &s, next,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return !(s & ENT_WOKEN);
    }
}

hm_err hm_runtime_wake(hm_runtime *rt, hm_addr *a)
{
    /* relaxed: the CAS below decides (and acquires). */
    uint32_t s = atomic_load_explicit(&a->sflags, memory_order_relaxed);

    for (;;) {
        if (s & ENT_HELD) {
            /* acq_rel: the winner of this CAS alone schedules it, and sees
             * the holding worker's writes. */
            if (atomic_compare_exchange_weak_explicit(
                    &a->sflags, &s, s & ~ENT_HELD, memory_order_acq_rel,
                    memory_order_relaxed)) {
                hm_sched_schedule(rt, a);
                return HM_OK;
            }
        } else if (!(s & ENT_WOKEN)) {
            /* Running or idle: its next hold retries at once. */
            if (atomic_compare_exchange_weak_explicit(
                    &a->sflags, &s, s | ENT_WOKEN, memory_order_acq_rel,
                    memory_order_relaxed))
                return HM_OK;
        } else {
            return HM_OK; /* already woken */
        }
    }
}

void hm_ctx_hold(hm_ctx *ctx)
{
    ctx->hold = true;
}

/* Ends a turn's bookkeeping while `e` is still ours: the consumer's end,
 * kept in `tail` during the turn, goes back to the mailbox (before
 * anything after which another thread may pop or park it: a park, a hold,
 * a requeue, the close), the deliveries are counted and stamped, and `n`
 * taken messages come off `queued`. */
static inline void end_turn(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                            hm_node *tail, uint32_t n)
{
    hm_mailbox_set_tail(&e->mb, tail);
    if (ctx->delivered) {
        stamp(rt, e);
        counter_add(&ctx->w->st.delivered, ctx->delivered);
        ctx->delivered = 0;
    }
    if (n)
        /* seq_cst: a Dekker pair with a room waiter (hm_room_drained);
         * a locked subtraction either way on x86. */
        hm_room_drained(rt, e, atomic_fetch_sub(&e->queued, n) - n);
}

/* After e's message: true if e parked, its mailbox empty. `*q` is what
 * `queued` said of the messages not yet taken off it (`*settled` of the
 * `n` taken so far were). Once all of them are handled, the count is
 * settled and, if nothing came meanwhile, the mailbox parked without a
 * second pop (`tail` is the turn's consumer end, stored back first). If
 * the message woke a receiver (w->next), it inherits e's count in busy and
 * runs next on this worker; otherwise it is counted and scheduled now, as
 * more of e's turn is coming. */
static inline bool park_early(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                              hm_node *tail, uint32_t n, uint32_t *settled,
                              uint32_t *q)
{
    if (n - *settled == *q) {
        /* seq_cst: a count (the park below is what decides), and a
         * Dekker pair with a room waiter, as in end_turn(). */
        *q = atomic_fetch_sub(&e->queued, n - *settled) - (n - *settled);
        *settled = n;
        hm_room_drained(rt, e, *q);
        if (*q == 0) {
            end_turn(rt, ctx, e, tail, 0);
            if (hm_mailbox_park(&e->mb)) {
                if (!ctx->w->next)
                    hm_rt_busy_dec(rt);
                return true;
            }
        }
    }
    hm_sched_flush(rt, ctx->w);
    return false;
}

/* One turn of `e` (ctx->self) on ctx->w: up to `batch` messages. True if
 * `e` parked and handed the receiver its last message woke over to this
 * worker (w->next). */
static inline bool turn(hm_runtime *rt, hm_ctx *ctx, hm_addr *e)
{
    hm_worker *w = ctx->w;
    uint32_t n = 0, settled = 0;
    /* relaxed: a count for the high-water mark and a hint for parking. */
    uint32_t q = atomic_load_explicit(&e->queued, memory_order_relaxed);
    bool held = false;
    /* The consumer's end stays in a local for the turn (ADR 0185): the
     * mailbox's `tail` shares the line every sender exchanges `head` on.
     * Every way out of the turn stores it back (end_turn). */
    hm_node *tail = hm_mailbox_tail(&e->mb);

    if (q > atomic_load_explicit(&w->st.hwm, memory_order_relaxed))
        atomic_store_explicit(&w->st.hwm, q, memory_order_relaxed);
    for (;;) {
        hm_node *node;

        if (n == rt->batch) {
            if (!hm_sched_alone(rt, w))
                break;
            /* Nothing else to run here: another batch, same worker. */
            end_turn(rt, ctx, e, tail, n - settled);
            n = settled = 0;
            /* relaxed: as at the start of the turn. */
            q = atomic_load_explicit(&e->queued, memory_order_relaxed);
        }
        if (!(node = hm_mailbox_pop_at(&e->mb, &tail)))
            break;
        if (hm_rt_unbatch(rt, &tail, (hm_msg *)node))
            continue; /* its messages are at the front now */
        n++;
        handle_one(rt, ctx, e, (hm_msg *)node);
        ctx->hold = false; /* a hold outside a handler means nothing */
        if (ctx->held) {   /* back in front; it stays counted in `queued` */
            hm_mailbox_unpop_at(&tail, &ctx->held->node);
            held = true;
            n--;
        }
        /* relaxed: closing is also told by the workers' acquire load. */
        if (atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
            /* Closing: leave the rest (and a held message, the oldest)
             * queued for hm_runtime_destroy(), which dead-letters them. */
            hm_sched_flush(rt, w);
            end_turn(rt, ctx, e, tail, n - settled);
            return false;
        }
        if (held) {
            hm_sched_flush(rt, w);
            break;
        }
        if (park_early(rt, ctx, e, tail, n, &settled, &q))
            return w->next != NULL; /* `e` is not ours to touch now */
    }
    end_turn(rt, ctx, e, tail, n - settled);
    if (held) {
        if (!hold_entry(e))
            hm_sched_requeue(rt, w, e);
        return false;
    }
    if (n < rt->batch && hm_mailbox_park(&e->mb)) {
        hm_rt_busy_dec(rt);
        return false; /* parked: from here on, `e` is not ours to touch */
    }
    hm_sched_requeue(rt, w, e);
    return false;
}

void hm_rt_run_entry(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    hm_ctx ctx = {.rt = rt, .w = w};

    /* A receiver handed over at park runs here at once, when the worker's
     * loop would run it next anyway (hm_sched_take_handoff). */
    do
        ctx.self = e;
    while (turn(rt, &ctx, e) && (e = hm_sched_take_handoff(w)));
}

/* ---------------------------------------------------------------- spawn */

hm_err hm_rt_spawn(hm_runtime *rt, const char *name, const hm_receiver *r,
                   bool internal, hm_addr **out)
{
    size_t len;
    uint32_t h;
    hm_shard *sh;
    hm_addr *e;
    hm_err err = HM_OK;

    if (!r || !r->handler || !name_ok(name, internal, &len, &h))
        return HM_EINVAL;
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    sh = hm_dir_shard(rt, h);
    pthread_mutex_lock(&sh->lock);
    e = hm_dir_get_locked(rt, sh, name, len, h);
    if (atomic_load_explicit(&e->sflags, memory_order_relaxed) & ENT_ACTIVE)
        err = HM_EEXIST;
    else if (!hm_mailbox_claim(&e->mb))
        err = HM_EAGAIN; /* messages are activating it through the factory */
    if (err == HM_OK) {
        /* We own the entry as if we were its worker. */
        install(rt, e, r);
        set_flags(e, ENT_NEEDHOOK, 0);
        if (out)
            *out = hm_addr_ref(e);
        HM_COUNT(rt, hm_sched_self(rt), activations);
        if (!hm_mailbox_park(&e->mb))
            hm_sched_wake(rt, hm_sched_self(rt), e);
    }
    pthread_mutex_unlock(&sh->lock);
    return err;
}

hm_err hm_runtime_spawn(hm_runtime *rt, const char *name,
                        const hm_receiver *r, hm_addr **out)
{
    return hm_rt_spawn(rt, name, r, false, out);
}
