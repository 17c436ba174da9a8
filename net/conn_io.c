/* net/conn_io.c: a connection's socket work, on its I/O thread only.
 *
 * epoll is level-triggered and the interest mask is recomputed from the
 * connection's state after every step (update_events), so a step never has
 * to remember to re-arm anything: reading wants EPOLLIN unless reads are
 * paused or done, a non-empty output queue wants EPOLLOUT, and a connection
 * wanting nothing is removed from epoll (so a hung-up socket cannot spin
 * the loop). Reads per wake-up are capped (READ_BUDGET) so one fast peer
 * cannot starve the others on the same thread.
 *
 * Every entry point (task, event, deadline) holds its own reference for its
 * duration, because hm_conn_finish() drops the loop's reference and may be
 * the last one. */
#include "net/net_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define READ_BUDGET (256u * 1024u) /* bytes read per wake-up, per conn */
#define FRAME_OVERHEAD 64u         /* in-flight charge per frame, bytes */

/* Sends an event to the owner. A frame at light load (every worker asleep,
 * and this wake-up's few frames not used up) runs the owner's turn here,
 * which saves the wake-up of a worker (ADR 0175); anything else is left to
 * the workers. Only frames: the owner never runs inside the closing or
 * opening steps, which the other events come from. */
static hm_err send_event(hm_conn *c, const hm_type *type, hm_msg *m)
{
    hm_loop *l = c->loop;
    hm_runtime *rt = l->net->rt;

    if (type == &hm_net_frame_type && l->net->inline_turns &&
        l->inline_left > 0 && hm_runtime_workers_idle(rt)) {
        l->inline_left--;
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&l->inline_frames, 1, memory_order_relaxed);
        return hm_runtime_send_here(rt, c->owner, m, l->net->inline_turns);
    }
    return hm_runtime_send(rt, c->owner, m);
}

static hm_err deliver(hm_conn *c, const hm_type *type, hm_err err,
                      const uint8_t *data, size_t len, size_t charge)
{
    hm_msg *m;
    hm_err e;

    if (!c->owner)
        return HM_ECLOSED;
    if (charge) /* seq_cst: see pause_reading() */
        atomic_fetch_add_explicit(&c->inflight, charge, memory_order_seq_cst);
    m = hm_conn_event(c, type, err, data, len, charge);
    if ((e = send_event(c, type, m)) != HM_OK) {
        HM_LOG_DEBUG("NET-DELIVER-FAIL", "conn %llu: %s to %s: %s",
                     (unsigned long long)c->id, type->name,
                     hm_addr_name(c->owner), hm_err_name(e));
        hm_msg_destroy(m);
    }
    return e;
}

static bool is_live(const hm_conn *c)
{
    return c->state == CONN_OPEN || c->state == CONN_FLUSHING ||
           c->state == CONN_LINGER;
}

static void update_events(hm_conn *c)
{
    uint32_t want = 0;

    switch (c->state) {
    case CONN_CONNECTING:
        want = EPOLLOUT;
        break;
    case CONN_OPEN:
        /* seq_cst, as every access to read_paused: see pause_reading(). */
        if (!c->read_done &&
            !atomic_load_explicit(&c->read_paused, memory_order_seq_cst))
            want |= EPOLLIN;
        if (c->out_head)
            want |= EPOLLOUT;
        break;
    case CONN_FLUSHING:
        if (c->out_head)
            want = EPOLLOUT;
        break;
    case CONN_LINGER:
        want = EPOLLIN;
        break;
    default:
        return;
    }
    hm_loop_epoll_set(c->loop, c->fd, &c->task, &c->events, want);
}

static void list_add(hm_conn *c)
{
    hm_loop *loop = c->loop;

    c->prev = NULL;
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    c->listed = true;
    /* relaxed: a gauge. */
    atomic_fetch_add_explicit(&loop->open, 1, memory_order_relaxed);
}

static void list_remove(hm_conn *c)
{
    if (!c->listed)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->listed = false;
    /* relaxed: a gauge. */
    atomic_fetch_sub_explicit(&c->loop->open, 1, memory_order_relaxed);
}

