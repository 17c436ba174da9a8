/* net/loop.c: the I/O threads, and the net that owns them.
 *
 * Each loop is one thread blocked in epoll_wait on its own epoll instance.
 * Other threads never touch a loop's sockets: they push a task (a
 * connection or a listener with work pending) on the loop's lock-free task
 * stack, and the pusher that finds the stack empty writes the loop's
 * eventfd, the one cross-thread wake-up in net/. The loop drains the
 * eventfd before it takes the stack, so a push that lands after the take
 * always finds the stack empty and wakes it again: no wake-up is lost, and a
 * burst of writes costs one eventfd write. Connection deadlines (connect
 * timeouts, close lingers, idle timeouts) live in a timing wheel
 * (timed.c), a paused listener in a short list; the epoll timeout is the
 * nearest one.
 * docs/adr/0010 says why net has threads of its own. */
#include "net/net_impl.h"

#include "runtime/alloc.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MAX_IO_THREADS 64
#define HM_LOOP_SLICE_NS 100000u /* 0.1 ms, the kernel's minimum */

/* The loop this thread runs (NULL on every other thread). */
static _Thread_local hm_loop *tl_loop;

uint64_t hm_loop_now_ms(void)
{
    return hm_clock_now_ms();
}

void hm_loop_schedule(hm_loop *loop, hm_task *task)
{
    /* relaxed: a first guess at the head; the release CAS below publishes. */
    hm_task *head = atomic_load_explicit(&loop->tasks, memory_order_relaxed);

    do {
        task->next = head;
        /* release: pairs with the acquire exchange in run_tasks(), which
         * then sees the task and everything written before the push. */
    } while (!atomic_compare_exchange_weak_explicit(
        &loop->tasks, &head, task, memory_order_release, memory_order_relaxed));
    /* The loop's own thread, before its task pass (an owner run inline,
     * ADR 0175, writing to a socket of this loop): the pass takes the
     * task, and waking ourselves would cost a write, an epoll_wait and a
     * read for nothing (ADR 0235). */
    if (head == NULL && !(tl_loop == loop && loop->tasks_pass_due)) {
        uint64_t one = 1;

        /* The counter cannot overflow (the loop resets it every wake), so
         * the only failure would be a closed fd: nothing to do then. */
        if (write(loop->wakefd, &one, sizeof one) < 0)
            HM_LOG_DEBUG("NET-WAKE-FAIL", "eventfd: %s", strerror(errno));
    }
}

hm_loop *hm_net_pick_loop(hm_net *net)
{
    /* relaxed: round-robin placement needs no ordering. */
    unsigned i =
        atomic_fetch_add_explicit(&net->next_loop, 1, memory_order_relaxed);

    return &net->loops[i % (unsigned)net->nloops];
}

