/* runtime/sched.c: the scheduler: a fixed pool of worker threads, each with
 * its own run queue, stealing from each other when idle.
 *
 * The shape follows Go's scheduler, which measured best here (see
 * docs/adr/0001): each worker owns a bounded FIFO ring that only it appends
 * to and that anyone may take from the front of with one CAS, so a steal
 * grabs half of a victim's ring in O(1) CAS operations whatever the queue
 * length (CAF 0.17's O(n) steal went quadratic when one actor spawned many).
 * A receiver woken by a receiver goes into the waker's `runnext` slot and
 * runs next on the same worker: a ping-pong pair or a token ring then never
 * crosses threads, which matters on this VM where waking a sleeping thread
 * costs 8-17 us and a hand-off between spinning threads 0.2 us. Thieves leave
 * `runnext` alone until they have spun a while. A wake waits in the
 * worker-private `next` until the waking message ends: if that turn then
 * parks, the woken receiver takes over its count in `busy` and runs at once
 * without touching `runnext` (docs/adr/0195). Receivers woken from outside
 * (timers, I/O threads, main) go to a global queue.
 *
 * Idle workers spin (stealing) for up to SPIN_NS before they sleep on one
 * condition variable (unless the process has one core: docs/adr/0235);
 * a worker whose spins keep finding nothing spins less (docs/adr/0250). A producer wakes a sleeper only when no worker is
 * spinning and there is work beyond what the current worker will run next;
 * the sleeper counts and the queues are checked Dekker-style through seq_cst
 * read-modify-writes on both sides, and the signal is sent after taking
 * the sleep lock (which a sleeper holds from counting itself until it
 * waits), so a wake-up can never be lost. */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

#define SPIN_NS 50000u      /* spin this long before sleeping */
#define SPIN_MIN_NS (SPIN_NS / 16u) /* after idle spins that found nothing */
#define STALE_NS 2000u      /* a ring untouched this long may be stolen */
#define GLOBAL_EVERY 61u    /* check the global queue every N turns */
#define GQ_GRAB 32u         /* receivers moved from global per visit */
#define RUNNEXT_STREAK 32u  /* runnext turns in a row before the ring's */

/* The worker (or guest) this thread is, if any: rt_impl.h reads it in
 * hm_sched_self(); only this file sets it. */
_Thread_local hm_worker *hm_sched_tl_worker;


static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ------------------------------------------------------------ run queue */

static uint32_t runq_size(hm_runq *q)
{
    /* relaxed: a hint for wake-up decisions only. */
    uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    return t - h;
}

/* Owner only. False if the ring is full. */
static bool runq_put(hm_runq *q, hm_addr *e)
{
    /* acquire: pairs with the release CAS of head by consumers, so the slot
     * we overwrite has been read. */
    uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);

    if (t - h >= HM_RUNQ_SIZE)
        return false;
    atomic_store_explicit(&q->slot[t % HM_RUNQ_SIZE], e, memory_order_relaxed);
    /* release: pairs with the acquire loads of tail in runq_get() and
     * runq_grab(): a consumer that sees the new tail sees the slot. */
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    return true;
}

/* Owner or thief: takes one from the front. */
static hm_addr *runq_get(hm_runq *q)
{
    for (;;) {
        /* acquire: pairs with the release CAS below by other consumers. */
        uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        /* acquire: pairs with the release store of tail in runq_put(). */
        uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        hm_addr *e;

        if (h == t)
            return NULL;
        e = atomic_load_explicit(&q->slot[h % HM_RUNQ_SIZE],
                                 memory_order_relaxed);
        /* acq_rel: release tells runq_put() the slot is free; acquire
         * orders our slot read before another consumer's claim. */
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return e;
    }
}

