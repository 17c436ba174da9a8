/* runtime/lifecycle.c: creating and closing a runtime, the timer thread,
 * timed delivery, statistics, and the deterministic manual mode.
 *
 * One timer thread fires the timer store (runtime/timer.c, under
 * timer_lock; docs/adr/0130) and also runs the directory sweeper between
 * timers (docs/adr/0001 explains why a thread of its own). It moves a batch
 * of due timers out of the store before sending any of them, so a send
 * never runs under the timer lock and a periodic timer that is always due
 * cannot spin the loop; consecutive fires to one receiver go as one
 * mailbox node (docs/adr/0180). A timer holds its receiver's address,
 * not its activation: firing is an ordinary send, which activates the
 * receiver again if it was deactivated meanwhile.
 *
 * Manual mode replaces both the workers and the timer thread with explicit
 * calls on the caller's thread (hm_runtime_run_until_idle,
 * hm_runtime_advance) and a clock that moves only when told to, so tests of
 * timing-dependent behaviour are exact and never sleep. */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/durable_impl.h"
#include "runtime/log.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_IDLE_MS 60000u
#define DEFAULT_BATCH 64u
#define RECLAIM_PERIOD_MS 1000u
#define FIRE_BATCH HM_RT_BATCH_MAX
#define INTAKE_CELLS 4096u /* arms waiting for the timer lock's holder */

/* ---------------------------------------------------------------- timers */

/* The message a timer delivers: its own, a periodic tick, or (a one-shot
 * armed without a message) a request's timeout notice, built only now
 * because most request timeouts are cancelled and never fire. */
static hm_msg *fired_msg(hm_timer_fire *f)
{
    hm_msg *m;

    if (f->msg)
        return f->msg;
    if (f->periodic)
        return hm_msg_create(&hm_type_tick, NULL, f->tag);
    m = hm_msg_alloc();
    m->type = &hm_type_timeout;
    m->flags = MSG_SYSTEM;
    m->sys = SYS_TIMEOUT;
    m->req_id = f->tag;
    return m;
}

/* Delivers f[0..n), all to one receiver with no mailbox limit, as one
 * batch (hm_rt_push_batch; `cache` is the firing thread's spare arrays). */
static void fire_run(hm_runtime *rt, hm_timer_fire *f, uint32_t n,
                     hm_batch **cache)
{
    hm_msg *ms[FIRE_BATCH];

    ms[0] = fired_msg(&f[0]); /* n >= 1 */
    for (uint32_t i = 1; i < n; i++)
        ms[i] = fired_msg(&f[i]);
    hm_rt_push_batch(rt, f[0].to, ms, n, cache);
    /* One RMW for the run: the arming thread takes a reference per timer
     * on the same line, so each RMW here is a transfer of it. */
    hm_dir_release_n(f[0].to, n);
}

/* Delivers a batch taken by take_due(), outside the timer lock. Timers
 * that fire one after the other for one receiver without a mailbox limit
 * go to it as one node; with a limit, each is pushed (and may be
 * refused) on its own. */
static void fire(hm_runtime *rt, hm_timer_fire *f, uint32_t n,
                 hm_batch **cache)
{
    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    bool closing = atomic_load_explicit(&rt->closing, memory_order_acquire);

    for (uint32_t i = 0; i < n;) {
        hm_addr *to = f[i].to;
        uint32_t run = 1;
        hm_msg *m;

        /* relaxed: the limit is advisory (see hm_rt_push). */
        if (!closing &&
            atomic_load_explicit(&to->limit, memory_order_relaxed) == 0) {
            while (i + run < n && f[i + run].to == to)
                run++;
            fire_run(rt, &f[i], run, cache);
            i += run;
            continue;
        }
        m = fired_msg(&f[i]);
        if (closing)
            hm_msg_destroy(m);
        else if (hm_rt_push(rt, to, m, !(m->flags & MSG_SYSTEM)) != HM_OK)
            hm_rt_dead_letter(rt, NULL, to, m, HM_EFULL);
        hm_addr_release(to);
        i++;
    }
    /* relaxed: a statistic, summed over every shard by stats_get. The
     * timer thread (or the manual clock's caller) is never a worker, so it
     * counts in an external shard, once per batch. */
    atomic_fetch_add_explicit(&rt->ext[0].timers_fired, n,
                              memory_order_relaxed);
}

