/* cluster/proxy.c: routing application messages to other nodes: where a
 * name lives, the proxy receivers that stand for remote ones, and the peer
 * receivers that own the outbound side of each member.
 *
 * A send to an address that lives on another node activates, through the
 * wrapped factory, a local *proxy* under that address. The proxy encodes
 * each message with its type's codec into an HP "msg" line (on its own
 * worker, so encoding runs in parallel) and hands the line to
 * "cluster/peer/<member>", which writes it to the member's current link, or
 * keeps it in a bounded buffer while the link is down and the member not yet
 * dead, and writes the buffer in order when the link returns. A request
 * keeps its original message (hm_msg_move keeps the requester and the
 * request id) in the peer receiver under a link-level id; the reply that
 * comes back with that id answers it through hm_ctx_reply(), so the
 * requester's continuation or timeout works as for a local request.
 *
 * Key decision (the one-hop rule): a proxy refuses every message that came
 * from a link receiver. A message that crossed one link is delivered on the
 * node it reached or not at all, so two nodes that disagree for a moment
 * about where a name lives can never bounce a message between them. */
#include "cluster/node_impl.h"

#include "cluster/fast.h"
#include "cluster/route.h"
#include "net/line.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------------- where */

/* A homed name (hm_node_home_fn): remote if its node is another live
 * member, else local. */
static bool route_home(hm_node *n, const char *home, char *node_out)
{
    bool live = false;

    if (strcmp(home, n->name) == 0)
        return false;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->live_count && !live; i++)
        live = strcmp(n->live[i], home) == 0;
    pthread_mutex_unlock(&n->lock);
    if (live)
        strcpy(node_out, home);
    return live;
}

bool cl_route(hm_node *n, const char *name, char *node_out)
{
    char home[CL_NAME_CAP];
    bool placed = n->placed && n->placed(n->placed_arg, name);
    const char *self_only[1] = {n->name};
    const char **live = NULL;
    hm_route_view v = {.self = n->name,
                       .members = {.names = self_only, .count = 1}};
    hm_route r;

    if (n->home && n->home(n->home_arg, name, home))
        return route_home(n, home, node_out);
    pthread_mutex_lock(&n->lock);
    v.presence = n->pres;
    if (placed && n->live_count > 1) {
        /* Only placed names move with membership; the others are local
         * unless presence says otherwise. */
        live = hm_alloc(n->live_count * sizeof *live);
        for (size_t i = 0; i < n->live_count; i++)
            live[i] = n->live[i];
        v.members.names = live;
        v.members.count = n->live_count;
    }
    hm_route_resolve(&v, name, &r);
    pthread_mutex_unlock(&n->lock);
    hm_free(live);
    if (r.kind != HM_ROUTE_REMOTE)
        return false;
    strcpy(node_out, r.node);
    return true;
}

hm_err hm_node_lookup(hm_node *n, const char *name, char *node_out)
{
    char origin[CL_NAME_CAP];
    bool placed = n->placed && n->placed(n->placed_arg, name);
    bool found;

    if (cl_route(n, name, node_out))
        return HM_OK;
    pthread_mutex_lock(&n->lock);
    found = n->pres && hm_presence_lookup(n->pres, name, origin) == HM_OK;
    pthread_mutex_unlock(&n->lock);
    if (!found && !placed)
        return HM_ENOTFOUND;
    strcpy(node_out, n->name);
    return HM_OK;
}

