/* cluster/peer.c: one member's "cluster/peer/<name>" receiver: the routed
 * traffic to and from that member.
 *
 * Outbound, it owns the member's outbox (cluster/outbox.h): each message a
 * proxy encoded is numbered and held until the member acknowledges it, is
 * written at once while the link is up, waits (bounded) while it is down,
 * and is written again, in order, when a link to the same incarnation
 * returns; when the member is dead, left or replaced, what is held is
 * counted undeliverable and the requests waiting for it get HM_EUNREACHABLE.
 * A request's original message (which stands for the requester) is kept
 * here under its link-level id until the reply comes back.
 *
 * Inbound, the link receiver hands it every cl.msg and cl.ack. It drops
 * replays (hm_inbox), delivers each message on this node only (a send, a
 * request whose reply it routes back through the outbox, or the reply to one
 * of our kept requests) and acknowledges cumulatively.
 *
 * Key decision: both directions of one member meet in one receiver, so the
 * outbox, the duplicate filter and the kept requests need no lock, and they
 * outlive any single connection: a link that drops and returns loses
 * nothing. The cost is one receiver hop per inbound message. */
#include "cluster/node_impl.h"

#include "cluster/fast.h"
#include "cluster/outbox.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

#define CL_PEER_MAX_BYTES (8u << 20) /* backpressure past so many bytes */

typedef struct kept {
    uint64_t req;
    hm_msg *request; /* owned: stands for the requester */
} kept;

/* A message a proxy queued: its line is at `off` in the queue's bytes. */
typedef struct queued {
    size_t off, len;
    uint64_t req;
    hm_msg *request; /* owned: the moved request the reply answers */
} queued;

struct cl_peer {
    hm_node *node;
    char name[CL_NAME_CAP];
    hm_conn *conn; /* owned reference; NULL while the link is down */
    bool gone;     /* dead, left or replaced: nothing waits */
    /* What proxies encoded and the peer receiver has not taken yet. */
    pthread_mutex_t qlock;
    queued *q;                /* guarded by: qlock */
    size_t q_count, q_cap;    /* guarded by: qlock */
    char *qbuf;               /* guarded by: qlock: the lines' bytes */
    size_t qbuf_used, qbuf_cap; /* guarded by: qlock */
    bool flush_pending;       /* guarded by: qlock; a cl_flush_type
                                 message is queued to the receiver */
    hm_addr **waiters;        /* guarded by: qlock; owned references:
                                 proxies holding a message until there
                                 is room (hm_ctx_hold) */
    size_t w_count, w_cap;    /* guarded by: qlock */
    /* Gauges, read by proxies for backpressure: messages and bytes
     * queued by proxies and not yet taken, and held in the outbox. The
     * receiver stores the outbox ones before it subtracts (release) from
     * the queued ones, and proxies load the queued ones first (acquire),
     * so the sum a proxy reads never dips below the truth. */
    _Atomic size_t q_pending, q_bytes, out_count, out_bytes;
    hm_addr *self;            /* owned: our receiver's address */
    uint64_t batches;      /* inbound batches handled */
    uint64_t routed_here;  /* routed_addr was found local in this batch */
    const hm_addr *routed_addr; /* compared only, never dereferenced */
    hm_outbox *outbox;
    hm_inbox inbox;   /* for the incarnation in_inc */
    uint64_t in_inc;  /* whose cl.msg we filter */
    uint64_t out_inc; /* whose cl.ack we accept: the linked incarnation */
    kept *kept;
    size_t kept_count, kept_cap;
    _Atomic uint32_t buffered; /* relaxed: read by the snapshot */
    _Atomic uint64_t undeliverable;
};

cl_peer *cl_peer_create(hm_node *n, const char *name)
{
    cl_peer *p = hm_calloc(1, sizeof *p);

    p->node = n;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->outbox = hm_outbox_create(
        &(hm_outbox_config){.max_count = 2 * (size_t)n->buffer_limit,
                            .max_bytes = 2 * CL_PEER_MAX_BYTES});
    pthread_mutex_init(&p->qlock, NULL);
    return p;
}

