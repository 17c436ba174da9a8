/* net/conn.c: the connection handle (any thread) and the net messages.
 *
 * Everything a handle does is a lock-free push and a wake-up: a write is a
 * node pushed on the connection's write stack (a Treiber stack; the I/O
 * thread takes the whole stack at once with an exchange, so there is no ABA
 * and no lock), a close is a bit or'ed into `requests`, and both schedule
 * the connection on its loop. The write-queue bound is an atomic byte count
 * reserved before the push, so a writer learns HM_EFULL synchronously and
 * the queue can never exceed the bound. One exception saves the loop a
 * wake-up at light load: a write with nothing queued before it, to a loop
 * asleep in epoll_wait, is sent from the writer's thread, holding the
 * socket's output side by a CAS it never waits for (ADR 0151). The socket
 * side is in conn_io.c, its output queue in conn_out.c. */
#include "net/net_impl.h"

#include "net/line.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

/* The payload of every net message. */
typedef struct net_event {
    hm_conn *conn; /* owned reference */
    hm_err err;
    size_t charge; /* in-flight bytes this frame holds (0: not a frame) */
    size_t len;
    uint8_t data[];
} net_event;

static void net_event_free(void *payload);

const hm_type hm_net_opened_type = {.name = "net.opened",
                                    .free = net_event_free};
const hm_type hm_net_frame_type = {.name = "net.frame", .free = net_event_free};
const hm_type hm_net_eof_type = {.name = "net.eof", .free = net_event_free};
const hm_type hm_net_error_type = {.name = "net.error", .free = net_event_free};
const hm_type hm_net_closed_type = {.name = "net.closed",
                                    .free = net_event_free};

bool hm_net_msg_is_net(const hm_msg *m)
{
    const hm_type *t = hm_msg_type(m);

    return t == &hm_net_opened_type || t == &hm_net_frame_type ||
           t == &hm_net_eof_type || t == &hm_net_error_type ||
           t == &hm_net_closed_type;
}

static const net_event *event_of(const hm_msg *m)
{
    return hm_net_msg_is_net(m) ? hm_msg_payload(m) : NULL;
}

hm_conn *hm_net_msg_conn(const hm_msg *m)
{
    const net_event *ev = event_of(m);

    return ev ? ev->conn : NULL;
}

hm_err hm_net_msg_err(const hm_msg *m)
{
    const net_event *ev = event_of(m);

    return ev ? ev->err : HM_OK;
}

const uint8_t *hm_net_msg_data(const hm_msg *m, size_t *len)
{
    const net_event *ev = event_of(m);

    if (!ev || hm_msg_type(m) != &hm_net_frame_type) {
        *len = 0;
        return NULL;
    }
    *len = ev->len;
    return ev->data;
}

/* The owner freed a frame: give its bytes back to the in-flight budget and,
 * if the I/O thread paused reading on it, ask it to look again. */
static void inflight_release(hm_conn *c, size_t charge)
{
    /* seq_cst, with the seq_cst load of read_paused below: pairs with the
     * I/O thread's seq_cst store of read_paused followed by its load of
     * inflight (conn_io.c, pause_reading). Of the two threads at least one
     * sees the other's write, so a pause is never left without a resume. */
    size_t left =
        atomic_fetch_sub_explicit(&c->inflight, charge, memory_order_seq_cst) -
        charge;

    if (left <= c->max_inflight / 2 &&
        atomic_load_explicit(&c->read_paused, memory_order_seq_cst) &&
        /* acquire: pairs with the release store in hm_conn_finish(). */
        !atomic_load_explicit(&c->finished, memory_order_acquire)) {
        /* relaxed: the schedule's release push publishes the bit. */
        atomic_fetch_or_explicit(&c->requests, REQ_RESUME,
                                 memory_order_relaxed);
        hm_conn_schedule(c);
    }
}

static void net_event_free(void *payload)
{
    net_event *ev = payload;

    if (ev->charge)
        inflight_release(ev->conn, ev->charge);
    hm_conn_release(ev->conn);
    hm_free(ev);
}

/* Builds a net message about `c` (a new reference) with `len` bytes of
 * `data` copied in (borrowed). Returns owned. */
