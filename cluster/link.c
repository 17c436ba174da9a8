/* cluster/link.c: one cluster link, as the receiver that owns its TCP
 * connection ("cluster/link/a<conn id>" when accepted, "cluster/link/d<n>"
 * when dialled).
 *
 * The receiver speaks HP v1 (net/hp_session.h) and, on top of it, the
 * cluster handshake (cluster/handshake.h): the dialler sends cl.hello with
 * its nonce, the acceptor answers cl.challenge with its nonce and its proof,
 * the dialler checks that proof before proving anything itself (cl.proof).
 * Only then does the link report itself up to the node receiver; before
 * that, any other line closes it. Afterwards it sorts what arrives: routed
 * traffic (cl.msg, cl.ack) goes to the member's peer receiver (peer.c),
 * which delivers it on this node only; every other cl.* line goes to the
 * node receiver. A bare application "msg" line is a protocol error.
 *
 * Key decision: one receiver per connection, not per member. A member may
 * have two connections for a moment (both sides dialled at once); each
 * reports to the node receiver, which keeps one (hm_members_keep_new_link)
 * and closes the other. */
#include "cluster/node_impl.h"

#include "cluster/fast.h"
#include "cluster/handshake.h"
#include "net/hp_session.h"
#include "net/line.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define HEARD_NOTICE_MS 50 /* an app line tells the node at most so often */

typedef enum { LK_NEW, LK_CHALLENGED, LK_UP, LK_FAILED } link_stage;

typedef struct link_state {
    hm_node *node;
    hm_conn *conn; /* owned reference, from net.opened */
    hm_hp_session hp;
    bool dialler;
    char target[CL_NAME_CAP];      /* dialler: whom we meant to reach */
    char target_addr[CL_ADDR_CAP]; /* dialler: the address we dialled */
    link_stage stage;
    hm_handshake *hs;  /* owned */
    hm_wire_node peer; /* authenticated, from LK_UP on */
    hm_addr *peer_addr; /* owned once up: "cluster/peer/<name>" */
    hm_msg *batch;      /* owned: routed lines of this frame, sent after
                           it (cl_in_batch) */
    /* One-entry caches of what consecutive messages share: the last
     * target and sender interned, the last type found (types are never
     * unregistered). Names owned (hm_alloc), addresses references. */
    char *to_name, *from_name, *type_name;
    size_t to_len, from_len, type_len;
    hm_addr *to_addr, *from_addr;
    const hm_type *type;
    /* Not 0: the caches hold the names of the memo's middle of that
     * generation, all resolved (take_fields). */
    uint64_t names_gen;
    uint64_t heard_ms;  /* last heard notice sent to the node */
    cl_fast_memo memo;  /* the decoder's memory of the last routed line */
} link_state;

/* ------------------------------------------------------------ encoding */

static hm_err encode_body(const char *type, json_t *body, uint64_t id,
                          const char *from, const char *to, char **line_out,
                          size_t *len_out)
{
    hm_hp_envelope env = {.type = type, .id = id, .from = from, .to = to,
                          .body = body};
    hm_err err = hm_hp_encode(&env, 0, line_out, len_out);

    json_decref(body);
    return err;
}

hm_err cl_encode_app(const hm_msg *m, const char *to, const char *from,
                     uint64_t id, bool reply, char **line_out,
                     size_t *len_out)
{
    /* Room for the cl.msg around it: the whole line stays within net's
     * line limit. */
    return cl_fast_encode_app(m, to, from, id, reply, HM_NET_MAX_LINE - 256,
                              line_out, len_out);
}

hm_err cl_encode_wire(const hm_wire_msg *w, char **line_out, size_t *len_out)
{
    json_t *data;
    json_t *body;
    hm_err err;

    if ((err = hm_wire_encode(w, &data)) != HM_OK)
        return err;
    body = json_object();
    json_object_set_new(body, "type", json_string(hm_wire_type_name(w->type)));
    json_object_set_new(body, "data", data);
    return encode_body("msg", body, 0, NULL, NULL, line_out, len_out);
}

static hm_err write_wire(link_state *s, const hm_wire_msg *w)
{
    char *line;
    size_t len;
    hm_err err = cl_encode_wire(w, &line, &len);

    if (err != HM_OK)
        return err;
    if ((err = hm_conn_write_take(s->conn, line, len)) != HM_OK)
        hm_free(line);
    return err;
}