void hm_loop_epoll_set(hm_loop *loop, int fd, hm_task *task, uint32_t *current,
                       uint32_t want)
{
    struct epoll_event ev = {.events = want, .data.ptr = task};
    int op;

    if (*current == want)
        return;
    op = *current == 0 ? EPOLL_CTL_ADD
                       : (want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    if (epoll_ctl(loop->epfd, op, fd, &ev) < 0)
        HM_LOG_ERROR("NET-EPOLL-FAIL", "epoll_ctl(%d) fd %d: %s", op, fd,
                     strerror(errno));
    *current = want;
}

/* Takes every pending task, oldest first, and runs it. */
static void run_tasks(hm_loop *loop)
{
    /* acquire: pairs with the release CAS in hm_loop_schedule(). */
    hm_task *t =
        atomic_exchange_explicit(&loop->tasks, NULL, memory_order_acquire);
    hm_task *fifo = NULL;

    loop->tasks_pass_due = false; /* a push from now on wakes us */

    while (t) {
        hm_task *next = t->next;

        t->next = fifo;
        fifo = t;
        t = next;
    }
    while (fifo) {
        hm_task *next = fifo->next;

        if (fifo->kind == TASK_CONN)
            hm_conn_run_task((hm_conn *)fifo);
        else
            hm_listener_run_task((hm_listener *)fifo);
        fifo = next;
    }
}

/* Fires due connection deadlines and listener pauses; returns the next
 * time one is due (UINT64_MAX: none). */
static uint64_t run_deadlines(hm_loop *loop, uint64_t now)
{
    uint64_t next = hm_loop_run_wheel(loop, now);

    hm_listener_on_deadline(loop, now, &next);
    return next;
}

static void drain_wakefd(hm_loop *loop)
{
    uint64_t count;

    /* Non-blocking: EAGAIN just means another wake-up read it. */
    if (read(loop->wakefd, &count, sizeof count) < 0 && errno != EAGAIN)
        HM_LOG_DEBUG("NET-WAKE-FAIL", "eventfd read: %s", strerror(errno));
}

/* epoll_wait's timeout for the deadline `next` (UINT64_MAX: none). Capped
 * at a minute so a clock oddity can never park a loop for long. */
static int poll_timeout(uint64_t next, uint64_t now)
{
    if (next == UINT64_MAX)
        return -1;
    if (next <= now)
        return 0;
    return next - now < 60000 ? (int)(next - now) : 60000;
}

/* Asks the kernel's fair scheduler (EEVDF, Linux 6.12 and later) for a
 * short time slice for this thread: a loop runs in short bursts, and a
 * short slice gives it an early deadline when it wakes, so it runs soon
 * on a core busy with longer tasks instead of waiting for their slices
 * to end (ADR 0235). Its share of the CPU is unchanged. Best effort:
 * older kernels ignore the field or refuse, and the loop runs as before. */
static void request_short_slice(void)
{
#if defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
    /* struct sched_attr (linux/sched/types.h, which clashes with glibc's
     * sched.h), as far as SCHED_OTHER uses it. */
    struct {
        uint32_t size, sched_policy;
        uint64_t sched_flags;
        int32_t sched_nice;
        uint32_t sched_priority;
        uint64_t sched_runtime, sched_deadline, sched_period;
    } a;

    memset(&a, 0, sizeof a);
    /* Only the slice changes: the nice value stays, and a thread the
     * operator gave another policy (batch, idle, real-time) is left be. */
    if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0 ||
        a.sched_policy != SCHED_OTHER)
        return;
    a.size = sizeof a;
    a.sched_flags = 0;
    a.sched_runtime = HM_LOOP_SLICE_NS;
    if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
        HM_LOG_DEBUG("NET-SLICE", "sched_setattr: %s", strerror(errno));
#endif
}

static void *loop_main(void *arg)
{
    hm_loop *loop = arg;
    struct epoll_event evs[MAX_EVENTS];
    uint64_t next = UINT64_MAX;

    tl_loop = loop;
    request_short_slice();
    /* acquire: pairs with the release store in hm_net_stop(). */
    while (!atomic_load_explicit(&loop->stopping, memory_order_acquire)) {
        int timeout = poll_timeout(next, hm_loop_now_ms());
        int n;

        /* relaxed: a heuristic; see hm_loop.direct_budget. */
        atomic_store_explicit(&loop->direct_budget, HM_LOOP_DIRECT_SENDS,
                              memory_order_relaxed);
        n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout);
        atomic_store_explicit(&loop->direct_budget, 0, memory_order_relaxed);
        /* With one core, a worker woken for the 17th frame only takes
         * the core from this thread, twice per frame (ADR 0235). */
        loop->inline_left = hm_runtime_has_spare_core(loop->net->rt)
                                ? HM_LOOP_INLINE_FRAMES
                                : UINT32_MAX;
        loop->tasks_pass_due = true;
        loop->now_ms = hm_loop_now_ms();
        if (n < 0 && errno != EINTR) {
            HM_LOG_ERROR("NET-EPOLL-FAIL", "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            hm_task *t = evs[i].data.ptr;

            if (!t)
                drain_wakefd(loop);
            else if (t->kind == TASK_CONN)
                hm_conn_on_event((hm_conn *)t, evs[i].events);
            else
                hm_listener_on_event((hm_listener *)t, evs[i].events);
        }
        run_tasks(loop);
        loop->now_ms = hm_loop_now_ms();
        next = run_deadlines(loop, loop->now_ms);
    }
    tl_loop = NULL;
    return NULL;
}

/* ------------------------------------------------------------- the net */

static hm_err loop_init(hm_net *net, hm_loop *loop, int index)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

    loop->net = net;
    loop->index = index;
    loop->now_ms = hm_loop_now_ms();
    loop->wheel_tick = loop->now_ms / HM_WHEEL_GRAIN_MS;
    loop->wakefd = -1;
    loop->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail;
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0)
        goto fail;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
        goto fail;
    return HM_OK;

fail:
    HM_LOG_ERROR("NET-LOOP-FAIL", "loop %d: %s", index, strerror(errno));
    return HM_ESYS;
}