void hm_conn_finish(hm_conn *c, hm_err reason)
{
    if (c->state == CONN_CLOSED)
        return;
    c->state = CONN_CLOSED;
    /* release: pairs with the acquire loads in hm_conn_is_open() and in
     * conn.c's request() / inflight_release(): after them no handle
     * schedules this connection again. */
    atomic_store_explicit(&c->closed, true, memory_order_release);
    atomic_store_explicit(&c->finished, true, memory_order_release);
    hm_conn_unfile(c);
    hm_conn_io_acquire_for_good(c); /* no handle sends on a closed fd */
    if (c->fd >= 0) {
        hm_loop_epoll_set(c->loop, c->fd, &c->task, &c->events, 0);
        if (c->abortive) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd);
        c->fd = -1;
    }
    list_remove(c);
    hm_conn_drop_output(c);
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&c->loop->closed, 1, memory_order_relaxed);
    deliver(c, &hm_net_closed_type, reason, NULL, 0, 0);
    hm_addr_release(c->owner);
    c->owner = NULL;
    hm_frame_reader_destroy(c->reader);
    c->reader = NULL;
    hm_conn_release(c); /* the loop's reference */
}

static void finish_abort(hm_conn *c, hm_err reason)
{
    c->abortive = true;
    hm_conn_finish(c, reason);
}

hm_err hm_conn_errno(int e)
{
    switch (e) {
    case ECONNRESET:
    case EPIPE:
        return HM_ECONNRESET;
    case ECONNREFUSED:
        return HM_ECONNREFUSED;
    case ETIMEDOUT:
        return HM_ETIMEDOUT;
    case EHOSTUNREACH:
    case ENETUNREACH:
        return HM_EUNREACHABLE;
    default:
        HM_LOG_WARN("NET-SYSCALL", "socket error: %s", strerror(e));
        return HM_ESYS;
    }
}

/* ---------------------------------------------------------------- output */

/* After the write side is shut, waits for the peer's end of stream (input
 * discarded) so that closing cannot reset away our last bytes. */
static void begin_linger(hm_conn *c)
{
    shutdown(c->fd, SHUT_WR);
    if (c->read_done) {
        hm_conn_finish(c, HM_OK);
        return;
    }
    c->state = CONN_LINGER;
}

/* Flushes, then takes the step an empty queue allows. */
static void flush_and_advance(hm_conn *c)
{
    hm_err err;

    if (!hm_conn_io_acquire(c))
        return; /* a handle is sending; it schedules us when done */
    hm_conn_take_writes(c); /* the rest of a direct send goes first */
    if ((err = hm_conn_flush_output(c)) != HM_OK) {
        finish_abort(c, err);
        return;
    }
    if (!c->out_head) {
        if (c->state == CONN_FLUSHING)
            begin_linger(c);
        else if (c->shut_wr_pending && !c->shut_wr_done) {
            shutdown(c->fd, SHUT_WR);
            c->shut_wr_done = true;
        }
    }
    if (c->state != CONN_CLOSED)
        hm_conn_io_release(c);
}

static void start_graceful(hm_conn *c)
{
    /* release: pairs with the acquire load in hm_conn_is_open(). */
    atomic_store_explicit(&c->closed, true, memory_order_release);
    if (c->state < CONN_OPEN) {
        hm_conn_finish(c, HM_OK);
        return;
    }
    if (c->state != CONN_OPEN)
        return; /* already closing */
    c->state = CONN_FLUSHING;
    /* relaxed: only stops new direct sends (a send in progress finishes
     * before our flush can take the output side). */
    atomic_fetch_and_explicit(&c->wflags, (uint8_t)~W_DIRECT,
                              memory_order_relaxed);
    hm_conn_set_deadline(c, hm_loop_now_ms() + c->linger_ms);
}

/* ----------------------------------------------------------------- input */

/* True if reading must pause: the owner holds more than its in-flight
 * budget of undelivered-or-unhandled frames. */