/* ----------------------------------------------------------- handshake */

static void count_refused(hm_node *n)
{
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&n->st_refused, 1, memory_order_relaxed);
}

/* Ends a link that failed the handshake (cluster/handshake.c has logged
 * why as CL-AUTH-REFUSED) or broke the protocol. */
static void refuse(link_state *s)
{
    count_refused(s->node);
    hm_hp_session_send_error(&s->hp, s->conn, HM_HP_BAD_FIELD,
                             "cluster link refused", 0);
    hm_conn_close(s->conn);
    s->stage = LK_FAILED;
}

static hm_err start_handshake(link_state *s)
{
    hm_node *n = s->node;
    hm_wire_node self = {.inc = n->inc};
    hm_wire_msg hello;
    hm_err err;

    strcpy(self.name, n->name);
    strcpy(self.addr, n->addr);
    err = hm_handshake_create(
        &(hm_handshake_config){.cluster = n->cluster, .self = &self,
                               .secret = n->secret,
                               .remote = hm_conn_peer(s->conn)},
        s->dialler ? HM_AUTH_DIALLER : HM_AUTH_ACCEPTOR, &s->hs);
    if (err != HM_OK || !s->dialler)
        return err;
    if ((err = hm_hp_session_start(&s->hp, s->conn, 0)) != HM_OK ||
        (err = hm_handshake_start(s->hs, &hello)) != HM_OK)
        return err;
    err = write_wire(s, &hello);
    hm_wire_msg_fini(&hello);
    return err;
}