cl_peer *cl_peer_ensure(hm_node *n, const char *name, hm_addr **addr_out)
{
    char pname[sizeof CL_PEER_PREFIX + CL_NAME_CAP];
    cl_peer *p = NULL;

    snprintf(pname, sizeof pname, CL_PEER_PREFIX "%s", name);
    /* Under the lock, so that a link receiver and the node receiver never
     * both create it, and the receiver exists before anyone is told of it
     * (a message to a missing "cluster/" name would be dead-lettered). */
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->peer_count && !p; i++)
        if (strcmp(n->peers[i]->name, name) == 0)
            p = n->peers[i];
    if (!p) {
        p = cl_peer_create(n, name);
        if (hm_runtime_spawn(n->rt, pname,
                             &(hm_receiver){.handler = cl_peer_handle,
                                            .state = p,
                                            .hooks = &cl_peer_hooks,
                                            .pinned = true},
                             addr_out) != HM_OK) {
            pthread_mutex_unlock(&n->lock);
            cl_peer_destroy(p);
            return NULL;
        }
        p->self = hm_addr_ref(*addr_out);
        /* Acknowledgements due by time, and writes the link refused. */
        hm_runtime_send_every(n->rt, *addr_out, HM_INBOX_ACK_MS, 0, NULL);
        if (n->peer_count == n->peer_cap) {
            n->peer_cap = n->peer_cap ? 2 * n->peer_cap : 8;
            n->peers = hm_realloc(n->peers, n->peer_cap * sizeof *n->peers);
        }
        n->peers[n->peer_count++] = p;
    } else if (hm_runtime_intern(n->rt, pname, addr_out) != HM_OK) {
        p = NULL;
    }
    pthread_mutex_unlock(&n->lock);
    return p;
}

uint32_t cl_peer_buffered(const cl_peer *p)
{
    /* relaxed: a gauge for the snapshot; nothing is read through it. */
    return atomic_load_explicit(&p->buffered, memory_order_relaxed);
}

uint64_t cl_peer_undeliverable(const cl_peer *p)
{
    /* relaxed: a counter. */
    return atomic_load_explicit(&p->undeliverable, memory_order_relaxed);
}

static void count_drop(cl_peer *p)
{
    /* relaxed: counters. */
    atomic_fetch_add_explicit(&p->undeliverable, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->node->st_undeliverable, 1,
                              memory_order_relaxed);
}

static bool over(cl_peer *p, size_t count, size_t bytes)
{
    return count >= p->node->buffer_limit || bytes >= CL_PEER_MAX_BYTES;
}

/* Wakes every proxy holding a message for room (cl_peer_queue). */
static void wake_waiters(cl_peer *p)
{
    hm_addr **w;
    size_t count;

    pthread_mutex_lock(&p->qlock);
    if (!p->w_count) {
        pthread_mutex_unlock(&p->qlock);
        return;
    }
    w = p->waiters;
    count = p->w_count;
    p->waiters = NULL;
    p->w_count = p->w_cap = 0;
    pthread_mutex_unlock(&p->qlock);
    for (size_t i = 0; i < count; i++) {
        hm_runtime_wake(p->node->rt, w[i]);
        hm_addr_release(w[i]);
    }
    hm_free(w);
}

static void update_buffered(cl_peer *p)
{
    size_t count = hm_outbox_count(p->outbox);
    size_t bytes = hm_outbox_bytes(p->outbox);

    /* relaxed: gauges (publish() in node_recv.c, cl_peer_queue()). */
    atomic_store_explicit(&p->buffered, (uint32_t)count,
                          memory_order_relaxed);
    atomic_store_explicit(&p->out_count, count, memory_order_relaxed);
    atomic_store_explicit(&p->out_bytes, bytes, memory_order_relaxed);
    /* Room for a quarter of the bound again: the holders go on. The read
     * of w_count is a hint; wake_waiters() takes the lock. */
    if (p->gone || !over(p, count + count / 3, bytes + bytes / 3))
        wake_waiters(p);
}

/* ------------------------------------------------------------ outbound */

#define BATCH_MAX_LEN (256u * 1024u) /* bytes per connection write */

/* Writes what the outbox has not written yet, in order, several lines per
 * connection write. */