/* Takes timer_lock and files the intake's arms first, so the store is
 * whole and an arm made now lands behind them (docs/adr/0250). */
static void timers_lock(hm_runtime *rt)
{
    pthread_mutex_lock(&rt->timer_lock);
    hm_timer_intake_drain(&rt->intake, &rt->timers, true);
}

/* Wakes the timer thread if it sleeps past `deadline`; the caller holds
 * timer_lock. */
static void signal_if_sooner(hm_runtime *rt, uint64_t deadline)
{
    /* relaxed: written under timer_lock, which we hold. */
    if (deadline <
        atomic_load_explicit(&rt->timer_wait_until, memory_order_relaxed))
        pthread_cond_signal(&rt->timer_cond);
}

hm_err hm_rt_arm(hm_runtime *rt, hm_addr *to, hm_msg *msg, uint32_t delay_ms,
                 uint32_t period_ms, uint64_t tag, hm_timer_id *id_out)
{
    uint64_t deadline;
    hm_timer_id id = 0;

    /* acquire: pairs with the release store in hm_runtime_destroy(). */
    if (atomic_load_explicit(&rt->closing, memory_order_acquire))
        return HM_ECLOSED;
    /* Never early: the deadline is the first millisecond tick at or after
     * the exact due time. now_ms + delay would let a timer armed late in a
     * millisecond fire up to 1 ms before its delay has passed. The manual
     * clock has no fraction of a millisecond. */
    if (rt->manual)
        deadline = hm_rt_now_ms(rt) + delay_ms;
    else
        deadline = (hm_clock_now_ns() + (uint64_t)delay_ms * 1000000u +
                    999999u) / 1000000u;
    /* A one-shot whose id nobody keeps can never be cancelled: it needs
     * no record (docs/adr/0180) and goes through the intake, without the
     * lock (docs/adr/0250), unless the intake is full. */
    if (!id_out && period_ms == 0 && msg) {
        hm_addr *ref = hm_addr_ref(to);
        if (hm_timer_intake_put(&rt->intake, deadline, ref, msg)) {
            /* seq_cst: after the claim's seq_cst RMW. Either the timer
             * thread's last drain before it sleeps sees our cell, or we
             * see the deadline it stored before that drain and wake it. */
            if (deadline < atomic_load(&rt->timer_wait_until)) {
                pthread_mutex_lock(&rt->timer_lock);
                signal_if_sooner(rt, deadline);
                pthread_mutex_unlock(&rt->timer_lock);
            }
            return HM_OK;
        }
        timers_lock(rt);
        hm_timers_arm_anon(&rt->timers, deadline, ref, msg);
    } else {
        timers_lock(rt);
        id = hm_timers_arm(&rt->timers, deadline, period_ms,
                           hm_addr_ref(to), msg, tag);
    }
    signal_if_sooner(rt, deadline);
    pthread_mutex_unlock(&rt->timer_lock);
    if (id_out)
        *id_out = id;
    return HM_OK;
}

hm_err hm_runtime_send_after(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                             uint32_t delay_ms, hm_timer_id *id_out)
{
    return hm_rt_arm(rt, to, msg, delay_ms, 0, 0, id_out);
}

hm_err hm_runtime_send_every(hm_runtime *rt, hm_addr *to, uint32_t period_ms,
                             uint64_t tag, hm_timer_id *id_out)
{
    if (period_ms == 0)
        return HM_EINVAL;
    return hm_rt_arm(rt, to, NULL, period_ms, period_ms, tag, id_out);
}

bool hm_runtime_cancel_timer(hm_runtime *rt, hm_timer_id id)
{
    hm_addr *to = NULL;
    hm_msg *msg = NULL;
    bool ok;

    if (id == 0)
        return false;
    pthread_mutex_lock(&rt->timer_lock);
    ok = hm_timers_cancel(&rt->timers, id, &to, &msg);
    pthread_mutex_unlock(&rt->timer_lock);
    if (ok) {
        hm_msg_destroy(msg);
        hm_addr_release(to);
    }
    return ok;
}

/* Moves up to FIRE_BATCH due timers out; caller holds timer_lock. */
static uint32_t take_due(hm_runtime *rt, uint64_t now, hm_timer_fire *out)
{
    return hm_timers_pop_due_n(&rt->timers, now, out, FIRE_BATCH);
}