/* Thief: takes half of the victim's ring into `buf`; returns the count. */
static uint32_t runq_grab(hm_runq *q, hm_addr **buf)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        uint32_t n = t - h;

        n -= n / 2;
        if (n == 0)
            return 0;
        if (n > HM_RUNQ_SIZE / 2)
            continue; /* inconsistent snapshot: the owner moved on */
        for (uint32_t i = 0; i < n; i++)
            buf[i] = atomic_load_explicit(&q->slot[(h + i) % HM_RUNQ_SIZE],
                                          memory_order_relaxed);
        /* acq_rel: as in runq_get(). */
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + n,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return n;
    }
}

static void notify(hm_runtime *rt);

/* --------------------------------------------------------- global queue */

/* The global queue is a ring whose capacity is a power of two, so an index
 * wraps with a mask: a `%` by a variable was a division per receiver, 5%
 * of `create`'s samples when a parent's wakes spilled (docs/adr/0285). */
static void gq_push_many(hm_runtime *rt, hm_addr **es, uint32_t n)
{
    uint32_t mask;

    pthread_mutex_lock(&rt->gq_lock);
    if (rt->gq_count + n > rt->gq_cap) {
        uint32_t ncap = rt->gq_cap ? rt->gq_cap : 256;
        while (ncap < rt->gq_count + n)
            ncap *= 2;
        hm_addr **q = hm_alloc(ncap * sizeof *q);
        for (uint32_t i = 0; i < rt->gq_count; i++)
            q[i] = rt->gq[(rt->gq_head + i) & (rt->gq_cap - 1)];
        hm_free(rt->gq);
        rt->gq = q;
        rt->gq_cap = ncap;
        rt->gq_head = 0;
    }
    mask = rt->gq_cap - 1;
    for (uint32_t i = 0; i < n; i++)
        rt->gq[(rt->gq_head + rt->gq_count + i) & mask] = es[i];
    rt->gq_count += n;
    /* relaxed would do (the lock orders it); notify() does the pairing. */
    atomic_store(&rt->gq_size, rt->gq_count);
    pthread_mutex_unlock(&rt->gq_lock);
}

static void gq_push(hm_runtime *rt, hm_addr *e)
{
    gq_push_many(rt, &e, 1);
}

/* Takes up to `max` receivers; returns the count. */
static uint32_t gq_take(hm_runtime *rt, hm_addr **buf, uint32_t max)
{
    uint32_t n;

    /* relaxed: a cheap peek; the lock below is authoritative. */
    if (atomic_load_explicit(&rt->gq_size, memory_order_relaxed) == 0)
        return 0;
    pthread_mutex_lock(&rt->gq_lock);
    n = rt->gq_count < max ? rt->gq_count : max;
    for (uint32_t i = 0; i < n; i++) {
        buf[i] = rt->gq[rt->gq_head];
        rt->gq_head = (rt->gq_head + 1) & (rt->gq_cap - 1);
    }
    rt->gq_count -= n;
    atomic_store(&rt->gq_size, rt->gq_count);
    pthread_mutex_unlock(&rt->gq_lock);
    return n;
}

hm_addr *hm_sched_take_global(hm_runtime *rt)
{
    hm_addr *e;
    return gq_take(rt, &e, 1) ? e : NULL;
}

/* --------------------------------------------------------------- waking */

static void notify(hm_runtime *rt)
{
    /* seq_cst RMWs that add nothing, rather than fences (which TSan cannot
     * check): a worker's own RMW on `spinning` (leaving) or `sleepers`
     * (going to sleep) either comes later in that variable's modification
     * order, reads from ours and so synchronizes with it (it will see the
     * work we published before this call), or comes earlier, and then we
     * read its effect here and act on it. */
    if (atomic_fetch_add(&rt->spinning, 0) > 0)
        return;
    if (atomic_fetch_add(&rt->sleepers, 0) == 0)
        return;
    /* The sleeper counted itself under sleep_lock and holds it until it
     * waits, so once we have had the lock it is waiting (or awake): the
     * signal can follow the unlock. Signalled under the lock, the woken
     * thread blocked at once on the lock we still held, two more futex
     * calls and context switches per wake (docs/adr/0285). */
    pthread_mutex_lock(&rt->sleep_lock);
    pthread_mutex_unlock(&rt->sleep_lock);
    pthread_cond_signal(&rt->sleep_cond);
}