static bool pause_reading(hm_conn *c)
{
    /* seq_cst: see below. */
    if (atomic_load_explicit(&c->inflight, memory_order_seq_cst) <=
        c->max_inflight)
        return false;
    /* seq_cst store then seq_cst load: pairs with conn.c's
     * inflight_release(), which decrements inflight then loads
     * read_paused. One of us sees the other: no lost resume. */
    atomic_store_explicit(&c->read_paused, true, memory_order_seq_cst);
    if (atomic_load_explicit(&c->inflight, memory_order_seq_cst) <=
        c->max_inflight / 2) {
        atomic_store_explicit(&c->read_paused, false, memory_order_seq_cst);
        return false;
    }
    atomic_fetch_add_explicit(&c->loop->read_pauses, 1, memory_order_relaxed);
    return true;
}

/* Hands every complete buffered frame to the owner. False if reading must
 * stop (paused, framing error, or the connection was closed). */
static bool deliver_frames(hm_conn *c)
{
    if (!c->reader)
        return true; /* nothing buffered */
    for (;;) {
        const uint8_t *f;
        size_t len;
        hm_err err;

        if (pause_reading(c))
            return false;
        err = hm_frame_reader_next(c->reader, &f, &len);
        if (err == HM_EAGAIN)
            return true;
        if (err != HM_OK) {
            HM_LOG_DEBUG("NET-FRAMING", "conn %llu from %s: %s",
                         (unsigned long long)c->id, hm_conn_peer(c),
                         hm_err_name(err));
            c->read_done = true;
            c->frame_error = true;
            /* The owner should reply and close; if it does not, the
             * connection must not live on unread: close it after the
             * linger time. */
            hm_conn_set_deadline(c, hm_loop_now_ms() + c->linger_ms);
            deliver(c, &hm_net_error_type, err, NULL, 0, 0);
            return false;
        }
        /* relaxed: a counter. */
        atomic_fetch_add_explicit(&c->loop->frames_in, 1, memory_order_relaxed);
        if (c->idle_ms)
            hm_conn_mark_rx(c); /* the idle clock restarts (timed.c) */
        err =
            deliver(c, &hm_net_frame_type, HM_OK, f, len, len + FRAME_OVERHEAD);
        if (err != HM_OK) {
            finish_abort(c, err);
            return false;
        }
    }
}

static void on_eof(hm_conn *c)
{
    c->read_done = true;
    if (c->policy & POLICY_HALF_OPEN) {
        deliver(c, &hm_net_eof_type, HM_OK, NULL, 0, 0);
        return;
    }
    start_graceful(c);
    if (c->state == CONN_FLUSHING)
        flush_and_advance(c);
}

/* LINGER: discards input until the peer's end of stream. */
static void drain_linger(hm_conn *c)
{
    uint8_t sink[4096];

    for (int i = 0; i < 64; i++) {
        ssize_t n = read(c->fd, sink, sizeof sink);

        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        hm_conn_finish(c, HM_OK); /* EOF, or an error: either way done */
        return;
    }
}

/* Drained, no partial frame: an idle connection keeps no reader and no
 * read buffer (ADR 0150). */
static void drop_idle_reader(hm_conn *c)
{
    if (c->reader && hm_frame_reader_buffered(c->reader) == 0) {
        hm_frame_reader_destroy(c->reader);
        c->reader = NULL;
    }
}

static void on_readable(hm_conn *c)
{
    size_t total = 0;

    if (c->state == CONN_LINGER) {
        drain_linger(c);
        return;
    }
    /* seq_cst, as every access to read_paused: see pause_reading(). */
    while (c->state == CONN_OPEN && !c->read_done && total < READ_BUDGET &&
           !atomic_load_explicit(&c->read_paused, memory_order_seq_cst)) {
        size_t avail;
        uint8_t *space;
        ssize_t n;

        if (!c->reader)
            c->reader = hm_frame_reader_create(c->framer);
        space = hm_frame_reader_space(c->reader, &avail);

        /* The reader always leaves room: it errors (sticky, seen by
         * deliver_frames) before a frame can fill its buffer. */
        HM_ASSERT(avail > 0);
        n = read(c->fd, space, avail);

        if (n > 0) {
            hm_frame_reader_commit(c->reader, (size_t)n);
            /* relaxed: a counter. */
            atomic_fetch_add_explicit(&c->loop->bytes_in, (uint64_t)n,
                                      memory_order_relaxed);
            total += (size_t)n;
            if (!deliver_frames(c))
                return;
            /* A short read drained the socket: no second read to meet
             * EAGAIN (level-triggered epoll reports what comes later);
             * one system call less per message at light load (ADR 0235). */
            if ((size_t)n < avail) {
                drop_idle_reader(c);
                return;
            }
        } else if (n == 0) {
            on_eof(c);
            return;
        } else if (errno != EINTR) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                finish_abort(c, hm_conn_errno(errno));
            else
                drop_idle_reader(c);
            return;
        }
    }
}