static void pump(cl_peer *p)
{
    const char *inner;
    size_t len, used = 0, cap = 0, count, bytes;
    uint64_t seq;
    char *batch = NULL;
    bool more = true;

    while (p->conn && more) {
        if (!batch) {
            /* Sized once for what is left (the cl.msg around each line is
             * under 128 bytes), at most one write's worth. */
            hm_outbox_unsent(p->outbox, &count, &bytes);
            if (!count)
                break;
            cap = bytes + 128 * count;
            cap = cap < BATCH_MAX_LEN + 4096 ? cap : BATCH_MAX_LEN + 4096;
            batch = hm_alloc(cap);
        }
        more = hm_outbox_next(p->outbox, &inner, &len, &seq);
        if (more)
            cl_fast_wrap_routed(&batch, &used, &cap, inner, len, seq);
        if (used && (!more || used >= BATCH_MAX_LEN)) {
            /* Bulk: control lines go first (net/conn.h). */
            if (hm_conn_write_bulk(p->conn, batch, used) != HM_OK) {
                /* The link is full or closing: write it all again later
                 * (the peer's duplicate filter drops what it has). */
                hm_outbox_rewind(p->outbox);
                break;
            }
            batch = NULL;
            used = cap = 0;
        }
    }
    hm_free(batch);
    update_buffered(p);
}

/* Asks for a flush (take the proxies' queue, then pump) once the messages
 * queued to us now are handled: everything pushed meanwhile goes out in
 * one write. `ctx` may be a proxy's or our own. */
static void send_flush(hm_ctx *ctx, cl_peer *p);

static void flush_soon(hm_ctx *ctx, cl_peer *p)
{
    bool send;

    pthread_mutex_lock(&p->qlock);
    send = !p->flush_pending;
    p->flush_pending = true;
    pthread_mutex_unlock(&p->qlock);
    if (send)
        send_flush(ctx, p);
}

/* Sends the flush message that flush_pending announced. */
static void send_flush(hm_ctx *ctx, cl_peer *p)
{
    hm_msg *m = hm_msg_create(&cl_flush_type, NULL, 0);

    if (!p->self || hm_ctx_send(ctx, p->self, m) != HM_OK) {
        hm_msg_destroy(m); /* closing: nothing will be written anyway */
        pthread_mutex_lock(&p->qlock);
        p->flush_pending = false;
        pthread_mutex_unlock(&p->qlock);
    }
}

static void pump_soon(hm_ctx *ctx, cl_peer *p)
{
    if (p->conn)
        flush_soon(ctx, p);
}

/* Whether the gauges say the peer holds its bound. */
static bool gauges_over(cl_peer *p)
{
    /* acquire: pairs with on_flush()'s release subtractions, so the
     * outbox gauges read next are no older than the queued ones (the sum
     * never dips below the truth). relaxed for the outbox gauges: read
     * after the acquire. Proxies running at once on other workers may
     * each pass this check before the others' lines are counted: the
     * outbox may pass buffer_limit by one line per other worker. */
    size_t pending = atomic_load_explicit(&p->q_pending, memory_order_acquire);
    size_t qbytes = atomic_load_explicit(&p->q_bytes, memory_order_acquire);
    size_t count =
        pending + atomic_load_explicit(&p->out_count, memory_order_relaxed);
    size_t bytes =
        qbytes + atomic_load_explicit(&p->out_bytes, memory_order_relaxed);

    return over(p, count, bytes);
}

bool cl_peer_full(hm_ctx *ctx, cl_peer *p)
{
    hm_addr *self = hm_ctx_self(ctx);
    size_t i = 0;
    bool full;

    if (!gauges_over(p))
        return false; /* the common case, without the lock */
    pthread_mutex_lock(&p->qlock);
    while (i < p->w_count && p->waiters[i] != self)
        i++;
    if (i == p->w_count) {
        if (p->w_count == p->w_cap) {
            p->w_cap = p->w_cap ? 2 * p->w_cap : 8;
            p->waiters =
                hm_realloc(p->waiters, p->w_cap * sizeof *p->waiters);
        }
        p->waiters[p->w_count++] = hm_addr_ref(self);
    }
    /* Again, registered: the receiver stores the gauges before it takes
     * the lock to wake, so either it sees us or we see its room (then we
     * stay registered; a spurious wake is harmless). */
    full = gauges_over(p);
    pthread_mutex_unlock(&p->qlock);
    return full;
}

