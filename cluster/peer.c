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

#include <jansson.h>
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
    return atomic_load_explicit(&p->buffered, memory_order_relaxed);
}

uint64_t cl_peer_undeliverable(const cl_peer *p)
{
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

/* Writes what the outbox has not written yet, in order. */
static void pump(cl_peer *p)
{
    const char *inner;
    size_t len, blen;
    uint64_t seq;

    while (p->conn && hm_outbox_next(p->outbox, &inner, &len, &seq)) {
        char *buf = wrap(inner, len, seq, &blen);

        if (hm_conn_write_take(p->conn, buf, blen) != HM_OK) {
            /* The link is full or closing: write it all again later (the
             * peer's duplicate filter drops what it already has). */
            hm_free(buf);
            hm_outbox_rewind(p->outbox);
            break;
        }
    }
    update_buffered(p);
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
    pump(p);
}

/* Queues the reply to the peer's request `id`: `reply` (borrowed) or an
 * error reply with `err`. */
static void send_reply(cl_peer *p, uint64_t id, const hm_msg *reply,
                       hm_err err)
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
        pump(p);
    }
    hm_msg_destroy(made);
}

/* A local request made for the peer has its outcome. */
static void on_local_reply(hm_ctx *ctx, void *state, hm_msg *reply,
                           hm_err err, void *arg)
{
    (void)ctx;
    send_reply(state, (uint64_t)(uintptr_t)arg, reply, err);
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

static void deliver(hm_ctx *ctx, cl_peer *p, const hm_hp_msg *hp)
{
    hm_msg *m;
    hm_addr *to;
    hm_err err = hm_hp_decode_msg(hm_ctx_runtime(ctx), hp, &m);
    bool request = hp->id && !hp->u.msg.reply;

    if (err == HM_OK) {
        /* relaxed: a counter. */
        atomic_fetch_add_explicit(&p->node->st_received, 1,
                                  memory_order_relaxed);
        if (hp->u.msg.reply) {
            answer_kept(ctx, p, hp->id, m);
            return;
        }
        if (!hp->to) {
            err = HM_EINVAL;
        } else if (!request) {
            err = hm_ctx_send_name(ctx, hp->to, m);
        } else if ((err = hm_runtime_intern(hm_ctx_runtime(ctx), hp->to,
                                            &to)) == HM_OK) {
            err = hm_ctx_request(ctx, to, m, p->node->request_timeout_ms,
                                 on_local_reply, (void *)(uintptr_t)hp->id,
                                 NULL);
            hm_addr_release(to);
        }
        if (err == HM_OK)
            return;
        hm_msg_destroy(m);
    }
    HM_LOG_DEBUG("CL-UNDELIVERABLE", "%s: %s from %s: %s", p->node->name,
                 hp->u.msg.type, p->name, hm_err_str(err));
    count_drop(p);
    if (request)
        send_reply(p, hp->id, NULL, err);
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
    const hm_wire_msg *w = &ev->wire;
    hm_hp_msg hp;
    hm_hp_fail fail;
    const char *text;

    if (ev->inc != p->in_inc) { /* a new incarnation numbers afresh */
        memset(&p->inbox, 0, sizeof p->inbox);
        p->in_inc = ev->inc;
    }
    if (!hm_inbox_accept(&p->inbox, w->u.routed.seq))
        return; /* a replay after a reconnection: delivered already */
    text = ev->str; /* the inner HP message, as text (link.c) */
    if (text && hm_hp_decode((const uint8_t *)text, strlen(text), &hp,
                             &fail) == HM_OK) {
        if (hp.kind == HM_HP_MSG)
            deliver(ctx, p, &hp);
        else
            count_drop(p);
        hm_hp_msg_fini(&hp);
    } else {
        count_drop(p);
    }
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

const hm_hooks cl_peer_hooks = {NULL, peer_deactivate};

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