static void count_undeliverable(hm_node *n)
{
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&n->st_undeliverable, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------ proxies */

typedef struct proxy {
    hm_node *node;
    char peer[CL_NAME_CAP];
    hm_addr *peer_addr; /* owned: "cluster/peer/<peer>" */
    cl_peer *cp;        /* borrowed: the node keeps its peers */
    uint64_t epoch;     /* n->route_epoch when last resolved */
    bool here;          /* the name resolved to this node then */
    /* The names of the last message encoded, escaped once (fast.h). */
    cl_jstr to_j, from_j, type_j;
    cl_jstr head;          /* cl_fast_head() of the three; NULL p: stale */
    hm_addr *from_key;     /* a reference: whose from_j it is */
    const hm_type *type_key;
    char *enc;             /* owned: the line being encoded, reused */
    size_t enc_cap;
} proxy;

static void proxy_retarget(hm_ctx *ctx, proxy *p, const char *peer)
{
    hm_addr *a;
    cl_peer *cp = cl_peer_ensure(p->node, peer, &a);

    (void)ctx;
    if (!cp)
        return;
    hm_addr_release(p->peer_addr);
    p->peer_addr = a;
    p->cp = cp;
    strcpy(p->peer, peer);
}

static void refuse_msg(hm_ctx *ctx, proxy *p, hm_msg *msg, hm_err why)
{
    count_undeliverable(p->node);
    HM_LOG_DEBUG("CL-UNDELIVERABLE", "%s: %s for %s: %s", p->node->name,
                 hm_msg_type(msg)->name, hm_addr_name(hm_ctx_self(ctx)),
                 hm_err_str(why));
    if (hm_msg_req_id(msg) && !hm_msg_is_reply(msg))
        hm_ctx_reply_error(ctx, msg, why);
}

static hm_err proxy_forward(hm_ctx *ctx, proxy *p, hm_msg *msg)
{
    hm_node *n = p->node;
    bool request = hm_msg_req_id(msg) && !hm_msg_is_reply(msg);
    const hm_addr *from = hm_msg_from(msg);
    cl_out o = {0};
    size_t used = 0;
    hm_err err;

    if (request) /* relaxed: ids need only be unique. */
        o.req = atomic_fetch_add_explicit(&n->next_req, 1,
                                          memory_order_relaxed) + 1;
    if (!p->to_j.p && !cl_jstr_set(&p->to_j, hm_addr_name(hm_ctx_self(ctx))))
        return HM_EINVAL;
    if (from != p->from_key) {
        cl_jstr_fini(&p->head);
        cl_jstr_fini(&p->from_j);
        hm_addr_release(p->from_key);
        p->from_key = NULL;
        if (from && !cl_jstr_set(&p->from_j, hm_addr_name(from)))
            return HM_EINVAL;
        p->from_key = from ? hm_addr_ref((hm_addr *)from) : NULL;
    }
    if (hm_msg_type(msg) != p->type_key) {
        cl_jstr_fini(&p->head);
        p->type_key = NULL;
        if (!cl_jstr_set(&p->type_j, hm_msg_type(msg)->name))
            return HM_EINVAL;
        p->type_key = hm_msg_type(msg);
    }
    if (!p->head.p)
        cl_fast_head(&p->to_j, &p->from_j, &p->type_j, &p->head);
    /* Room for the cl.msg around it within net's line limit. */
    err = cl_fast_encode_to(msg, &p->head, &p->to_j, &p->from_j, &p->type_j,
                            o.req, false, HM_NET_MAX_LINE - 256, &p->enc,
                            &used, &p->enc_cap);
    if (err != HM_OK)
        return err;
    o.line = p->enc;
    o.len = used - 1; /* the newline: the line travels inside a cl.msg */
    if (request)
        o.request = hm_msg_move(msg);
    return cl_peer_queue(ctx, p->cp, &o);
}

static hm_err proxy_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    proxy *p = state;
    char where[CL_NAME_CAP];
    hm_err err;

    if (cl_is_link_addr(hm_msg_from(msg))) {
        refuse_msg(ctx, p, msg, HM_EUNREACHABLE); /* one hop only */
        return HM_OK;
    }
    /* acquire: pairs with cl_unlock(); read before resolving, so that a
     * change made meanwhile makes the next message resolve again. */
    uint64_t epoch = atomic_load_explicit(&p->node->route_epoch,
                                          memory_order_acquire);

    if (epoch != p->epoch) {
        p->here = !cl_route(p->node, hm_addr_name(hm_ctx_self(ctx)), where);
        p->epoch = epoch;
        if (!p->here && strcmp(where, p->peer) != 0)
            proxy_retarget(ctx, p, where);
    }
    if (p->here) {
        /* It lives here now (its member died, or its name moved here).
         * End the proxy and queue the message again under the same name,
         * sender and request id kept (hm_runtime_send leaves `from` as it
         * is): the factory then activates the real receiver. Messages
         * already queued behind this one go first. */
        hm_msg *again = hm_msg_move(msg);

        hm_ctx_deactivate(ctx);
        if (hm_runtime_send(hm_ctx_runtime(ctx), hm_ctx_self(ctx), again) !=
            HM_OK) {
            refuse_msg(ctx, p, again, HM_EUNREACHABLE);
            hm_msg_destroy(again);
        }
        return HM_OK;
    }
    if (cl_peer_full(ctx, p->cp)) {
        /* Backpressure: the message waits here, the mailbox fills and
         * senders see HM_EFULL, until the peer has room again. */
        hm_ctx_hold(ctx);
        return HM_OK;
    }
    if ((err = proxy_forward(ctx, p, msg)) != HM_OK)
        refuse_msg(ctx, p, msg, err);
    return HM_OK;
}

static void proxy_deactivate(hm_ctx *ctx, void *state,
                             hm_deactivate_reason why)
{
    proxy *p = state;

    (void)ctx;
    (void)why;
    hm_addr_release(p->peer_addr);
    hm_addr_release(p->from_key);
    cl_jstr_fini(&p->to_j);
    cl_jstr_fini(&p->from_j);
    cl_jstr_fini(&p->type_j);
    cl_jstr_fini(&p->head);
    hm_free(p->enc);
    hm_free(p);
}

static const hm_hooks proxy_hooks = {.deactivate = proxy_deactivate};

hm_err cl_proxy_make(hm_node *n, const char *name, const char *peer,
                     hm_receiver *out)
{
    proxy *p = hm_calloc(1, sizeof *p);

    (void)name;
    p->node = n;
    strcpy(p->peer, peer);
    if (!(p->cp = cl_peer_ensure(n, peer, &p->peer_addr))) {
        hm_free(p);
        return HM_ECLOSED;
    }
    *out = (hm_receiver){.handler = proxy_handle, .state = p,
                         .hooks = &proxy_hooks,
                         .mailbox_limit = CL_PROXY_MAILBOX};
    return HM_OK;
}