static void loop_fini(hm_loop *loop)
{
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->reserve_fd >= 0)
        close(loop->reserve_fd);
}

hm_err hm_net_create(const hm_net_config *cfg, hm_net **out)
{
    hm_net *net;
    hm_err err = HM_OK;
    int n = cfg->io_threads ? cfg->io_threads : 1;

    if (!cfg->rt || n < 0 || n > MAX_IO_THREADS)
        return HM_EINVAL;
    net = hm_calloc(1, sizeof *net);
    net->rt = cfg->rt;
    net->inline_turns = cfg->inline_turns;
    net->nloops = n;
    net->loops = hm_calloc((size_t)n, sizeof *net->loops);
    atomic_init(&net->next_id, 1);
    for (int i = 0; i < n; i++) {
        net->loops[i].epfd = net->loops[i].wakefd = -1;
        net->loops[i].reserve_fd = -1;
    }
    for (int i = 0; i < n && err == HM_OK; i++)
        err = loop_init(net, &net->loops[i], i);
    for (int i = 0; i < n && err == HM_OK; i++) {
        hm_loop *loop = &net->loops[i];

        if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0)
            err = HM_ESYS;
        else
            loop->thread_started = true;
    }
    if (err != HM_OK) {
        hm_net_destroy(net);
        return err;
    }
    *out = net;
    return HM_OK;
}

/* After the thread is joined: closes what the loop still holds, on the
 * caller's thread (the join made the loop's memory ours). */
static void loop_close_all(hm_loop *loop)
{
    hm_task *t =
        /* acquire: pairs with the release CAS in hm_loop_schedule(). */
        atomic_exchange_explicit(&loop->tasks, NULL, memory_order_acquire);

    while (t) { /* pending tasks: run them, so new conns close properly */
        hm_task *next = t->next;

        if (t->kind == TASK_CONN) {
            hm_conn *c = (hm_conn *)t;

            /* relaxed: the loop's thread is joined and the task is off the
             * stack. */
            atomic_store_explicit(&c->scheduled, false, memory_order_relaxed);
            hm_conn_finish(c, HM_ECLOSED);
            hm_conn_release(c); /* the task's reference */
        } else {
            hm_listener_run_task((hm_listener *)t);
        }
        t = next;
    }
    while (loop->conns)
        hm_conn_finish(loop->conns, HM_ECLOSED);
    while (loop->listeners)
        hm_listener_stop(loop->listeners);
}

void hm_net_stop(hm_net *net)
{
    /* acq_rel: one caller stops; later callers return at once. */
    if (atomic_exchange_explicit(&net->stopped, true, memory_order_acq_rel))
        return;
    for (int i = 0; i < net->nloops; i++) {
        hm_loop *loop = &net->loops[i];
        uint64_t one = 1;

        /* release: pairs with the acquire load in loop_main(). */
        atomic_store_explicit(&loop->stopping, true, memory_order_release);
        if (loop->wakefd >= 0 && write(loop->wakefd, &one, sizeof one) < 0)
            HM_LOG_DEBUG("NET-WAKE-FAIL", "eventfd: %s", strerror(errno));
    }
    for (int i = 0; i < net->nloops; i++) {
        hm_loop *loop = &net->loops[i];

        if (loop->thread_started)
            pthread_join(loop->thread, NULL);
        loop->thread_started = false;
    }
    for (int i = 0; i < net->nloops; i++)
        loop_close_all(&net->loops[i]);
}

void hm_net_destroy(hm_net *net)
{
    if (!net)
        return;
    hm_net_stop(net);
    for (int i = 0; i < net->nloops; i++) {
        loop_close_all(&net->loops[i]); /* tasks pushed after the stop */
        loop_fini(&net->loops[i]);
    }
    hm_free(net->loops);
    hm_free(net);
}

void hm_net_stats_get(hm_net *net, hm_net_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < net->nloops; i++) {
        hm_loop *l = &net->loops[i];

        /* relaxed: counters, exact only when the net is idle. */
#define SUM(f) out->f += atomic_load_explicit(&l->f, memory_order_relaxed)
        SUM(accepted);
        SUM(accept_dropped);
        SUM(connected);
        SUM(closed);
        SUM(open);
        SUM(frames_in);
        SUM(bytes_in);
        SUM(bytes_out);
        SUM(write_full);
        SUM(read_pauses);
        SUM(direct_sends);
        SUM(inline_frames);
#undef SUM
    }
}