hm_err cl_peer_queue(hm_ctx *ctx, cl_peer *p, cl_out *o)
{
    bool send;

    pthread_mutex_lock(&p->qlock);
    /* relaxed: gauges; this proxy's next check, which happens after it,
     * sees them (coherence), and on_flush() takes them under qlock. */
    atomic_fetch_add_explicit(&p->q_pending, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->q_bytes, o->len, memory_order_relaxed);
    if (p->q_count == p->q_cap) {
        p->q_cap = p->q_cap ? 2 * p->q_cap : 64;
        p->q = hm_realloc(p->q, p->q_cap * sizeof *p->q);
    }
    if (p->qbuf_cap - p->qbuf_used < o->len) {
        size_t cap = p->qbuf_cap ? 2 * p->qbuf_cap : 16u * 1024u;
        while (cap - p->qbuf_used < o->len)
            cap *= 2;
        p->qbuf = hm_realloc(p->qbuf, cap);
        p->qbuf_cap = cap;
    }
    memcpy(p->qbuf + p->qbuf_used, o->line, o->len);
    p->q[p->q_count++] = (queued){.off = p->qbuf_used, .len = o->len,
                                  .req = o->req, .request = o->request};
    p->qbuf_used += o->len;
    send = !p->flush_pending;
    p->flush_pending = true;
    pthread_mutex_unlock(&p->qlock);
    memset(o, 0, sizeof *o);
    if (send)
        send_flush(ctx, p);
    return HM_OK;
}

static void keep_request(cl_peer *p, uint64_t req, hm_msg *request)
{
    if (p->kept_count == p->kept_cap) {
        p->kept_cap = p->kept_cap ? 2 * p->kept_cap : 8;
        p->kept = hm_realloc(p->kept, p->kept_cap * sizeof *p->kept);
    }
    p->kept[p->kept_count++] = (kept){.req = req, .request = request};
}

static void on_out(hm_ctx *ctx, cl_peer *p, const char *qbuf, queued *o)
{
    uint64_t seq;

    if (p->gone ||
        hm_outbox_push(p->outbox, qbuf + o->off, o->len, &seq) != HM_OK) {
        count_drop(p);
        if (o->request)
            hm_ctx_reply_error(ctx, o->request, HM_EUNREACHABLE);
        return;
    }
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&p->node->st_sent, 1, memory_order_relaxed);
    if (o->request) {
        keep_request(p, o->req, o->request);
        o->request = NULL;
    }
}

/* Takes what the proxies queued, into the outbox in order, and writes. */
static void on_flush(hm_ctx *ctx, cl_peer *p)
{
    queued *q;
    char *qbuf;
    size_t count;

    pthread_mutex_lock(&p->qlock);
    q = p->q;
    count = p->q_count;
    qbuf = p->qbuf;
    p->q = NULL;
    p->q_count = p->q_cap = 0;
    p->qbuf = NULL;
    p->qbuf_used = p->qbuf_cap = 0;
    p->flush_pending = false;
    pthread_mutex_unlock(&p->qlock);
    size_t bytes = 0;

    for (size_t i = 0; i < count; i++) {
        bytes += q[i].len;
        on_out(ctx, p, qbuf, &q[i]);
        hm_msg_destroy(q[i].request);
    }
    hm_free(q);
    hm_free(qbuf);
    update_buffered(p); /* the outbox first: the sum never dips */
    /* release: a proxy whose acquire load sees these subtractions also
     * sees the outbox gauges stored above (gauges_over()). */
    atomic_fetch_sub_explicit(&p->q_pending, count, memory_order_release);
    atomic_fetch_sub_explicit(&p->q_bytes, bytes, memory_order_release);
    pump(p);
}

/* Queues the reply to the peer's request `id`: `reply` (borrowed) or an
 * error reply with `err`. */