static void resume_reading(hm_conn *c)
{
    /* seq_cst: see pause_reading(). */
    if (!atomic_load_explicit(&c->read_paused, memory_order_seq_cst))
        return;
    atomic_store_explicit(&c->read_paused, false, memory_order_seq_cst);
    if (c->state == CONN_OPEN && !c->read_done)
        deliver_frames(c); /* frames left in the buffer by the pause */
}

/* ------------------------------------------------------------ opening */

static void set_nodelay(int fd)
{
    int one = 1;

    /* Failure only costs latency (Nagle); nothing to recover. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void hm_conn_set_user_timeout(int fd, uint32_t ms)
{
    unsigned int ut = ms;

    /* Failure leaves the kernel's default; logged, not fatal. */
    if (ut && setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut) !=
                  0)
        HM_LOG_DEBUG("NET-SOCKOPT", "TCP_USER_TIMEOUT: %s", strerror(errno));
}

static void conn_opened(hm_conn *c)
{
    c->state = CONN_OPEN;
    /* release: pairs with the acquire in conn.c's take_output(), which
     * then sees c->fd. */
    atomic_fetch_or_explicit(&c->wflags, (uint8_t)W_DIRECT,
                             memory_order_release);
    hm_conn_mark_rx(c); /* the idle clock starts now */
    hm_conn_set_deadline(c, 0); /* no connect deadline any more */
    if (!c->listed)
        list_add(c);
    if (deliver(c, &hm_net_opened_type, HM_OK, NULL, 0, 0) != HM_OK)
        finish_abort(c, HM_ECLOSED);
}

static void register_accepted(hm_conn *c)
{
    set_nodelay(c->fd);
    conn_opened(c);
}

static void start_connect(hm_conn *c)
{
    /* Both timeouts ride in deadline_ms until now: see hm_net_connect. */
    uint32_t timeout_ms = (uint32_t)c->deadline_ms;
    uint32_t user_timeout_ms = (uint32_t)(c->deadline_ms >> 32);
    socklen_t len = c->remote.sa.sa_family == AF_INET6 ? sizeof c->remote.in6
                                                       : sizeof c->remote.in;
    int fd = socket(c->remote.sa.sa_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        HM_LOG_WARN("NET-SOCKET-FAIL", "socket: %s", strerror(errno));
        hm_conn_finish(c, HM_ESYS);
        return;
    }
    c->fd = fd;
    set_nodelay(fd);
    hm_conn_set_user_timeout(fd, user_timeout_ms);
    list_add(c);
    if (connect(fd, &c->remote.sa, len) == 0) {
        /* relaxed: a counter. */
        atomic_fetch_add_explicit(&c->loop->connected, 1, memory_order_relaxed);
        conn_opened(c);
        return;
    }
    if (errno != EINPROGRESS) {
        hm_conn_finish(c, hm_conn_errno(errno));
        return;
    }
    c->state = CONN_CONNECTING;
    hm_conn_set_deadline(c, hm_loop_now_ms() + timeout_ms);
}

static void complete_connect(hm_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        hm_conn_finish(c, hm_conn_errno(err));
        return;
    }
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&c->loop->connected, 1, memory_order_relaxed);
    conn_opened(c);
}

/* ---------------------------------------------------------- entry points */

