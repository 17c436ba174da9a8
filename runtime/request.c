/* runtime/request.c: request/reply with timeouts, without ever blocking a
 * worker.
 *
 * A request is an ordinary message flagged with a fresh id and the
 * requester's address. The requester remembers the id in its own pending
 * set (touched only during its turns, so no lock), and arms a timer that
 * will send it a system timeout message. Whichever of the reply and the
 * timeout reaches the requester first resolves the request (through the
 * continuation, or as a message to the handler); the other finds nothing
 * pending: a late reply goes to dead letters, a late timeout is dropped.
 *
 * Code outside the runtime waits through a hidden, pinned receiver
 * ("$call/N") whose handler hands the reply to the waiting thread under a
 * mutex and condition variable (docs/adr/0001 lists this lock). */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- pending */

static void pending_add(hm_addr *e, const hm_pending *p)
{
    hm_pending_set *s = e->pending;

    if (!s || s->count == s->cap) {
        uint32_t cap = s ? s->cap * 2 : 4;
        s = hm_realloc(s, sizeof *s + cap * sizeof s->items[0]);
        if (!e->pending)
            s->count = 0;
        s->cap = cap;
        e->pending = s;
    }
    if (s->count == 0)
        /* relaxed: a hint for the sweeper (see set_flags in runtime.c). */
        atomic_fetch_or_explicit(&e->sflags, ENT_PENDING,
                                 memory_order_relaxed);
    s->items[s->count++] = *p;
}

static bool pending_take(hm_addr *e, uint64_t req_id, hm_pending *out)
{
    hm_pending_set *s = e->pending;

    if (!s)
        return false;
    for (uint32_t i = 0; i < s->count; i++) {
        if (s->items[i].req_id != req_id)
            continue;
        *out = s->items[i];
        s->items[i] = s->items[--s->count];
        /* The set's memory stays until the activation ends: a receiver
         * that made one request usually makes another. */
        if (s->count == 0) /* relaxed: a hint, as where it is set */
            atomic_fetch_and_explicit(&e->sflags, ~(uint32_t)ENT_PENDING,
                                      memory_order_relaxed);
        return true;
    }
    return false;
}

void hm_req_drop_all(hm_runtime *rt, hm_addr *e)
{
    hm_pending_set *s = e->pending;

    if (!s)
        return;
    for (uint32_t i = 0; i < s->count; i++)
        hm_runtime_cancel_timer(rt, s->items[i].timer);
    hm_free(s);
    e->pending = NULL;
}

/* ------------------------------------------------------------ requests */

hm_err hm_ctx_request(hm_ctx *ctx, hm_addr *to, hm_msg *msg,
                      uint32_t timeout_ms, hm_reply_fn cont, void *arg,
                      uint64_t *req_id_out)
{
    hm_runtime *rt = ctx->rt;
    /* relaxed: ids need only be unique. */
    uint64_t id =
        atomic_fetch_add_explicit(&rt->next_req_id, 1, memory_order_relaxed) +
        1;
    hm_pending p = {.req_id = id, .cont = cont, .arg = arg};
    hm_err err;

    msg->flags |= MSG_REQUEST;
    msg->req_id = id;
    if ((err = hm_rt_send_from(rt, ctx->self, to, msg)) != HM_OK) {
        msg->flags &= ~(uint32_t)MSG_REQUEST;
        msg->req_id = 0;
        return err;
    }
    /* A one-shot timer without a message: fire() builds the timeout notice
     * (tag = request id) only if it ever fires. Closing: none needed. */
    if (hm_rt_arm(rt, ctx->self, NULL, timeout_ms, 0, id, &p.timer) != HM_OK)
        p.timer = 0;
    pending_add(ctx->self, &p);
    if (req_id_out)
        *req_id_out = id;
    return HM_OK;
}

static hm_err reply_to(hm_runtime *rt, hm_addr *self, hm_msg *request,
                       hm_msg *reply)
{
    hm_err err;

    if (!(request->flags & MSG_REQUEST) || (request->flags & MSG_REPLIED) ||
        !request->from)
        return HM_EINVAL;
    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    reply->flags |= MSG_REPLY;
    reply->req_id = request->req_id;
    if (self)
        hm_msg_set_from(reply, self);
    /* Replies bypass the mailbox bound: a requester must always learn the
     * outcome of its request. */
    if ((err = hm_rt_push(rt, request->from, reply, false)) != HM_OK)
        return err;
    HM_COUNT(rt, hm_sched_self(rt), sent);
    request->flags |= MSG_REPLIED;
    return HM_OK;
}

hm_err hm_ctx_reply(hm_ctx *ctx, hm_msg *request, hm_msg *reply)
{
    return reply_to(ctx->rt, ctx->self, request, reply);
}

hm_err hm_ctx_reply_error(hm_ctx *ctx, hm_msg *request, hm_err code)
{
    hm_msg *r = hm_msg_create(&hm_type_error, NULL, (uint64_t)code);
    hm_err err = hm_ctx_reply(ctx, request, r);

    if (err != HM_OK)
        hm_msg_destroy(r);
    return err;
}

void hm_req_error_reply(hm_runtime *rt, hm_addr *self, hm_msg *m,
                        hm_err code)
{
    hm_msg *r = hm_msg_create(&hm_type_error, NULL, (uint64_t)code);

    if (reply_to(rt, self, m, r) != HM_OK)
        hm_msg_destroy(r);
}