static bool any_work(hm_runtime *rt)
{
    if (atomic_load(&rt->gq_size) > 0)
        return true;
    for (int i = 0; i < rt->nworkers; i++) {
        hm_worker *v = &rt->workers[i];
        if (runq_size(&v->q) > 0 ||
            atomic_load_explicit(&v->runnext, memory_order_relaxed))
            return true;
    }
    return false;
}

/* The ring is full: moves half of it, plus `e`, to the global queue under
 * one lock acquisition (as Go's runqputslow does), so a receiver that wakes
 * thousands of others pays one lock per RUNQ_SIZE/2 of them. */
static void spill(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    hm_addr *buf[HM_RUNQ_SIZE / 2 + 1];
    uint32_t n = runq_grab(&w->q, buf);

    buf[n++] = e;
    gq_push_many(rt, buf, n);
}

/* Puts a receiver on worker `w`'s ring. Wakes another worker only when the
 * ring goes from one receiver to two: one receiver is what this worker runs
 * next anyway, and a larger ring has already had its wake-up. */
static void put_local(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    if (w->index < 0) { /* a guest's ring is nobody's to steal: global */
        gq_push(rt, e);
        notify(rt);
        return;
    }
    if (!runq_put(&w->q, e)) {
        spill(rt, w, e);
        notify(rt);
        return;
    }
    if (runq_size(&w->q) == 2)
        notify(rt);
}

/* Owner: e runs next on w; the receiver it displaces goes to the ring. */
static void set_runnext(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    /* acq_rel: release publishes e to a thief that swaps runnext; acquire
     * takes ownership of the displaced one. */
    hm_addr *old = atomic_exchange_explicit(&w->runnext, e,
                                            memory_order_acq_rel);
    if (old)
        put_local(rt, w, old);
}

static void schedule_on(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    if (!w || rt->manual) {
        gq_push(rt, e);
        if (!rt->manual)
            notify(rt);
        return;
    }
    set_runnext(rt, w, e);
}

void hm_sched_schedule(hm_runtime *rt, hm_addr *e)
{
    schedule_on(rt, hm_sched_self(rt), e);
}

static void busy_inc(hm_runtime *rt)
{
    /* seq_cst: counted before the receiver can run and park (and call
     * hm_rt_busy_dec, the Dekker pair of hm_runtime_wait_idle). */
    atomic_fetch_add(&rt->busy, 1);
}

/* A wake on worker `w`: a park it owes (hm_worker.busy_owed) is still in
 * busy, so it stands for the woken receiver and busy is left alone. */
static void busy_inc_on(hm_runtime *rt, hm_worker *w)
{
    if (w->busy_owed > 0)
        w->busy_owed--;
    else
        busy_inc(rt);
}

/* Pays what `w` owes busy: before it looks for work beyond its own
 * queues, so a worker never spins or sleeps owing (and wait_idle sees
 * zero as soon as every receiver is parked and the workers are out of
 * work). */
static void busy_settle(hm_runtime *rt, hm_worker *w)
{
    if (w->busy_owed > 0) {
        int64_t n = w->busy_owed;
        w->busy_owed = 0;
        hm_rt_busy_sub(rt, n);
    }
}

void hm_sched_wake_slow(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    /* A guest (hm_runtime_send_here) never hands off: what it woke goes
     * through its runnext, where run_guest() checks it may run there. */
    if (w && w->index >= 0 && !rt->manual) {
        /* A second wake in one message: the older one goes to the ring,
         * as it would if both had gone through runnext. */
        if (w->next) {
            busy_inc_on(rt, w);
            put_local(rt, w, w->next);
        }
        w->next = e;
        return;
    }
    busy_inc(rt);
    schedule_on(rt, w, e);
}

