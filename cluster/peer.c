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

#include "cluster/outbox.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

typedef struct kept {
    uint64_t req;
    hm_msg *request; /* owned: stands for the requester */
} kept;

struct cl_peer {
    hm_node *node;
    char name[CL_NAME_CAP];
    hm_conn *conn; /* owned reference; NULL while the link is down */
    bool gone;     /* dead, left or replaced: nothing waits */
    bool flush_pending; /* a cl_flush_type message is queued to us */
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
        &(hm_outbox_config){.max_count = n->buffer_limit});
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

static void update_buffered(cl_peer *p)
{
    /* relaxed: a gauge for the snapshot (publish() in node_recv.c). */
    atomic_store_explicit(&p->buffered, (uint32_t)hm_outbox_count(p->outbox),
                          memory_order_relaxed);
}

/* ------------------------------------------------------------ outbound */

/* The line of cl.msg {seq, msg: inner}, built around the inner HP message
 * without parsing it again. Returns owned. */
static char *wrap(const char *inner, size_t len, uint64_t seq,
                  size_t *len_out)
{
    static const char suffix[] = "}}}\n";
    char head[160];
    int hlen = snprintf(head, sizeof head,
                        "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":"
                        "\"cl.msg\",\"data\":{\"v\":1,\"t\":\"cl.msg\","
                        "\"seq\":%llu,\"msg\":",
                        (unsigned long long)seq);
    char *buf = hm_alloc((size_t)hlen + len + sizeof suffix);

    memcpy(buf, head, (size_t)hlen);
    memcpy(buf + hlen, inner, len);
    memcpy(buf + hlen + len, suffix, sizeof suffix - 1);
    *len_out = (size_t)hlen + len + sizeof suffix - 1;
    return buf;
}

#define BATCH_MAX_LEN (256u * 1024u) /* bytes per connection write */

/* Writes what the outbox has not written yet, in order, several lines per
 * connection write. */