static void report_up(hm_ctx *ctx, link_state *s)
{
    cl_ev *ev;
    hm_msg *m = cl_ev_msg(&cl_link_up_type, &ev);

    s->stage = LK_UP;
    s->peer = *hm_handshake_peer(s->hs);
    /* Before the node hears of the link: lines may arrive for it at once. */
    if (!cl_peer_ensure(s->node, s->peer.name, &s->peer_addr))
        s->peer_addr = NULL;
    strcpy(ev->peer, s->peer.name);
    strcpy(ev->addr, s->peer.addr);
    ev->inc = s->peer.inc;
    ev->flag = s->dialler;
    if (s->dialler)
        ev->str = hm_strdup(s->target_addr); /* the dial is over */
    ev->conn = hm_conn_ref(s->conn);
    ev->link = hm_addr_ref(hm_ctx_self(ctx));
    if (hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

static void handshake_step(hm_ctx *ctx, link_state *s, const hm_wire_msg *w)
{
    hm_wire_msg out;
    bool has_out = false;

    if (!s->hs || hm_handshake_on_message(s->hs, w, &out, &has_out) != HM_OK)
        return refuse(s);
    if (has_out) {
        write_wire(s, &out);
        hm_wire_msg_fini(&out);
        if (!s->dialler)
            s->stage = LK_CHALLENGED;
    }
    if (hm_handshake_is_done(s->hs))
        report_up(ctx, s);
}

/* ------------------------------------------------------- after the link */

static void notice_heard(hm_ctx *ctx, link_state *s)
{
    uint64_t now = hm_ctx_now_ms(ctx);
    cl_ev *ev;
    hm_msg *m;

    if (now - s->heard_ms < HEARD_NOTICE_MS)
        return;
    s->heard_ms = now;
    m = cl_ev_msg(&cl_heard_type, &ev);
    strcpy(ev->peer, s->peer.name);
    if (hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

/* Lines per batch message: 16 items stay under 1 KiB, below glibc's
 * large-request size, whose every allocation consolidates the fast bins
 * that payloads freed on other workers fill (callgrind: ~300
 * instructions per message on the receiver when a frame's batch was one
 * allocation; ADR 0170). */
#define CL_IN_BATCH_MAX 16
_Static_assert(CL_IN_BATCH_MAX * sizeof(cl_in) < 1000,
               "a batch's items stay a small allocation");

static void send_batch(hm_ctx *ctx, link_state *s);

/* Appends a routed line to the batch for the peer receiver; a full batch
 * is sent first (every tree of the lines in it is freed by then). */
static cl_in *batch_add(hm_ctx *ctx, link_state *s)
{
    cl_in_batch *b;

    if (s->batch &&
        ((cl_in_batch *)hm_msg_payload(s->batch))->count == CL_IN_BATCH_MAX)
        send_batch(ctx, s);
    if (!s->batch) {
        b = hm_calloc(1, sizeof *b);
        b->inc = s->peer.inc;
        b->items = hm_alloc(CL_IN_BATCH_MAX * sizeof *b->items);
        b->cap = CL_IN_BATCH_MAX;
        s->batch = hm_msg_create(&cl_in_batch_type, b, 0);
    }
    b = hm_msg_payload(s->batch);
    memset(&b->items[b->count], 0, sizeof b->items[0]);
    return &b->items[b->count++];
}

/* Whether the cache holds `sp`; if not, makes it hold a copy of it.
 * False if `sp` holds a NUL (not a name). */
static bool cache_span(cl_span sp, char **name, size_t *len, bool *hit)
{
    *hit = *name && *len == sp.n && memcmp(*name, sp.p, sp.n) == 0;
    if (*hit)
        return true;
    if (memchr(sp.p, '\0', sp.n))
        return false;
    hm_free(*name);
    *name = hm_alloc(sp.n + 1);
    memcpy(*name, sp.p, sp.n);
    (*name)[sp.n] = '\0';
    *len = sp.n;
    return true;
}

/* An owned reference to the address named `sp`, through a cache. NULL if
 * it is absent or not a valid name. */
static hm_addr *intern_span(hm_runtime *rt, cl_span sp, char **name,
                            size_t *len, hm_addr **addr)
{
    bool hit;

    if (!sp.p || !cache_span(sp, name, len, &hit))
        return NULL;
    if (!hit) {
        hm_addr_release(*addr);
        if (hm_runtime_intern(rt, *name, addr) != HM_OK) {
            *addr = NULL;
            hm_free(*name);
            *name = NULL;
        }
    }
    return *addr ? hm_addr_ref(*addr) : NULL;
}

/* The message of a line whose type `s->type` is resolved: its data through
 * the type's codec, into in->msg, or the error into in->err. */
static void take_data(link_state *s, cl_fields *f, cl_in *in)
{
    void *payload = NULL;

    if (f->str.p && s->type->from_string) {
        /* A plain string and a string codec: no json_t (ADR 0170). */
        if ((in->err = s->type->from_string(f->str.p, f->str.n,
                                            &payload)) == HM_OK)
            in->msg = hm_msg_create(s->type, payload, f->arg);
    } else if (!s->type->from_json) {
        in->err = HM_ECODEC;
    } else if (!cl_fields_json(f)) {
        in->err = HM_ECODEC; /* out of memory */
    } else if ((in->err = s->type->from_json(f->data, &payload)) == HM_OK) {
        in->msg = hm_msg_create(s->type, payload, f->arg);
    }
}

/* The target, sender and type of `f` into `in` and the caches; false
 * (in->err set) if the target or the type cannot be resolved. */
static bool resolve_names(hm_runtime *rt, link_state *s, cl_fields *f,
                          cl_in *in)
{
    bool hit;

    s->names_gen = 0;
    in->to = intern_span(rt, f->to, &s->to_name, &s->to_len, &s->to_addr);
    in->from = intern_span(rt, f->from, &s->from_name, &s->from_len,
                           &s->from_addr);
    if (f->to.p && !in->to) {
        in->err = HM_EINVAL; /* a target that is not a valid name */
    } else if (!cache_span(f->type, &s->type_name, &s->type_len, &hit)) {
        in->err = HM_ENOTFOUND;
    } else if (!hit && !(s->type = hm_runtime_find_type(rt, s->type_name))) {
        hm_free(s->type_name); /* not registered (yet): ask again */
        s->type_name = NULL;
        in->err = HM_ENOTFOUND;
    } else {
        /* All resolved and cached (a sender that is not a valid name
         * goes as none, every time): lines with the same middle reuse
         * them. */
        if (!f->from.p || in->from)
            s->names_gen = f->memo_gen;
        return true;
    }
    return false;
}

/* A routed message's fields into `in` (the data reference is released):
 * the runtime message with its registered type, the request id, whether
 * it is a reply, the target and the sender. A message that cannot be
 * decoded keeps the error (the line itself was valid: the peer receiver
 * still numbers it, counts it undeliverable and answers a request with
 * the error). */
static void take_fields(hm_runtime *rt, link_state *s, cl_fields *f,
                        cl_in *in)
{
    in->id = f->id;
    in->reply = f->reply;
    if (f->memo_gen && f->memo_gen == s->names_gen) {
        /* The names of the last line, resolved then: no compare. */
        in->to = f->to.p ? hm_addr_ref(s->to_addr) : NULL;
        in->from = f->from.p ? hm_addr_ref(s->from_addr) : NULL;
        take_data(s, f, in);
    } else if (resolve_names(rt, s, f, in)) {
        take_data(s, f, in);
    }
    cl_fields_fini(f);
}

/* A cl.* line: the handshake, routed traffic for the peer receiver, or
 * membership and presence for the node receiver. */
static void on_wire(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp)
{
    bool routed;
    cl_ev *ev;
    hm_msg *m;
    hm_wire_msg w;

    if (!hp->u.msg.data || hm_wire_decode(hp->u.msg.data, &w) != HM_OK) {
        HM_LOG_WARN("CL-LINK-BAD", "%s: malformed %s from %s; closing",
                    s->node->name, hp->u.msg.type, hm_conn_peer(s->conn));
        hm_conn_close(s->conn);
        return;
    }
    if (s->stage != LK_UP) {
        if (s->stage != LK_FAILED)
            handshake_step(ctx, s, &w);
        hm_wire_msg_fini(&w);
        return;
    }
    routed = w.type == HM_WIRE_ROUTED || w.type == HM_WIRE_ACK;
    if (routed) {
        cl_in *in = batch_add(ctx, s);
        cl_fields f;

        if (w.type == HM_WIRE_ACK) {
            in->ack = true;
            in->seq = w.u.ack.seq;
        } else {
            in->seq = w.u.routed.seq;
            if ((in->err = cl_inner_fields(w.u.routed.body, &f)) == HM_OK)
                take_fields(hm_ctx_runtime(ctx), s, &f, in);
        }
        /* The batch is sent once this frame's JSON trees are freed
         * (cl_link_handle): a payload may hold part of one, and a jansson
         * value's reference count must never be touched by two threads. */
        hm_wire_msg_fini(&w);
        return;
    }
    m = cl_ev_msg(&cl_ctl_type, &ev);
    strcpy(ev->peer, s->peer.name);
    ev->inc = s->peer.inc;
    ev->wire = w;
    ev->has_wire = true;
    s->heard_ms = hm_ctx_now_ms(ctx);
    if (hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

static void send_batch(hm_ctx *ctx, link_state *s)
{
    hm_msg *m = s->batch;

    s->batch = NULL;
    if (!m)
        return;
    notice_heard(ctx, s);
    if (!s->peer_addr || hm_ctx_send(ctx, s->peer_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

static void on_hp(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp)
{
    if (hp->kind == HM_HP_ERROR) {
        HM_LOG_WARN("CL-LINK-ERROR", "%s: %s says %s: %s", s->node->name,
                    hm_conn_peer(s->conn), hp->u.error.code_name,
                    hp->u.error.reason ? hp->u.error.reason : "");
        return;
    }
    if (hp->kind != HM_HP_MSG)
        return; /* welcome, pong */
    if (strncmp(hp->u.msg.type, "cl.", 3) == 0) {
        on_wire(ctx, s, hp);
    } else {
        /* Application messages travel inside cl.msg, numbered. */
        HM_LOG_WARN("CL-LINK-BAD", "%s: bare %s from %s; closing",
                    s->node->name, hp->u.msg.type, hm_conn_peer(s->conn));
        if (s->stage != LK_UP)
            count_refused(s->node);
        hm_conn_close(s->conn);
    }
}

/* ------------------------------------------------------------ lifetime */

static void on_closed(hm_ctx *ctx, link_state *s, hm_err why)
{
    cl_ev *ev;
    hm_msg *m;

    if (s->stage == LK_UP) {
        m = cl_ev_msg(&cl_link_down_type, &ev);
        strcpy(ev->peer, s->peer.name);
        ev->link = hm_addr_ref(hm_ctx_self(ctx));
    } else if (!s->dialler && s->stage == LK_CHALLENGED) {
        /* It read our proof and hung up without proving itself: it does
         * not hold the secret (it logged why on its side). */
        HM_LOG_WARN("CL-AUTH-REFUSED", "%s: %s left the handshake after "
                    "our challenge (it does not hold the secret?)",
                    s->node->name, s->conn ? hm_conn_peer(s->conn) : "?");
        count_refused(s->node);
        m = NULL;
    } else if (s->dialler) {
        m = cl_ev_msg(&cl_dial_failed_type, &ev);
        strcpy(ev->peer, s->target);
        strcpy(ev->addr, s->target_addr);
        ev->flag = why == HM_ECONNREFUSED;
    } else {
        m = NULL;
    }
    if (m && hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
    s->stage = LK_NEW;
    hm_ctx_deactivate(ctx);
}

/* Every line of a frame (cl_lines_framer_init), in order: routed lines
 * in canonical form straight into the batch (cluster/fast.h), the rest
 * through the HP session and jansson; then the batch goes to the peer
 * receiver in one message. */
static void on_lines(hm_ctx *ctx, link_state *s, const uint8_t *data,
                     size_t len)
{
    const uint8_t *line;
    size_t pos = 0, n;
    hm_hp_msg hp;
    cl_fields f;
    bool have;

    uint64_t seq;

    while (cl_lines_next(data, len, &pos, &line, &n)) {
        if (s->stage == LK_UP &&
            cl_fast_decode_routed_memo(&s->memo, (const char *)line, n,
                                       &f)) {
            cl_in *in = batch_add(ctx, s);

            in->seq = f.seq;
            take_fields(hm_ctx_runtime(ctx), s, &f, in);
            continue;
        }
        if (s->stage == LK_UP &&
            cl_fast_decode_ack((const char *)line, n, &seq)) {
            cl_in *in = batch_add(ctx, s);

            in->ack = true;
            in->seq = seq;
            continue;
        }
        if (hm_hp_session_on_frame(&s->hp, s->conn, line, n, &hp, &have) ==
                HM_OK &&
            have) {
            on_hp(ctx, s, &hp);
            hm_hp_msg_fini(&hp);
        }
    }
    send_batch(ctx, s);
}

hm_err cl_link_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    link_state *s = state;
    const hm_type *t = hm_msg_type(msg);
    const uint8_t *data;
    size_t len;

    if (t == &hm_net_opened_type) {
        s->conn = hm_conn_ref(hm_net_msg_conn(msg));
        if (start_handshake(s) != HM_OK)
            hm_conn_abort(s->conn);
    } else if (t == &hm_net_frame_type && s->conn) {
        data = hm_net_msg_data(msg, &len);
        on_lines(ctx, s, data, len);
    } else if (t == &hm_net_error_type && s->conn) {
        hm_hp_session_on_framing_error(&s->hp, s->conn, hm_net_msg_err(msg));
    } else if (t == &hm_net_closed_type) {
        on_closed(ctx, s, hm_net_msg_err(msg));
    }
    return HM_OK;
}

static void link_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    link_state *s = state;

    (void)ctx;
    (void)why;
    if (s->conn)
        hm_conn_abort(s->conn); /* no-op once closed */
    hm_conn_release(s->conn);
    hm_addr_release(s->peer_addr);
    hm_msg_destroy(s->batch);
    hm_addr_release(s->to_addr);
    hm_addr_release(s->from_addr);
    hm_free(s->to_name);
    hm_free(s->from_name);
    hm_free(s->type_name);
    cl_fast_memo_fini(&s->memo);
    hm_handshake_destroy(s->hs);
    hm_free(s);
}

const hm_hooks cl_link_hooks = {.deactivate = link_deactivate};

void *cl_link_state_create(hm_node *n, const char *dial_target,
                           const char *dial_addr)
{
    link_state *s = hm_calloc(1, sizeof *s);

    s->node = n;
    s->dialler = dial_target != NULL;
    if (dial_target) {
        snprintf(s->target, sizeof s->target, "%s", dial_target);
        snprintf(s->target_addr, sizeof s->target_addr, "%s", dial_addr);
    }
    hm_hp_session_init(&s->hp, s->dialler ? HM_HP_CLIENT : HM_HP_SERVER,
                       "hermes-cluster");
    return s;
}

bool cl_is_link_addr(const hm_addr *a)
{
    return a && strncmp(hm_addr_name(a), "cluster/", 8) == 0;
}