static void send_reply(hm_ctx *ctx, cl_peer *p, uint64_t id,
                       const hm_msg *reply, hm_err err)
{
    hm_msg *made = NULL;
    char *line;
    size_t len;
    uint64_t seq;

    if (!reply || (err != HM_OK && hm_msg_type(reply) != &hm_type_error))
        reply = made = hm_msg_create(&hm_type_error, NULL, (uint64_t)err);
    if (p->gone ||
        cl_encode_app(reply, NULL, NULL, id, true, &line, &len) != HM_OK) {
        count_drop(p);
    } else if (hm_outbox_push(p->outbox, line, len - 1, &seq) != HM_OK) {
        hm_free(line);
        count_drop(p);
    } else {
        hm_free(line); /* the outbox copied it */
        pump_soon(ctx, p);
    }
    hm_msg_destroy(made);
}

/* A local request made for the peer has its outcome. */
static void on_local_reply(hm_ctx *ctx, void *state, hm_msg *reply,
                           hm_err err, void *arg)
{
    send_reply(ctx, state, (uint64_t)(uintptr_t)arg, reply, err);
}

/* ------------------------------------------------------------- inbound */

static void answer_kept(hm_ctx *ctx, cl_peer *p, uint64_t req, hm_msg *m)
{
    for (size_t i = 0; i < p->kept_count; i++) {
        if (p->kept[i].req != req)
            continue;
        if (hm_ctx_reply(ctx, p->kept[i].request, m) == HM_OK)
            m = NULL;
        hm_msg_destroy(p->kept[i].request);
        p->kept[i] = p->kept[--p->kept_count];
        break;
    }
    hm_msg_destroy(m); /* the requester is gone */
}

/* Delivers the decoded message of `in` on this node only: the reply to one
 * of our kept requests, a request made here for the peer (its outcome goes
 * back through the outbox), or a send, which arrives with its original
 * sender's address as hm_msg_from() (NULL if it had none). One hop only:
 * a target that lives on another member by our view is refused, never
 * forwarded (checked once per target per batch). */
static void deliver(hm_ctx *ctx, cl_peer *p, cl_in *in)
{
    hm_runtime *rt = hm_ctx_runtime(ctx);
    bool request = in->id && !in->reply;
    char where[CL_NAME_CAP];
    hm_err err = in->err;

    if (err == HM_OK) {
        /* relaxed: a counter. */
        atomic_fetch_add_explicit(&p->node->st_received, 1,
                                  memory_order_relaxed);
        if (in->reply) {
            answer_kept(ctx, p, in->id, in->msg);
            in->msg = NULL;
            return;
        }
        if (!in->to) {
            err = HM_EINVAL;
        } else if ((p->routed_here != p->batches ||
                    p->routed_addr != in->to) &&
                   cl_route(p->node, hm_addr_name(in->to), where)) {
            err = HM_EUNREACHABLE; /* it lives elsewhere now: no bounce */
        } else if ((p->routed_here = p->batches), (p->routed_addr = in->to),
                   !request) {
            err = hm_runtime_send_from(rt, in->from, in->to, in->msg);
        } else {
            err = hm_ctx_request(ctx, in->to, in->msg,
                                 p->node->request_timeout_ms, on_local_reply,
                                 (void *)(uintptr_t)in->id, NULL);
        }
        if (err == HM_OK) {
            in->msg = NULL; /* the runtime took it */
            return;
        }
    }
    HM_LOG_DEBUG("CL-UNDELIVERABLE", "%s: a message from %s for %s: %s",
                 p->node->name, p->name, in->to ? hm_addr_name(in->to) : "?",
                 hm_err_str(err));
    count_drop(p);
    if (request)
        send_reply(ctx, p, in->id, NULL, err);
}

static void ack_if_due(hm_ctx *ctx, cl_peer *p)
{
    uint64_t seq;
    char *line;
    size_t len;

    if (!p->conn || !hm_inbox_ack_due(&p->inbox, hm_ctx_now_ms(ctx), &seq))
        return;
    line = cl_fast_ack_line(seq, &len);
    /* Ahead of our own routed traffic (bulk): the peer frees its buffer
     * sooner. */
    if (hm_conn_write_take(p->conn, line, len) != HM_OK)
        hm_free(line);
}

