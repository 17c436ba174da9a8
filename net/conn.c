/* net/conn.c: the connection handle (any thread) and the net messages.
 *
 * Everything a handle does is a lock-free push and a wake-up: a write is a
 * node pushed on the connection's write stack (a Treiber stack; the I/O
 * thread takes the whole stack at once with an exchange, so there is no ABA
 * and no lock), a close is a bit or'ed into `requests`, and both schedule
 * the connection on its loop. The write-queue bound is an atomic byte count
 * reserved before the push, so a writer learns HM_EFULL synchronously and
 * the queue can never exceed the bound. The socket side is in conn_io.c. */
#include "net/net_impl.h"

#include "runtime/alloc.h"

#include "runtime/log.h"

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
    size_t left = atomic_fetch_sub(&c->inflight, charge) - charge;

    if (left <= c->max_inflight / 2 && atomic_load(&c->read_paused) &&
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

hm_conn *hm_conn_create(hm_net *net, hm_loop *loop, const hm_conn_options *opt)
{
    hm_conn *c = hm_calloc(1, sizeof *c);

    c->task.kind = TASK_CONN;
    c->loop = loop;
    /* relaxed: ids need only be unique. */
    c->id = atomic_fetch_add_explicit(&net->next_id, 1, memory_order_relaxed);
    c->opt = *opt;
    c->max_inflight =
        opt->max_inflight_len ? opt->max_inflight_len : HM_NET_INFLIGHT_DEFAULT;
    c->max_queue = opt->max_write_queue_len ? opt->max_write_queue_len
                                            : HM_NET_WRITE_QUEUE_DEFAULT;
    if (!c->opt.linger_ms)
        c->opt.linger_ms = HM_NET_LINGER_DEFAULT_MS;
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
    free_wnodes(atomic_load_explicit(&c->bstack, memory_order_relaxed));
    free_wnodes(c->out_head);
    hm_addr_release(atomic_load_explicit(&c->next_owner, memory_order_relaxed));
    hm_addr_release(c->owner);
    hm_frame_reader_destroy(c->reader);
    hm_free(c);
}

uint64_t hm_conn_id(const hm_conn *c)
{
    return c->id;
}

const char *hm_conn_peer(const hm_conn *c)
{
    return c->peer;
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

static hm_err reserve(hm_conn *c, size_t len, bool bulk)
{
    size_t before, max = c->max_queue;

    if (bulk)
        max = max > 2 * BULK_HEADROOM ? max - BULK_HEADROOM : max / 2;
    if (len > c->max_queue)
        return HM_ETOOBIG;
    /* relaxed: a byte budget; the push below carries the data. */
    before =
        atomic_fetch_add_explicit(&c->queued_len, len, memory_order_relaxed);
    if (before + len <= max)
        return HM_OK;
    atomic_fetch_sub_explicit(&c->queued_len, len, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->loop->write_full, 1, memory_order_relaxed);
    if (c->opt.on_full == HM_NET_FULL_CLOSE)
        request(c, REQ_FULL);
    return HM_EFULL;
}

static void push_write(hm_conn *c, _Atomic(wnode *) *stack, wnode *n)
{
    wnode *head = atomic_load_explicit(stack, memory_order_relaxed);

    do {
        n->next = head;
        /* release: pairs with the acquire exchange in conn_io.c's
         * take_writes(), which then sees the node's bytes. */
    } while (!atomic_compare_exchange_weak_explicit(
        stack, &head, n, memory_order_release, memory_order_relaxed));
    hm_conn_schedule(c);
}

static hm_err write_node(hm_conn *c, wnode *n, bool bulk)
{
    hm_err err;

    if (!hm_conn_is_open(c))
        return HM_ECLOSED;
    if ((err = reserve(c, n->len, bulk)) != HM_OK)
        return err;
    push_write(c, bulk ? &c->bstack : &c->wstack, n);
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
    atomic_store_explicit(&c->closed, true, memory_order_release);
    request(c, REQ_ABORT);
}

void hm_conn_shutdown_write(hm_conn *c)
{
    atomic_store_explicit(&c->closed, true, memory_order_release);
    request(c, REQ_SHUT_WR);
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
    memcpy(&c->remote, ai->ai_addr, ai->ai_addrlen);
    c->remote_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    hm_conn_format_peer((struct sockaddr *)&c->remote, c->peer, sizeof c->peer);
    return HM_OK;
}

hm_err hm_net_connect(hm_net *net, const hm_connect_config *cfg,
                      uint64_t *id_out)
{
    hm_conn *c;
    hm_err err;

    if (!cfg->owner || !cfg->host || cfg->port <= 0 || cfg->port > 65535)
        return HM_EINVAL;
    if (atomic_load_explicit(&net->stopped, memory_order_acquire))
        return HM_ECLOSED;
    c = hm_conn_create(net, hm_net_pick_loop(net), &cfg->conn);
    if ((err = resolve(cfg, c)) != HM_OK) {
        c->state = CONN_CLOSED;
        hm_conn_release(c);
        return err;
    }
    c->state = CONN_NEW_CONNECT;
    c->connect_timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
    c->owner = hm_addr_ref(cfg->owner);
    if (id_out)
        *id_out = c->id;
    hm_conn_schedule(c); /* the loop opens the socket and connects */
    return HM_OK;
}