void hm_sched_flush_slow(hm_runtime *rt, hm_worker *w)
{
    hm_addr *e = w->next;

    w->next = NULL;
    busy_inc_on(rt, w);
    set_runnext(rt, w, e);
}

bool hm_sched_alone(hm_runtime *rt, hm_worker *w)
{
    /* relaxed: hints; a receiver scheduled just after this check waits
     * one more batch, or is stolen by an idle worker meanwhile. */
    return !rt->manual && w->index >= 0 && !w->next &&
           !atomic_load_explicit(&w->runnext, memory_order_relaxed) &&
           runq_size(&w->q) == 0 &&
           atomic_load_explicit(&rt->gq_size, memory_order_relaxed) == 0;
}

void hm_sched_requeue(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    /* A receiver whose turn ended with messages left goes behind the
     * receivers waiting in the global queue, when there are any, not
     * ahead of them on the ring: a parent that wakes more children per
     * turn than the ring holds spills the oldest to the global queue,
     * which this worker visits only every GLOBAL_EVERY turns while its
     * ring has work; requeued on the ring, the parent overtook its own
     * children turn after turn, and in `create` 750,000 of them waited
     * with their first messages (48 MB of them) gone cold. Behind them,
     * it runs again once the children it woke have run (docs/adr/0285).
     * Only a worker: it is awake and will reach the global queue itself,
     * so no sleeper needs a notify. A guest (hm_runtime_send_here) goes
     * through put_local, which pushes there and notifies. */
    if (rt->manual) {
        gq_push(rt, e);
        return;
    }
    if (w->index >= 0 &&
        atomic_load_explicit(&rt->gq_size, memory_order_relaxed) > 0) {
        gq_push(rt, e);
        return;
    }
    put_local(rt, w, e);
}

/* --------------------------------------------------------------- guests */

bool hm_runtime_workers_idle(hm_runtime *rt)
{
    /* relaxed: a hint; the answer may be stale by the time it is used,
     * which costs a wake-up or a turn on the guest, never correctness. */
    return !rt->manual &&
           atomic_load_explicit(&rt->spinning, memory_order_relaxed) == 0 &&
           atomic_load_explicit(&rt->sleepers, memory_order_relaxed) ==
               rt->nworkers;
}

bool hm_runtime_has_spare_core(hm_runtime *rt)
{
    return rt->spin; /* set once, before any thread starts */
}

/* Whether a guest may run e's turn: an active receiver that said its
 * handler never blocks, whose activate hook has run (activating may load
 * state, and a factory may block). */
static bool guest_may_run(hm_addr *e)
{
    /* relaxed: the flags were set by the worker that activated `e`, before
     * the park that our schedule of `e` follows (the mailbox's pair). */
    uint32_t f = atomic_load_explicit(&e->sflags, memory_order_relaxed);

    return (f & (ENT_ACTIVE | ENT_ANYWHERE | ENT_NEEDHOOK)) ==
           (ENT_ACTIVE | ENT_ANYWHERE);
}

/* The guest runs what it made runnable, runnext first, up to `turns`
 * turns; what is left (or may not run here) goes to the global queue,
 * waking a worker. The guest is not in rt->workers, so no thief ever sees
 * its runnext. */
static void run_guest(hm_runtime *rt, hm_worker *g, uint32_t turns)
{
    hm_addr *e;

    while ((e = atomic_exchange_explicit(&g->runnext, NULL,
                                         memory_order_relaxed))) {
        if (turns == 0 || !guest_may_run(e)) {
            gq_push(rt, e);
            notify(rt);
            return;
        }
        turns--;
        hm_rt_run_entry(rt, g, e);
    }
}