static void run_cont(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                     const hm_pending *p, hm_msg *m, hm_err err)
{
    HM_COUNT(rt, ctx->w, delivered);
    p->cont(ctx, e->state, m, err, p->arg);
    if (ctx->deactivate && e->handler)
        hm_rt_deactivate(rt, ctx, e, HM_DEACTIVATE_REQUESTED);
    ctx->deactivate = false;
    hm_msg_destroy(m);
}

void hm_req_handle_reply(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m)
{
    hm_pending p;
    hm_err err = HM_OK;

    /* relaxed: set before the request went out, whose push published it
     * (hm_runtime_call). */
    if (e->handler && (atomic_load_explicit(&e->sflags, memory_order_relaxed) &
                       ENT_RAWREPLY)) {
        hm_rt_deliver(rt, ctx, e, m); /* hm_runtime_call's waiter */
        return;
    }
    if (!e->handler || !pending_take(e, m->req_id, &p)) {
        /* The requester timed out, or its activation ended. */
        hm_rt_dead_letter(rt, ctx->w, e, m, HM_ETIMEDOUT);
        return;
    }
    hm_runtime_cancel_timer(rt, p.timer);
    if (!p.cont) {
        hm_rt_deliver(rt, ctx, e, m);
        return;
    }
    if (m->type == &hm_type_error)
        err = (hm_err)m->arg;
    run_cont(rt, ctx, e, &p, m, err);
}

void hm_req_handle_timeout(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                           hm_msg *m)
{
    hm_pending p;

    if (!e->handler || !pending_take(e, m->req_id, &p)) {
        hm_msg_destroy(m); /* the reply won the race */
        return;
    }
    if (p.cont) {
        run_cont(rt, ctx, e, &p, NULL, HM_ETIMEDOUT);
        hm_msg_destroy(m);
        return;
    }
    m->flags = MSG_REPLY;
    m->sys = 0;
    hm_rt_deliver(rt, ctx, e, m);
}

/* ------------------------------------------------- calls from outside */

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    hm_msg *reply; /* guarded by: lock */
    bool done;     /* guarded by: lock */
    uint64_t req_id;
    _Atomic int refs; /* the calling thread and the activation */
} waiter;

static void waiter_unref(waiter *w)
{
    /* acq_rel: the last owner sees every write of the other. */
    if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
        return;
    hm_msg_destroy(w->reply);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    hm_free(w);
}

static hm_err waiter_handle(hm_ctx *ctx, void *state, hm_msg *m)
{
    waiter *w = state;

    (void)ctx;
    if (!hm_msg_is_reply(m) || m->req_id != w->req_id)
        return HM_OK;
    pthread_mutex_lock(&w->lock);
    if (!w->done) {
        w->reply = hm_msg_move(m);
        w->done = true;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->lock);
    return HM_OK;
}

static void waiter_deactivate(hm_ctx *ctx, void *state,
                              hm_deactivate_reason why)
{
    (void)ctx;
    (void)why;
    waiter_unref(state);
}

static const hm_hooks waiter_hooks = {.deactivate = waiter_deactivate};

static void wait_reply(hm_runtime *rt, waiter *w, uint32_t timeout_ms)
{
    struct timespec ts;

    if (rt->manual) {
        hm_runtime_run_until_idle(rt);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->done &&
           pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&w->lock);
}

hm_err hm_runtime_deactivate(hm_runtime *rt, hm_addr *a)
{
    hm_msg *m;

    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    m = hm_msg_alloc();
    m->type = &hm_type_timeout; /* never seen by a handler */
    m->flags = MSG_SYSTEM;
    m->sys = SYS_RETIRE;
    return hm_rt_push(rt, a, m, false);
}

static void retire(hm_runtime *rt, hm_addr *a)
{
    hm_runtime_deactivate(rt, a);
    hm_addr_release(a);
}

hm_err hm_runtime_call(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                       uint32_t timeout_ms, hm_msg **reply_out)
{
    waiter *w;
    hm_addr *self;
    char name[40];
    hm_err err;
    hm_msg *reply;

    if (hm_sched_self(rt))
        return HM_EINVAL;
    w = hm_calloc(1, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&w->refs, 2);
    /* relaxed: ids need only be unique. */
    w->req_id = atomic_fetch_add_explicit(&rt->next_req_id, 1,
                                          memory_order_relaxed) +
                1;
    snprintf(name, sizeof name, "$call/%llu",
             (unsigned long long)atomic_fetch_add_explicit(
                 &rt->next_call_id, 1, memory_order_relaxed));
    err = hm_rt_spawn(rt, name,
                      &(hm_receiver){.handler = waiter_handle,
                                     .state = w,
                                     .hooks = &waiter_hooks,
                                     .pinned = true},
                      true, &self);
    if (err != HM_OK) {
        waiter_unref(w);
        waiter_unref(w);
        return err;
    }
    /* relaxed: published to the waiter's worker by the request's push. */
    atomic_fetch_or_explicit(&self->sflags, ENT_RAWREPLY,
                             memory_order_relaxed);
    msg->flags |= MSG_REQUEST;
    msg->req_id = w->req_id;
    if ((err = hm_rt_send_from(rt, self, to, msg)) != HM_OK) {
        msg->flags &= ~(uint32_t)MSG_REQUEST;
        msg->req_id = 0;
        retire(rt, self);
        waiter_unref(w);
        return err;
    }
    wait_reply(rt, w, timeout_ms);
    pthread_mutex_lock(&w->lock);
    reply = w->reply;
    w->reply = NULL;
    pthread_mutex_unlock(&w->lock);
    retire(rt, self);
    waiter_unref(w);
    if (!reply)
        return HM_ETIMEDOUT;
    *reply_out = reply;
    return HM_OK;
}