static void abs_time(uint64_t deadline_ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(deadline_ms / 1000);
    ts->tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
}

static void *timer_main(void *arg)
{
    hm_runtime *rt = arg;
    hm_timer_fire fires[FIRE_BATCH];
    hm_batch *cache = NULL; /* this thread's spare batch arrays */

    pthread_mutex_lock(&rt->timer_lock);
    while (!rt->timer_stop) {
        uint64_t now, next;
        uint32_t n;
        struct timespec ts;

        /* Never waits for a claimed cell: its arming thread may have been
         * preempted between claiming and writing it. */
        hm_timer_intake_drain(&rt->intake, &rt->timers, false);
        now = hm_clock_now_ms();

        if (now >= rt->next_sweep_ms) {
            pthread_mutex_unlock(&rt->timer_lock);
            next = hm_dir_sweep_step(rt, now);
            pthread_mutex_lock(&rt->timer_lock);
            rt->next_sweep_ms = next;
            continue;
        }
        if ((n = take_due(rt, now, fires)) > 0) {
            pthread_mutex_unlock(&rt->timer_lock);
            fire(rt, fires, n, &cache);
            pthread_mutex_lock(&rt->timer_lock);
            continue;
        }
        next = rt->next_sweep_ms;
        uint64_t t;
        if (hm_timers_next(&rt->timers, &t) && t < next)
            next = t;
        /* seq_cst: the timer thread's half of the Dekker pair with an
         * intake claim (hm_rt_arm): store the deadline, then drain once
         * more; an arm this drain misses sees the deadline. */
        atomic_store(&rt->timer_wait_until, next);
        if (hm_timer_intake_drain(&rt->intake, &rt->timers, false) > 0) {
            /* relaxed: under timer_lock; awake, arming need not signal. */
            atomic_store_explicit(&rt->timer_wait_until, 0,
                                  memory_order_relaxed);
            continue;
        }
        if (!hm_timer_intake_idle(&rt->intake) && next > now + 1) {
            /* A cell claimed but not written: its arm will signal us if it
             * is sooner, but arms claimed after it and already checked the
             * wake time wait behind it; look again in a millisecond. */
            next = now + 1;
            /* relaxed: under timer_lock; only lowers it. */
            atomic_store_explicit(&rt->timer_wait_until, next,
                                  memory_order_relaxed);
        }
        abs_time(next, &ts);
        pthread_cond_timedwait(&rt->timer_cond, &rt->timer_lock, &ts);
        /* relaxed: under timer_lock; awake, arming need not signal. */
        atomic_store_explicit(&rt->timer_wait_until, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&rt->timer_lock);
    hm_rt_batch_cache_drop(rt, &cache);
    return NULL;
}

/* ----------------------------------------------------------- manual mode */

size_t hm_runtime_run_until_idle(hm_runtime *rt)
{
    HM_ASSERT(rt->manual);
    return hm_sched_run_manual(rt);
}

void hm_runtime_advance(hm_runtime *rt, uint64_t ms)
{
    uint64_t target = hm_rt_now_ms(rt) + ms;
    hm_timer_fire fires[FIRE_BATCH];
    hm_batch *cache = NULL;

    HM_ASSERT(rt->manual);
    for (;;) {
        uint64_t next, t;
        uint32_t n;

        hm_sched_run_manual(rt);
        timers_lock(rt);
        next = rt->next_sweep_ms;
        if (hm_timers_next(&rt->timers, &t) && t < next)
            next = t;
        if (next > target) {
            pthread_mutex_unlock(&rt->timer_lock);
            break;
        }
        if (next > hm_rt_now_ms(rt)) /* relaxed: as below */
            atomic_store_explicit(&rt->manual_now_ms, next,
                                  memory_order_relaxed);
        if (rt->next_sweep_ms <= next) {
            pthread_mutex_unlock(&rt->timer_lock);
            t = hm_dir_sweep_step(rt, next);
            pthread_mutex_lock(&rt->timer_lock);
            rt->next_sweep_ms = t;
            pthread_mutex_unlock(&rt->timer_lock);
            continue;
        }
        n = take_due(rt, next, fires);
        pthread_mutex_unlock(&rt->timer_lock);
        fire(rt, fires, n, &cache);
    }
    hm_rt_batch_cache_drop(rt, &cache);
    /* relaxed: the manual clock is driven by one test thread. */
    atomic_store_explicit(&rt->manual_now_ms, target, memory_order_relaxed);
    hm_sched_run_manual(rt);
}

/* ------------------------------------------------------------ statistics */

static void add_counters(hm_runtime_stats *s, hm_counters *c)
{
/* relaxed: statistics, exact only when the runtime is idle. */
#define LOAD(f) atomic_load_explicit(&c->f, memory_order_relaxed)
    s->sent += LOAD(sent);
    s->delivered += LOAD(delivered);
    s->activations += LOAD(activations);
    s->deactivations += LOAD(deactivations);
    s->dead_letters += LOAD(dead_letters);
    s->timers_fired += LOAD(timers_fired);
    s->handler_errors += LOAD(handler_errors);
    if (LOAD(hwm) > s->mailbox_hwm)
        s->mailbox_hwm = LOAD(hwm);
#undef LOAD
}

void hm_runtime_stats_get(hm_runtime *rt, hm_runtime_stats *out)
{
    int n = rt->manual ? 1 : rt->nworkers;

    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++)
        add_counters(out, &rt->workers[i].st);
    for (unsigned i = 0; i < HM_EXT_SHARDS; i++)
        add_counters(out, &rt->ext[i]);
    out->live = out->activations - out->deactivations;
    out->addresses = hm_dir_count(rt);
    hm_dir_bytes(rt, &out->entry_bytes, &out->table_bytes);
    out->send_waiting = hm_room_waiting(rt);
}