hm_err hm_runtime_send_here(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                            uint32_t max_turns)
{
    hm_worker g; /* its ring is never used */
    hm_err err;

    if (rt->manual || max_turns == 0 || hm_sched_tl_worker)
        return hm_runtime_send(rt, to, msg);
    memset(&g, 0, sizeof g); /* no hand-off (next), no turns counted */
    g.rt = rt;
    g.index = -1;
    atomic_init(&g.runnext, NULL);
    /* from here, schedules by this thread go to g */
    hm_sched_tl_worker = &g;
    err = hm_runtime_send(rt, to, msg);
    if (err == HM_OK)
        run_guest(rt, &g, max_turns);
    hm_sched_tl_worker = NULL;
    hm_rt_fold_counters(rt, &g.st); /* g's counts, before g is gone */
    return err;
}

/* -------------------------------------------------------------- workers */

/* Whether thief `w` may take from victim `vi`'s ring now: only once the
 * ring's two ends have stayed where they are for STALE_NS, that is, once
 * its owner has neither taken from it nor added to it for that long (it is
 * in a long turn that wakes nobody, blocked, descheduled or asleep). An
 * owner that is draining its ring, or filling it, keeps it: in `create` a
 * parent wakes a thousand children in one turn, each a few hundred
 * nanoseconds of work, and a thief that took half of them moved every
 * child's entry and first message to the other core, and its reply and
 * the release of its sender back, dearer than running them where they
 * were woken (docs/adr/0285). Heavy receivers still spread: the owner is
 * inside one of them for longer than STALE_NS. No worker goes to sleep
 * while any ring holds receivers (any_work), so a thief keeps looking
 * until it may take. STALE_NS stays under SPIN_MIN_NS, so even a short
 * spin can. */
static bool ring_stale(hm_worker *w, int vi, const hm_runq *q, uint64_t now)
{
    hm_steal_look *l = &w->looks[vi];
    /* relaxed: hints; runq_grab's CAS decides what is taken. */
    uint32_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);

    if (head == tail)
        return false; /* nothing to take */
    if (l->head != head || l->tail != tail || l->at_ns == 0) {
        l->head = head; /* moved since the last look: look again later */
        l->tail = tail;
        l->at_ns = now;
        return false;
    }
    return now - l->at_ns >= STALE_NS;
}

/* `now` is the caller's clock reading (hm_clock_now_ns). With
 * `take_runnext` (the thief has spun a while), rings are taken whatever
 * their age, and so is a runnext. */
static hm_addr *steal(hm_runtime *rt, hm_worker *w, bool take_runnext,
                      uint64_t now)
{
    hm_addr *buf[HM_RUNQ_SIZE / 2];
    int n = rt->nworkers;
    int start;

    w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
    start = (int)((w->rng >> 33) % (uint64_t)n);
    for (int k = 0; k < n; k++) {
        int vi = (start + k) % n;
        hm_worker *v = &rt->workers[vi];
        uint32_t got = 0;
        if (v == w)
            continue;
        if (take_runnext || ring_stale(w, vi, &v->q, now))
            got = runq_grab(&v->q, buf);
        if (got > 0) {
            for (uint32_t i = 1; i < got; i++)
                if (!runq_put(&w->q, buf[i]))
                    gq_push(rt, buf[i]);
            return buf[0];
        }
        if (take_runnext &&
            atomic_load_explicit(&v->runnext, memory_order_relaxed)) {
            /* acq_rel: pairs with the exchange in hm_sched_schedule(). */
            hm_addr *e = atomic_exchange_explicit(&v->runnext, NULL,
                                                  memory_order_acq_rel);
            if (e)
                return e;
        }
    }
    return NULL;
}

/* The first turn after `t` at which find_local must look at the global
 * queue or the ring first (hm_sched_take_handoff stops there). */
static uint32_t next_check(uint32_t t)
{
    uint32_t g = (t / GLOBAL_EVERY + 1) * GLOBAL_EVERY;
    uint32_t r = (t / RUNNEXT_STREAK + 1) * RUNNEXT_STREAK;
    return g < r ? g : r;
}