static void pump(cl_peer *p)
{
    const char *inner;
    size_t len, blen, used = 0, cap = 0;
    uint64_t seq;
    char *batch = NULL;
    bool more = true;

    while (p->conn && more) {
        more = hm_outbox_next(p->outbox, &inner, &len, &seq);
        if (more) {
            char *line = wrap(inner, len, seq, &blen);

            if (used + blen > cap) {
                cap = used + blen > 2 * cap ? used + blen : 2 * cap;
                batch = hm_realloc(batch, cap);
            }
            memcpy(batch + used, line, blen);
            used += blen;
            hm_free(line);
        }
        if (used && (!more || used >= BATCH_MAX_LEN)) {
            if (hm_conn_write_take(p->conn, batch, used) != HM_OK) {
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

/* Asks for a pump once the messages queued now are handled: everything
 * pushed meanwhile goes out in one write. */
static void pump_soon(hm_ctx *ctx, cl_peer *p)
{
    hm_msg *m;

    if (p->flush_pending || !p->conn)
        return;
    m = hm_msg_create(&cl_flush_type, NULL, 0);
    if (hm_ctx_send(ctx, hm_ctx_self(ctx), m) != HM_OK) {
        hm_msg_destroy(m);
        pump(p);
        return;
    }
    p->flush_pending = true;
}

static void keep_request(cl_peer *p, uint64_t req, hm_msg *request)
{
    if (p->kept_count == p->kept_cap) {
        p->kept_cap = p->kept_cap ? 2 * p->kept_cap : 8;
        p->kept = hm_realloc(p->kept, p->kept_cap * sizeof *p->kept);
    }
    p->kept[p->kept_count++] = (kept){.req = req, .request = request};
}

static void on_out(hm_ctx *ctx, cl_peer *p, cl_out *o)
{
    uint64_t seq;

    if (p->gone ||
        hm_outbox_push(p->outbox, o->line, o->len, &seq) != HM_OK) {
        count_drop(p);
        if (o->request)
            hm_ctx_reply_error(ctx, o->request, HM_EUNREACHABLE);
        return;
    }
    o->line = NULL; /* the outbox took it */
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&p->node->st_sent, 1, memory_order_relaxed);
    if (o->request) {
        keep_request(p, o->req, o->request);
        o->request = NULL;
    }
    pump_soon(ctx, p);
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

/* Delivers the decoded message of `ev` on this node only: the reply to one
 * of our kept requests, a request made here for the peer (its outcome goes
 * back through the outbox), or a send. */
static void deliver(hm_ctx *ctx, cl_peer *p, cl_ev *ev)
{
    bool request = ev->id && !ev->flag;
    hm_err err = ev->err;
    hm_addr *to;

    if (err == HM_OK) {
        /* relaxed: a counter. */
        atomic_fetch_add_explicit(&p->node->st_received, 1,
                                  memory_order_relaxed);
        if (ev->flag) {
            answer_kept(ctx, p, ev->id, ev->msg);
            ev->msg = NULL;
            return;
        }
        if (!ev->str) {
            err = HM_EINVAL;
        } else if (!request) {
            err = hm_ctx_send_name(ctx, ev->str, ev->msg);
        } else if ((err = hm_runtime_intern(hm_ctx_runtime(ctx), ev->str,
                                            &to)) == HM_OK) {
            err = hm_ctx_request(ctx, to, ev->msg,
                                 p->node->request_timeout_ms, on_local_reply,
                                 (void *)(uintptr_t)ev->id, NULL);
            hm_addr_release(to);
        }
        if (err == HM_OK) {
            ev->msg = NULL; /* the runtime took it */
            return;
        }
    }
    HM_LOG_DEBUG("CL-UNDELIVERABLE", "%s: a message from %s for %s: %s",
                 p->node->name, p->name, ev->str ? ev->str : "?",
                 hm_err_str(err));
    count_drop(p);
    if (request)
        send_reply(ctx, p, ev->id, NULL, err);
}

static void ack_if_due(hm_ctx *ctx, cl_peer *p)
{
    hm_wire_msg w = {.type = HM_WIRE_ACK};
    char *line;
    size_t len;

    if (!p->conn || !hm_inbox_ack_due(&p->inbox, hm_ctx_now_ms(ctx),
                                      &w.u.ack.seq))
        return;
    if (cl_encode_wire(&w, &line, &len) != HM_OK)
        return;
    if (hm_conn_write_take(p->conn, line, len) != HM_OK)
        hm_free(line);
}

static void on_routed(hm_ctx *ctx, cl_peer *p, cl_ev *ev)
{
    if (ev->inc != p->in_inc) { /* a new incarnation numbers afresh */
        memset(&p->inbox, 0, sizeof p->inbox);
        p->in_inc = ev->inc;
    }
    if (hm_inbox_accept(&p->inbox, ev->wire.u.routed.seq))
        deliver(ctx, p, ev);
    /* else a replay after a reconnection: delivered already */
    ack_if_due(ctx, p);
}

static void on_inbound(hm_ctx *ctx, cl_peer *p, cl_ev *ev)
{
    if (ev->wire.type == HM_WIRE_ROUTED) {
        on_routed(ctx, p, ev);
    } else if (ev->wire.type == HM_WIRE_ACK && ev->inc == p->out_inc) {
        hm_outbox_ack(p->outbox, ev->wire.u.ack.seq);
        update_buffered(p);
    }
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

    if (t == &cl_out_type) {
        on_out(ctx, p, hm_msg_payload(msg));
    } else if (t == &cl_inbound_type) {
        on_inbound(ctx, p, ev);
    } else if (t == &cl_flush_type) {
        p->flush_pending = false;
        pump(p);
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

static void peer_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    cl_peer *p = state;

    (void)ctx;
    (void)why;
    /* Only at close (the receiver is pinned): nobody is left to answer. */
    fail_kept(NULL, p, HM_ECLOSED);
    set_conn(p, NULL);
}

const hm_hooks cl_peer_hooks = {.deactivate = peer_deactivate};

void cl_peer_destroy(cl_peer *p)
{
    if (!p)
        return;
    fail_kept(NULL, p, HM_ECLOSED);
    set_conn(p, NULL);
    hm_outbox_destroy(p->outbox);
    hm_free(p->kept);
    hm_free(p);
}