static void apply_requests(hm_conn *c, unsigned reqs)
{
    if (reqs & REQ_OWNER) {
        /* acquire: pairs with the acq_rel exchange in set_owner. */
        hm_addr *owner = atomic_exchange_explicit(&c->next_owner, NULL,
                                                  memory_order_acquire);

        if (owner) {
            hm_addr_release(c->owner);
            c->owner = owner;
        }
    }
    if (reqs & REQ_FULL) {
        finish_abort(c, HM_EFULL);
        return;
    }
    if (reqs & REQ_ABORT) {
        finish_abort(c, HM_OK);
        return;
    }
    if (reqs & REQ_CLOSE)
        start_graceful(c);
    if (reqs & REQ_SHUT_WR) {
        c->shut_wr_pending = true;
        atomic_fetch_and_explicit(&c->wflags, (uint8_t)~W_DIRECT,
                                  memory_order_relaxed); /* as above */
    }
    if ((reqs & REQ_RESUME) && c->state == CONN_OPEN)
        resume_reading(c);
    if (reqs & REQ_IDLE) {
        /* relaxed: the schedule's release push published it. */
        c->idle_ms =
            atomic_load_explicit(&c->idle_req_ms, memory_order_relaxed);
        hm_conn_mark_rx(c);
        hm_conn_refile(c);
    }
}

void hm_conn_run_task(hm_conn *c)
{
    unsigned reqs;

    /* acq_rel: pairs with the exchange in hm_conn_schedule(); clearing it
     * before reading the requests and the write stack means a handle that
     * adds work after this point schedules us again. */
    atomic_exchange_explicit(&c->scheduled, false, memory_order_acq_rel);
    reqs = atomic_exchange_explicit(&c->requests, 0, memory_order_acquire);
    if (c->state == CONN_NEW_ACCEPTED)
        register_accepted(c);
    else if (c->state == CONN_NEW_CONNECT)
        start_connect(c);
    if (c->state != CONN_CLOSED)
        apply_requests(c, reqs);
    if (c->state == CONN_CLOSED) {
        hm_conn_drop_output(c);
    } else {
        hm_conn_take_writes(c);
        if (c->state == CONN_OPEN || c->state == CONN_FLUSHING)
            flush_and_advance(c);
        update_events(c);
    }
    hm_conn_release(c); /* the task's reference */
}

void hm_conn_on_event(hm_conn *c, uint32_t events)
{
    hm_conn_ref(c);
    if (c->state == CONN_CONNECTING) {
        complete_connect(c);
    } else if (is_live(c) && (events & EPOLLERR)) {
        int err = 0;
        socklen_t len = sizeof err;

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        finish_abort(c, err ? hm_conn_errno(err) : HM_ECONNRESET);
    } else if (is_live(c)) {
        if (events & (EPOLLIN | EPOLLHUP))
            on_readable(c);
        if ((events & EPOLLOUT) &&
            (c->state == CONN_OPEN || c->state == CONN_FLUSHING))
            flush_and_advance(c);
    }
    if (c->state != CONN_CLOSED)
        update_events(c);
    hm_conn_release(c);
}

/* The state's own deadline passed. */
static void on_state_deadline(hm_conn *c)
{
    if (c->state == CONN_CONNECTING) {
        hm_conn_finish(c, HM_ETIMEDOUT);
    } else if (c->state == CONN_OPEN && c->frame_error) {
        start_graceful(c); /* the owner did not close after net.error */
        flush_and_advance(c);
        if (c->state != CONN_CLOSED)
            update_events(c);
    } else if (c->state == CONN_FLUSHING || c->state == CONN_LINGER) {
        HM_LOG_DEBUG("NET-LINGER-TIMEOUT", "conn %llu: close timed out",
                     (unsigned long long)c->id);
        finish_abort(c, HM_ETIMEDOUT);
    }
}

void hm_conn_on_deadline(hm_conn *c, uint64_t now_ms)
{
    hm_conn_ref(c);
    if (c->deadline_ms && c->deadline_ms <= now_ms) {
        c->deadline_ms = 0;
        on_state_deadline(c);
    } else if (hm_conn_idle_due(c) <= now_ms) {
        /* seq_cst: see pause_reading(). */
        if (atomic_load_explicit(&c->read_paused, memory_order_seq_cst)) {
            hm_conn_mark_rx(c); /* the owner is behind, not the peer */
        } else {
            HM_LOG_DEBUG("NET-IDLE-TIMEOUT", "conn %llu: no frame for %u ms",
                         (unsigned long long)c->id, c->idle_ms);
            finish_abort(c, HM_ETIMEDOUT);
        }
    }
    if (c->state != CONN_CLOSED)
        hm_conn_refile(c); /* whatever is left to wait for */
    hm_conn_release(c);
}