/* The receiver w->next that the last turn handed over (already counted in
 * busy) is, in effect, in runnext: it runs now unless the global queue or
 * the ring is due, and then it goes to runnext for real. */
static hm_addr *find_local(hm_runtime *rt, hm_worker *w)
{
    hm_addr *buf[GQ_GRAB];
    hm_addr *mine = w->next;
    hm_addr *e;
    uint32_t n, t;

    w->next = NULL;
    t = ++w->turns;
    w->check_at = next_check(t);
    if (t % GLOBAL_EVERY == 0 && gq_take(rt, &e, 1))
        goto other;
    /* A pair of receivers waking each other through runnext would never
     * let the ring run; after a streak, the ring goes first (Go lets
     * runnext inherit the time slice for the same reason). */
    if (t % RUNNEXT_STREAK == 0 && (e = runq_get(&w->q)))
        goto other;
    if (mine) {
        /* relaxed: only this worker stores a receiver into its runnext
         * (thieves only take it), so NULL stays NULL. */
        if (atomic_load_explicit(&w->runnext, memory_order_relaxed))
            set_runnext(rt, w, NULL); /* the older one to the ring */
        return mine;
    }
    if (atomic_load_explicit(&w->runnext, memory_order_relaxed)) {
        /* acq_rel: pairs with the exchange in hm_sched_schedule(). */
        e = atomic_exchange_explicit(&w->runnext, NULL, memory_order_acq_rel);
        if (e)
            return e;
    }
    if ((e = runq_get(&w->q)))
        return e;
    n = gq_take(rt, buf, GQ_GRAB);
    for (uint32_t i = 1; i < n; i++)
        if (!runq_put(&w->q, buf[i]))
            gq_push(rt, buf[i]);
    return n ? buf[0] : NULL;

other:
    if (mine)
        set_runnext(rt, w, mine);
    return e;
}

/* Spins (stealing) for up to w->spin_ns. The budget adapts, as an
 * adaptive mutex's does: a spin that finds work restores SPIN_NS, one that
 * times out halves the next, down to SPIN_MIN_NS. Work that comes in
 * bursts further apart than a spin (timers firing once a millisecond) then
 * stops costing a whole SPIN_NS of CPU per burst, while a stream of work
 * (fan-in, ping-pong across workers) keeps finding it within the spin and
 * keeps the full budget (docs/adr/0250). */
static hm_addr *spin_for_work(hm_runtime *rt, hm_worker *w)
{
    uint64_t start = hm_clock_now_ns();
    uint32_t limit = w->spin_ns;
    hm_addr *e = NULL;
    unsigned i = 0;

    atomic_fetch_add(&rt->spinning, 1);
    while (!atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
        uint64_t spun;
        if ((e = find_local(rt, w)))
            break;
        spun = hm_clock_now_ns() - start;
        if ((e = steal(rt, w, spun > SPIN_NS / 4, start + spun)))
            break;
        if (spun > limit)
            break;
        for (unsigned k = 0; k < 32; k++)
            cpu_relax();
        if (++i % 64 == 0)
            sched_yield();
    }
    /* seq_cst RMW: pairs with the RMW on spinning in notify(). */
    atomic_fetch_sub(&rt->spinning, 1);
    if (e)
        w->spin_ns = SPIN_NS;
    else if (limit / 2 >= SPIN_MIN_NS)
        w->spin_ns = limit / 2;
    /* If we found work and more is waiting, make sure someone looks. */
    if (e && any_work(rt))
        notify(rt);
    return e;
}

static void sleep_until_work(hm_runtime *rt)
{
    pthread_mutex_lock(&rt->sleep_lock);
    /* seq_cst RMW: pairs with the RMWs in notify(): either we see the
     * producer's work below, or it sees our increment and signals under
     * the lock, which we hold until we wait. */
    atomic_fetch_add(&rt->sleepers, 1);
    if (!any_work(rt) && !atomic_load(&rt->stopping))
        pthread_cond_wait(&rt->sleep_cond, &rt->sleep_lock);
    atomic_fetch_sub(&rt->sleepers, 1);
    pthread_mutex_unlock(&rt->sleep_lock);
}