static void on_in_batch(hm_ctx *ctx, cl_peer *p, cl_in_batch *b)
{
    p->batches++; /* routes are checked again in each batch */
    if (b->inc != p->in_inc) { /* a new incarnation numbers afresh */
        memset(&p->inbox, 0, sizeof p->inbox);
        p->in_inc = b->inc;
    }
    for (size_t i = 0; i < b->count; i++) {
        cl_in *in = &b->items[i];

        if (in->ack) {
            if (b->inc == p->out_inc) {
                hm_outbox_ack(p->outbox, in->seq);
                update_buffered(p);
            }
        } else if (hm_inbox_accept(&p->inbox, in->seq)) {
            deliver(ctx, p, in);
        } /* else a replay after a reconnection: delivered already */
    }
    ack_if_due(ctx, p);
}

/* ------------------------------------------------------------ the link */

static void fail_kept(hm_ctx *ctx, cl_peer *p, hm_err why)
{
    for (size_t i = 0; i < p->kept_count; i++) {
        if (ctx)
            hm_ctx_reply_error(ctx, p->kept[i].request, why);
        hm_msg_destroy(p->kept[i].request);
    }
    p->kept_count = 0;
}

static void drop_one(void *arg, const char *line, size_t len, uint64_t seq)
{
    (void)line;
    (void)len;
    (void)seq;
    count_drop(arg);
}

static void set_conn(cl_peer *p, hm_conn *conn)
{
    hm_conn_release(p->conn);
    p->conn = conn;
}

hm_err cl_peer_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    cl_peer *p = state;
    const hm_type *t = hm_msg_type(msg);
    cl_ev *ev = hm_msg_payload(msg);

    if (t == &cl_in_batch_type) {
        on_in_batch(ctx, p, hm_msg_payload(msg));
    } else if (t == &cl_flush_type) {
        on_flush(ctx, p);
    } else if (t == &hm_type_tick) {
        ack_if_due(ctx, p);
        pump(p);
    } else if (t == &cl_peer_up_type) {
        set_conn(p, ev->conn);
        ev->conn = NULL;
        p->gone = false;
        p->out_inc = ev->inc;
        hm_outbox_rewind(p->outbox); /* unacknowledged ones go again */
        pump(p);
    } else if (t == &cl_peer_down_type) {
        set_conn(p, NULL);
        hm_outbox_rewind(p->outbox);
    } else if (t == &cl_peer_gone_type) {
        set_conn(p, NULL);
        p->gone = true;
        hm_outbox_discard(p->outbox, drop_one, p);
        update_buffered(p);
        fail_kept(ctx, p, HM_EUNREACHABLE);
    }
    return HM_OK;
}

static void drop_queue(cl_peer *p)
{
    pthread_mutex_lock(&p->qlock);
    for (size_t i = 0; i < p->q_count; i++)
        hm_msg_destroy(p->q[i].request);
    hm_free(p->q);
    p->q = NULL;
    p->q_count = p->q_cap = 0;
    hm_free(p->qbuf);
    p->qbuf = NULL;
    p->qbuf_used = p->qbuf_cap = 0;
    for (size_t i = 0; i < p->w_count; i++)
        hm_addr_release(p->waiters[i]);
    hm_free(p->waiters);
    p->waiters = NULL;
    p->w_count = p->w_cap = 0;
    pthread_mutex_unlock(&p->qlock);
}

static void peer_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    cl_peer *p = state;

    (void)ctx;
    (void)why;
    /* Only at close (the receiver is pinned), after the workers stopped:
     * nobody is left to answer, and no proxy queues any more. */
    fail_kept(NULL, p, HM_ECLOSED);
    set_conn(p, NULL);
    drop_queue(p);
    hm_addr_release(p->self);
    p->self = NULL;
}

const hm_hooks cl_peer_hooks = {.deactivate = peer_deactivate};

void cl_peer_destroy(cl_peer *p)
{
    if (!p)
        return;
    fail_kept(NULL, p, HM_ECLOSED);
    set_conn(p, NULL);
    drop_queue(p);
    hm_outbox_destroy(p->outbox);
    hm_free(p->kept);
    pthread_mutex_destroy(&p->qlock);
    hm_free(p);
}