hm_err hm_runtime_wait_idle(hm_runtime *rt, uint32_t timeout_ms)
{
    struct timespec ts;
    hm_err err = HM_OK;

    if (rt->manual) {
        hm_sched_run_manual(rt);
        return HM_OK;
    }
    abs_time(hm_clock_now_ms() + timeout_ms, &ts);
    /* seq_cst: Dekker pair with hm_rt_busy_dec(). */
    atomic_fetch_add_explicit(&rt->idle_waiters, 1, memory_order_seq_cst);
    pthread_mutex_lock(&rt->idle_lock);
    while (atomic_load_explicit(&rt->busy, memory_order_seq_cst) != 0) {
        if (pthread_cond_timedwait(&rt->idle_cond, &rt->idle_lock, &ts) ==
                ETIMEDOUT &&
            atomic_load_explicit(&rt->busy, memory_order_seq_cst) != 0) {
            err = HM_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&rt->idle_lock);
    /* seq_cst: as above. */
    atomic_fetch_sub_explicit(&rt->idle_waiters, 1, memory_order_seq_cst);
    return err;
}

/* -------------------------------------------------------------- create */

void hm_rt_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;

    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static void init_cond_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

/* The cores this process may run on (taskset, cgroup cpusets), not the
 * machine's: a broker pinned to one core must not start two workers that
 * fight over it. */
static int usable_cores(void)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static hm_err start_threads(hm_runtime *rt)
{
    int rc;

    if (rt->manual)
        return HM_OK;
    rc = pthread_create(&rt->timer_thread, NULL, timer_main, rt);
    if (rc != 0) {
        HM_LOG_ERROR("RT-THREAD", "cannot start the timer thread: %s",
                     strerror(rc));
        return HM_ESYS;
    }
    rt->timer_started = true;
    return hm_sched_start(rt);
}

hm_err hm_runtime_create(const hm_runtime_config *cfg, hm_runtime **out)
{
    hm_runtime *rt;
    hm_err err;

    if (!cfg || cfg->threads < 0 || cfg->threads > 1024)
        return HM_EINVAL;
    rt = hm_calloc(1, sizeof *rt);
    rt->cfg = *cfg;
    rt->manual = cfg->manual;
    rt->nworkers = cfg->threads ? cfg->threads : usable_cores();
    if (rt->nworkers < 1)
        rt->nworkers = 1;
    rt->spin = usable_cores() > 1;
    rt->batch = cfg->batch ? cfg->batch : DEFAULT_BATCH;
    rt->idle_timeout_ms =
        cfg->idle_timeout_ms ? cfg->idle_timeout_ms : DEFAULT_IDLE_MS;
    rt->sweep_period_ms = rt->idle_timeout_ms == UINT32_MAX
                              ? RECLAIM_PERIOD_MS
                              : (rt->idle_timeout_ms + 7) / 8;
    hm_dir_init(rt);
    hm_room_init(rt);
    hm_sched_init(rt);
    hm_timers_init(&rt->timers, hm_rt_now_ms(rt));
    hm_timer_intake_init(&rt->intake, INTAKE_CELLS);
    hm_rt_mutex_init(&rt->timer_lock);
    init_cond_monotonic(&rt->timer_cond);
    pthread_mutex_init(&rt->idle_lock, NULL);
    init_cond_monotonic(&rt->idle_cond);
    pthread_mutex_init(&rt->types_lock, NULL);
    rt->pass_start_ms = hm_rt_now_ms(rt);
    rt->sweep_cursor = HM_DIR_SHARDS; /* the first pass starts in a period */
    rt->next_sweep_ms = rt->pass_start_ms + rt->sweep_period_ms;
    hm_runtime_register_type(rt, &hm_type_error);
    hm_runtime_register_type(rt, &hm_type_timeout);
    hm_runtime_register_type(rt, &hm_type_tick);
    hm_runtime_register_type(rt, &hm_type_json);
    if ((err = start_threads(rt)) != HM_OK ||
        (err = hm_durable_start(rt)) != HM_OK) {
        hm_runtime_destroy(rt);
        return err;
    }
    *out = rt;
    return HM_OK;
}

/* --------------------------------------------------------------- close */

static void close_entry(hm_runtime *rt, hm_addr *e)
{
    hm_ctx ctx = {.rt = rt, .w = NULL, .self = e, .deactivate = false};
    hm_node *tail = hm_mailbox_tail(&e->mb);
    hm_node *node;

    while ((node = hm_mailbox_pop_at(&e->mb, &tail))) {
        hm_msg *m = (hm_msg *)node;
        if (hm_rt_unbatch(rt, &tail, m))
            continue; /* each of its messages is dead-lettered below */
        if (m->flags & MSG_SYSTEM)
            hm_msg_destroy(m);
        else
            hm_rt_dead_letter(rt, NULL, e, m, HM_ECLOSED);
    }
    hm_mailbox_set_tail(&e->mb, tail);
    if (e->handler)
        hm_rt_deactivate(rt, &ctx, e, HM_DEACTIVATE_CLOSE);
}

static void stop_timer_thread(hm_runtime *rt)
{
    if (!rt->timer_started)
        return;
    pthread_mutex_lock(&rt->timer_lock);
    rt->timer_stop = true;
    pthread_cond_signal(&rt->timer_cond);
    pthread_mutex_unlock(&rt->timer_lock);
    pthread_join(rt->timer_thread, NULL);
}

void hm_runtime_destroy(hm_runtime *rt)
{
    hm_timer_fire f;

    if (!rt)
        return;
    HM_ASSERT(!hm_sched_self(rt)); /* a worker cannot join itself */
    /* release: pairs with the acquire loads in the send paths. */
    atomic_store_explicit(&rt->closing, true, memory_order_release);
    hm_room_close(rt); /* blocked senders return HM_ECLOSED */
    stop_timer_thread(rt);
    hm_sched_stop(rt);
    hm_dir_each(rt, close_entry);
    hm_timer_intake_drain(&rt->intake, &rt->timers, true); /* no thread left */
    hm_room_fini(rt);
    while (hm_timers_pop_due(&rt->timers, UINT64_MAX, &f)) {
        hm_msg_destroy(f.msg);
        hm_addr_release(f.to);
    }
    hm_durable_fini(rt);
    hm_dir_fini(rt);
    hm_timers_fini(&rt->timers);
    hm_timer_intake_fini(&rt->intake);
    hm_rt_batch_spares_fini(rt); /* after close_entry's unbatching */
    hm_sched_fini(rt);
    pthread_mutex_destroy(&rt->timer_lock);
    pthread_cond_destroy(&rt->timer_cond);
    pthread_mutex_destroy(&rt->idle_lock);
    pthread_cond_destroy(&rt->idle_cond);
    pthread_mutex_destroy(&rt->types_lock);
    hm_free(rt->types);
    hm_free(rt);
}