static void *worker_main(void *arg)
{
    hm_worker *w = arg;
    hm_runtime *rt = w->rt;

    hm_sched_tl_worker = w;
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        hm_addr *e = hm_sched_take_handoff(w);
        if (!e)
            e = find_local(rt, w);
        if (!e)
            busy_settle(rt, w);
        if (!e)
            e = steal(rt, w, false, hm_clock_now_ns());
        if (!e && rt->spin)
            e = spin_for_work(rt, w);
        if (!e) {
            sleep_until_work(rt);
            continue;
        }
        hm_rt_run_entry(rt, w, e);
    }
    hm_sched_tl_worker = NULL;
    return NULL;
}

void hm_sched_init(hm_runtime *rt)
{
    int n = rt->manual ? 1 : rt->nworkers;

    hm_steal_look *looks = hm_calloc((size_t)n * (size_t)n, sizeof *looks);

    rt->workers = hm_calloc((size_t)n, sizeof *rt->workers);
    for (int i = 0; i < n; i++) {
        hm_worker *w = &rt->workers[i];
        w->rt = rt;
        w->index = i;
        w->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        w->check_at = next_check(0);
        w->spin_ns = SPIN_NS;
        w->looks = looks + (size_t)i * (size_t)n;
        atomic_init(&w->runnext, NULL);
        atomic_init(&w->q.head, 0);
        atomic_init(&w->q.tail, 0);
    }
    hm_rt_mutex_init(&rt->gq_lock);
    pthread_mutex_init(&rt->sleep_lock, NULL);
    pthread_cond_init(&rt->sleep_cond, NULL);
}

hm_err hm_sched_start(hm_runtime *rt)
{
    if (rt->manual)
        return HM_OK;
    for (int i = 0; i < rt->nworkers; i++) {
        int rc = pthread_create(&rt->workers[i].thread, NULL, worker_main,
                                &rt->workers[i]);
        if (rc != 0) {
            HM_LOG_ERROR("RT-THREAD", "cannot start worker %d: %s", i,
                         strerror(rc));
            rt->nworkers = i; /* stop joins only what started */
            return HM_ESYS;
        }
    }
    return HM_OK;
}

void hm_sched_stop(hm_runtime *rt)
{
    /* release: pairs with the acquire load in worker_main(). */
    atomic_store_explicit(&rt->stopping, true, memory_order_release);
    if (rt->manual)
        return;
    pthread_mutex_lock(&rt->sleep_lock);
    pthread_cond_broadcast(&rt->sleep_cond);
    pthread_mutex_unlock(&rt->sleep_lock);
    for (int i = 0; i < rt->nworkers; i++)
        pthread_join(rt->workers[i].thread, NULL);
}

void hm_sched_fini(hm_runtime *rt)
{
    hm_free(rt->gq);
    hm_free(rt->workers[0].looks); /* one block for every worker */
    hm_free(rt->workers);
    pthread_mutex_destroy(&rt->gq_lock);
    pthread_mutex_destroy(&rt->sleep_lock);
    pthread_cond_destroy(&rt->sleep_cond);
}

size_t hm_sched_run_manual(hm_runtime *rt)
{
    hm_worker *w = &rt->workers[0];
    hm_worker *saved = hm_sched_tl_worker;
    uint64_t before = atomic_load_explicit(&w->st.delivered,
                                           memory_order_relaxed);
    hm_addr *e;

    hm_sched_tl_worker = w;
    while ((e = hm_sched_take_global(rt)))
        hm_rt_run_entry(rt, w, e);
    hm_sched_tl_worker = saved;
    return (size_t)(atomic_load_explicit(&w->st.delivered,
                                         memory_order_relaxed) -
                    before);
}