hm_msg *hm_conn_event(hm_conn *c, const hm_type *type, hm_err err,
                      const uint8_t *data, size_t len, size_t charge)
{
    net_event *ev = hm_alloc(sizeof *ev + len);

    ev->conn = hm_conn_ref(c);
    ev->err = err;
    ev->charge = charge;
    ev->len = len;
    if (len)
        memcpy(ev->data, data, len);
    return hm_msg_create(type, ev, c->id);
}

/* ------------------------------------------------------------- lifetime */

/* The framer of connections whose options name none: lines up to
 * HM_NET_MAX_LINE (what hm_line_framer_init(out, NULL) fills in). */
static const hm_framer default_line_framer = {
    .name = "line",
    .next = hm_line_next,
    .arg = NULL,
    .max_frame_len = HM_NET_MAX_LINE + 2,
};

/* A byte bound from the options: `dflt` for 0, and at most UINT32_MAX
 * (the connection keeps its bounds in 32 bits). */
static uint32_t bound_u32(size_t v, uint32_t dflt)
{
    if (v == 0)
        return dflt;
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

hm_conn *hm_conn_create(hm_net *net, hm_loop *loop, const hm_conn_options *opt)
{
    hm_conn *c = hm_calloc(1, sizeof *c);

    c->task.kind = TASK_CONN;
    c->loop = loop;
    /* relaxed: ids need only be unique. */
    c->id = atomic_fetch_add_explicit(&net->next_id, 1, memory_order_relaxed);
    c->framer = opt->framer ? opt->framer : &default_line_framer;
    c->max_inflight = bound_u32(opt->max_inflight_len, HM_NET_INFLIGHT_DEFAULT);
    c->max_queue =
        bound_u32(opt->max_write_queue_len, HM_NET_WRITE_QUEUE_DEFAULT);
    c->linger_ms = opt->linger_ms ? opt->linger_ms : HM_NET_LINGER_DEFAULT_MS;
    c->policy = (opt->on_full == HM_NET_FULL_CLOSE ? POLICY_FULL_CLOSE : 0) |
                (opt->allow_half_open ? POLICY_HALF_OPEN : 0);
    c->idle_ms = opt->idle_timeout_ms;
    atomic_init(&c->refs, 1); /* the loop's, dropped by hm_conn_finish */
    c->fd = -1;
    return c;
}

hm_conn *hm_conn_ref(hm_conn *c)
{
    /* relaxed: taking a reference needs a reference already held. */
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

static void free_wnodes(wnode *n)
{
    while (n) {
        wnode *next = n->next;

        if (n->owned_data)
            hm_free(n->data);
        hm_free(n);
        n = next;
    }
}

void hm_conn_release(hm_conn *c)
{
    if (!c)
        return;
    /* acq_rel: the last release must see every other thread's writes to
     * the connection (acquire) after they dropped theirs (release). */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    free_wnodes(atomic_load_explicit(&c->wstack, memory_order_relaxed));
    free_wnodes(c->out_head);
    hm_addr_release(atomic_load_explicit(&c->next_owner, memory_order_relaxed));
    hm_addr_release(c->owner);
    hm_frame_reader_destroy(c->reader);
    hm_free(atomic_load_explicit(&c->peer, memory_order_relaxed));
    hm_free(c);
}

uint64_t hm_conn_id(const hm_conn *c)
{
    return c->id;
}

const char *hm_conn_peer(const hm_conn *c)
{
    hm_conn *mc = (hm_conn *)c; /* the cache is not part of the value */
    /* acquire: pairs with the release CAS below, so the string's bytes
     * are seen with the pointer. */
    char *p = atomic_load_explicit(&mc->peer, memory_order_acquire);
    char *mine, *expected = NULL;

    if (p)
        return p;
    mine = hm_alloc(HM_CONN_PEER_LEN);
    hm_conn_format_peer(&c->remote.sa, mine, HM_CONN_PEER_LEN);
    /* acq_rel: release publishes our string; acquire (on failure) sees
     * the winner's. */
    if (atomic_compare_exchange_strong_explicit(&mc->peer, &expected, mine,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    hm_free(mine);
    return expected;
}

bool hm_conn_is_open(const hm_conn *c)
{
    /* acquire: pairs with the release stores of `closed`. */
    return !atomic_load_explicit(&c->closed, memory_order_acquire);
}

size_t hm_conn_queued_len(const hm_conn *c)
{
    /* relaxed: a gauge. */
    return atomic_load_explicit(&c->queued_len, memory_order_relaxed);
}

/* --------------------------------------------------------- scheduling */

void hm_conn_schedule(hm_conn *c)
{
    /* acq_rel: only the thread that flips it to true pushes the task; it
     * pairs with the I/O thread's exchange to false in conn_io.c. */
    if (atomic_exchange_explicit(&c->scheduled, true, memory_order_acq_rel))
        return;
    hm_conn_ref(c); /* the task's reference, dropped after it runs */
    hm_loop_schedule(c->loop, &c->task);
}

static void request(hm_conn *c, unsigned bits)
{
    /* acquire: pairs with the release store in hm_conn_finish(). */
    if (atomic_load_explicit(&c->finished, memory_order_acquire))
        return; /* nothing left to do; and the loop may be gone */
    /* relaxed: hm_conn_schedule's push (release) publishes the bits, and
     * the I/O thread clears `scheduled` before it exchanges them. */
    atomic_fetch_or_explicit(&c->requests, bits, memory_order_relaxed);
    hm_conn_schedule(c);
}

/* ---------------------------------------------------------------- writes */

/* Bulk writes leave so much of the bound to the others, so that control
 * lines still go out on a connection whose bulk queue is full. */
#define BULK_HEADROOM (64u * 1024u)

/* Reserves `len` bytes of the write bound (less BULK_HEADROOM for `bulk`);
 * `*before_out` gets the bytes that were queued already (0: nothing is
 * waiting for the socket). */
static hm_err reserve(hm_conn *c, size_t len, bool bulk, size_t *before_out)
{
    size_t before, max = c->max_queue;

    if (bulk)
        max = max > 2 * BULK_HEADROOM ? max - BULK_HEADROOM : max / 2;
    if (len > c->max_queue)
        return HM_ETOOBIG;
    /* relaxed: a byte budget; the push below carries the data. */
    before =
        atomic_fetch_add_explicit(&c->queued_len, len, memory_order_relaxed);
    *before_out = before;
    if (before + len <= max)
        return HM_OK;
    atomic_fetch_sub_explicit(&c->queued_len, len, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->loop->write_full, 1, memory_order_relaxed);
    if (c->policy & POLICY_FULL_CLOSE)
        request(c, REQ_FULL);
    return HM_EFULL;
}

static void push_write(hm_conn *c, wnode *n)
{
    /* relaxed: a first guess at the head; the release CAS below publishes. */
    wnode *head = atomic_load_explicit(&c->wstack, memory_order_relaxed);

    do {
        n->next = head;
        /* release: pairs with the acquire exchange in conn_out.c's
         * hm_conn_take_writes(), which then sees the node's bytes. */
    } while (!atomic_compare_exchange_weak_explicit(
        &c->wstack, &head, n, memory_order_release, memory_order_relaxed));
    hm_conn_schedule(c);
}

/* Takes the socket's output side for a direct send, if the connection is
 * open, nothing holds it, and the I/O thread does not wait for it. */
static bool take_output(hm_conn *c)
{
    /* relaxed: the CAS below decides. */
    uint8_t v = atomic_load_explicit(&c->wflags, memory_order_relaxed);

    while ((v & (W_DIRECT | W_SENDING | W_IO_WANTS)) == W_DIRECT) {
        /* acquire: pairs with the release in give_output() and in the
         * I/O thread's hm_conn_io_release() (conn_out.c): their sends
         * come first.
         * seq_cst on failure is not needed: we retry or give up. */
        if (atomic_compare_exchange_weak_explicit(&c->wflags, &v,
                                                  v | W_SENDING,
                                                  memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

/* Gives the output side back; if the I/O thread asked for it meanwhile,
 * schedules the connection so it does what it waited to do. */
static void give_output(hm_conn *c)
{
    /* acq_rel: release pairs with the acquire of the next holder;
     * W_IO_WANTS was set by an RMW on the same word, so it cannot be
     * missed (one total order for every RMW of wflags). */
    uint8_t old = atomic_fetch_and_explicit(
        &c->wflags, (uint8_t)~(W_SENDING | W_IO_WANTS), memory_order_acq_rel);

    if (old & W_IO_WANTS)
        hm_conn_schedule(c);
}

/* Sends n's bytes on the socket from the writer's thread (ADR 0151): the
 * caller reserved them with nothing queued before them and holds the
 * output side. What the socket does not take goes first in the queue. */
static void send_direct(hm_conn *c, wnode *n)
{
    ssize_t sent;

    atomic_fetch_add_explicit(&c->loop->direct_sends, 1,
                              memory_order_relaxed); /* relaxed: a counter */
    do
        sent = send(c->fd, n->data, n->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    if (sent > 0) {
        /* relaxed: a byte budget and a counter, as in conn_out.c. */
        atomic_fetch_sub_explicit(&c->queued_len, (size_t)sent,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&c->loop->bytes_out, (uint64_t)sent,
                                  memory_order_relaxed);
    }
    if (sent == (ssize_t)n->len) {
        give_output(c);
        if (n->owned_data)
            hm_free(n->data);
        hm_free(n);
        return;
    }
    /* EAGAIN, a short send, or an error (which the I/O thread's own send
     * will meet and close on): the rest goes to the I/O thread, ahead of
     * anything queued since our reservation. Pushed before the output
     * side is given back, so the I/O thread cannot send those first. */
    if (sent > 0) { /* rare: copy the rest, so the node owns its start */
        size_t rest_len = n->len - (size_t)sent;
        wnode *rest = hm_alloc(sizeof *rest + rest_len);

        rest->len = rest_len;
        rest->data = rest->inline_data;
        rest->owned_data = false;
        rest->bulk = false;
        memcpy(rest->inline_data, n->data + sent, rest_len);
        if (n->owned_data)
            hm_free(n->data);
        hm_free(n);
        n = rest;
    }
    n->front = true;
    push_write(c, n);
    give_output(c);
}

/* True if the loop sleeps and has direct sends left: sending from here
 * saves it a wake-up. While it is awake, or past a few sends, queueing
 * lets it send in batches (many writes per system call). */
static bool loop_prefers_direct(hm_loop *loop)
{
    /* relaxed: a heuristic; a stale value costs a wake-up or a batch. */
    int left = atomic_load_explicit(&loop->direct_budget, memory_order_relaxed);

    while (left > 0)
        if (atomic_compare_exchange_weak_explicit(&loop->direct_budget, &left,
                                                  left - 1,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

static hm_err write_node(hm_conn *c, wnode *n, bool bulk)
{
    size_t before;
    hm_err err;

    if (!hm_conn_is_open(c))
        return HM_ECLOSED;
    if ((err = reserve(c, n->len, bulk, &before)) != HM_OK)
        return err;
    n->bulk = bulk;
    /* Not while the connection waits on its loop's task stack: a request
     * made before this write (a new owner, an idle timeout) must take
     * effect before the peer can answer it; the loop is awake for it
     * anyway. relaxed: our own requests are seen in program order. Bulk
     * writes are always queued: they are the traffic that gains from
     * batching (cluster links), and they may wait. */
    if (!bulk && before == 0 &&
        !atomic_load_explicit(&c->scheduled, memory_order_relaxed) &&
        loop_prefers_direct(c->loop) && take_output(c))
        send_direct(c, n);
    else
        push_write(c, n);
    return HM_OK;
}

hm_err hm_conn_write(hm_conn *c, const void *buf, size_t len)
{
    wnode *n;
    hm_err err;

    if (!hm_conn_is_open(c))
        return HM_ECLOSED;
    if (len == 0)
        return HM_OK;
    n = hm_alloc(sizeof *n + len);
    n->len = len;
    n->data = n->inline_data;
    n->owned_data = false;
    n->front = false;
    memcpy(n->inline_data, buf, len);
    if ((err = write_node(c, n, false)) != HM_OK)
        hm_free(n);
    return err;
}

static hm_err write_take(hm_conn *c, void *buf, size_t len, bool bulk)
{
    wnode *n;
    hm_err err;

    if (!hm_conn_is_open(c))
        return HM_ECLOSED;
    if (len == 0) {
        hm_free(buf);
        return HM_OK;
    }
    n = hm_alloc(sizeof *n);
    n->len = len;
    n->data = buf;
    n->owned_data = true;
    n->front = false;
    if ((err = write_node(c, n, bulk)) != HM_OK) {
        n->owned_data = false; /* the caller keeps buf */
        hm_free(n);
    }
    return err;
}

hm_err hm_conn_write_take(hm_conn *c, void *buf, size_t len)
{
    return write_take(c, buf, len, false);
}

hm_err hm_conn_write_bulk(hm_conn *c, void *buf, size_t len)
{
    return write_take(c, buf, len, true);
}

/* --------------------------------------------------------------- closing */

void hm_conn_close(hm_conn *c)
{
    /* release: pairs with the acquire load in hm_conn_is_open(). */
    atomic_store_explicit(&c->closed, true, memory_order_release);
    request(c, REQ_CLOSE);
}

void hm_conn_abort(hm_conn *c)
{
    /* release: as in hm_conn_close(). */
    atomic_store_explicit(&c->closed, true, memory_order_release);
    request(c, REQ_ABORT);
}

void hm_conn_shutdown_write(hm_conn *c)
{
    /* release: as in hm_conn_close(). */
    atomic_store_explicit(&c->closed, true, memory_order_release);
    request(c, REQ_SHUT_WR);
}

void hm_conn_set_idle_timeout(hm_conn *c, uint32_t timeout_ms)
{
    /* relaxed: request()'s schedule (a release push) publishes it; a
     * later call overwrites it and the I/O thread applies the last. */
    atomic_store_explicit(&c->idle_req_ms, timeout_ms, memory_order_relaxed);
    request(c, REQ_IDLE);
}

void hm_conn_set_owner(hm_conn *c, hm_addr *owner)
{
    /* acq_rel: the I/O thread's acquire exchange sees the new reference;
     * an owner set twice before the loop looks drops the older one. */
    hm_addr *old = atomic_exchange_explicit(&c->next_owner, hm_addr_ref(owner),
                                            memory_order_acq_rel);

    hm_addr_release(old);
    request(c, REQ_OWNER);
}

/* ------------------------------------------------------------ connecting */

/* Resolves cfg's host and port into c->remote (first address wins). */
static hm_err resolve(const hm_connect_config *cfg, hm_conn *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai;
    char port[16];
    int rc;

    snprintf(port, sizeof port, "%d", cfg->port);
    if ((rc = getaddrinfo(cfg->host, port, &hints, &ai)) != 0) {
        HM_LOG_DEBUG("NET-RESOLVE-FAIL", "%s: %s", cfg->host, gai_strerror(rc));
        return HM_ENOTFOUND;
    }
    if (ai->ai_addrlen > sizeof c->remote) { /* neither IPv4 nor IPv6 */
        freeaddrinfo(ai);
        return HM_ENOTFOUND;
    }
    memcpy(&c->remote, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return HM_OK;
}

hm_err hm_net_connect(hm_net *net, const hm_connect_config *cfg,
                      uint64_t *id_out)
{
    hm_conn *c;
    hm_err err;

    if (!cfg->owner || !cfg->host || cfg->port <= 0 || cfg->port > 65535)
        return HM_EINVAL;
    /* acquire: pairs with the exchange in hm_net_stop(). */
    if (atomic_load_explicit(&net->stopped, memory_order_acquire))
        return HM_ECLOSED;
    c = hm_conn_create(net, hm_net_pick_loop(net), &cfg->conn);
    if ((err = resolve(cfg, c)) != HM_OK) {
        c->state = CONN_CLOSED;
        hm_conn_release(c);
        return err;
    }
    c->state = CONN_NEW_CONNECT;
    /* The connect timeout (until start_connect() makes it a deadline) and
     * the user timeout, which only the socket needs. */
    c->deadline_ms = (uint64_t)cfg->conn.user_timeout_ms << 32 |
                     (cfg->timeout_ms ? cfg->timeout_ms : 10000);
    c->owner = hm_addr_ref(cfg->owner);
    if (id_out)
        *id_out = c->id;
    hm_conn_schedule(c); /* the loop opens the socket and connects */
    return HM_OK;
}
