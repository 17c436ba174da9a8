/* cluster/link.c: one cluster link, as the receiver that owns its TCP
 * connection ("cluster/link/a<conn id>" when accepted, "cluster/link/d<n>"
 * when dialled).
 *
 * The receiver speaks HP v1 (net/hp_session.h) and, on top of it, the
 * cluster handshake of cluster/auth.h: the dialler sends cl.hello with its
 * nonce, the acceptor answers cl.challenge with its nonce and its proof, the
 * dialler checks that proof before proving anything itself (cl.proof). Only
 * then does the link report itself up to the node receiver; before that,
 * any other line closes it. Afterwards it sorts what arrives: cl.* lines go
 * to the node receiver, application messages are delivered here and only
 * here (a message that came from another node is never forwarded again),
 * and replies go to the peer receiver that holds the request.
 *
 * Key decision: one receiver per connection, not per member. A member may
 * have two connections for a moment (both sides dialled at once); each
 * reports to the node receiver, which keeps one (hm_members_keep_new_link)
 * and closes the other. */
#include "cluster/node_impl.h"

#include "net/hp_session.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define HEARD_NOTICE_MS 50 /* an app line tells the node at most so often */

typedef enum { LK_NEW, LK_HELLO_SENT, LK_CHALLENGED, LK_UP } link_stage;

typedef struct link_state {
    hm_node *node;
    hm_conn *conn; /* owned reference, from net.opened */
    hm_hp_session hp;
    bool dialler;
    char target[CL_NAME_CAP]; /* dialler: whom we meant to reach */
    link_stage stage;
    uint8_t nonce_self[HM_AUTH_NONCE_LEN];
    uint8_t nonce_peer[HM_AUTH_NONCE_LEN];
    hm_wire_node peer; /* who the peer says it is; authenticated at LK_UP */
    hm_addr *peer_addr; /* owned once up: "cluster/peer/<name>" */
    uint64_t heard_ms;  /* last heard notice sent to the node */
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
    json_t *data;
    json_t *body;
    hm_err err;

    if (hm_msg_arg(m) > (uint64_t)INT64_MAX)
        return HM_ECODEC;
    if ((err = hm_msg_to_json(m, &data)) != HM_OK)
        return err;
    body = json_object();
    json_object_set_new(body, "type", json_string(hm_msg_type(m)->name));
    if (hm_msg_arg(m))
        json_object_set_new(body, "arg",
                            json_integer((json_int_t)hm_msg_arg(m)));
    json_object_set_new(body, "data", data);
    if (reply)
        json_object_set_new(body, "reply", json_true());
    return encode_body("msg", body, id, from, to, line_out, len_out);
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

static void refuse(link_state *s, const char *why)
{
    hm_node *n = s->node;

    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&n->st_refused, 1, memory_order_relaxed);
    HM_LOG_WARN("CL-AUTH-REFUSED", "%s: refusing link %s (claims to be %s): %s",
                n->name, hm_conn_peer(s->conn),
                s->peer.name[0] ? s->peer.name : "?", why);
    hm_hp_session_send_error(&s->hp, s->conn, HM_HP_BAD_FIELD,
                             "cluster link refused", 0);
    hm_conn_close(s->conn);
    s->stage = LK_NEW;
}

static void transcript(const link_state *s, hm_auth_transcript *t)
{
    const hm_node *n = s->node;

    t->cluster = n->cluster;
    if (s->dialler) {
        t->dialler = n->name;
        t->dialler_inc = n->inc;
        t->dialler_nonce = s->nonce_self;
        t->acceptor = s->peer.name;
        t->acceptor_inc = s->peer.inc;
        t->acceptor_nonce = s->nonce_peer;
    } else {
        t->dialler = s->peer.name;
        t->dialler_inc = s->peer.inc;
        t->dialler_nonce = s->nonce_peer;
        t->acceptor = n->name;
        t->acceptor_inc = n->inc;
        t->acceptor_nonce = s->nonce_self;
    }
}

static void self_node(const hm_node *n, hm_wire_node *out)
{
    memset(out, 0, sizeof *out);
    strcpy(out->name, n->name);
    strcpy(out->addr, n->addr);
    out->inc = n->inc;
}

static hm_err send_hello(link_state *s)
{
    hm_wire_msg w = {.type = HM_WIRE_HELLO};
    hm_err err;

    if ((err = hm_auth_nonce(s->nonce_self)) != HM_OK)
        return err;
    strcpy(w.u.hello.cluster, s->node->cluster);
    self_node(s->node, &w.u.hello.from);
    w.u.hello.proto_min = w.u.hello.proto_max = 1;
    hm_auth_to_hex(s->nonce_self, HM_AUTH_NONCE_LEN, w.u.hello.nonce);
    if ((err = hm_hp_session_start(&s->hp, s->conn, 0)) != HM_OK)
        return err;
    s->stage = LK_HELLO_SENT;
    return write_wire(s, &w);
}

/* Acceptor: cl.hello -> cl.challenge. */
static void on_hello(link_state *s, const hm_wire_msg *in)
{
    hm_wire_msg w = {.type = HM_WIRE_CHALLENGE};
    hm_auth_transcript t;
    uint8_t proof[HM_AUTH_PROOF_LEN];

    s->peer = in->u.hello.from;
    if (strcmp(in->u.hello.cluster, s->node->cluster) != 0)
        return refuse(s, "another cluster");
    if (in->u.hello.proto_min > 1 || in->u.hello.proto_max < 1)
        return refuse(s, "no common cluster protocol version");
    if (strcmp(s->peer.name, s->node->name) == 0)
        return refuse(s, "it uses our own name");
    if (hm_auth_from_hex(in->u.hello.nonce, s->nonce_peer,
                         HM_AUTH_NONCE_LEN) != HM_OK ||
        hm_auth_nonce(s->nonce_self) != HM_OK)
        return refuse(s, "bad nonce");
    transcript(s, &t);
    if (hm_auth_prove(s->node->secret, HM_AUTH_ACCEPTOR, &t, proof) != HM_OK)
        return refuse(s, "cannot compute a proof");
    strcpy(w.u.challenge.cluster, s->node->cluster);
    self_node(s->node, &w.u.challenge.from);
    w.u.challenge.proto = 1;
    hm_auth_to_hex(s->nonce_self, HM_AUTH_NONCE_LEN, w.u.challenge.nonce);
    hm_auth_to_hex(proof, HM_AUTH_PROOF_LEN, w.u.challenge.proof);
    s->stage = LK_CHALLENGED;
    write_wire(s, &w);
}

static void report_up(hm_ctx *ctx, link_state *s)
{
    cl_ev *ev;
    hm_msg *m = cl_ev_msg(&cl_link_up_type, &ev);
    char name[sizeof CL_PEER_PREFIX + CL_NAME_CAP];

    s->stage = LK_UP;
    snprintf(name, sizeof name, CL_PEER_PREFIX "%s", s->peer.name);
    if (hm_runtime_intern(hm_ctx_runtime(ctx), name, &s->peer_addr) != HM_OK)
        s->peer_addr = NULL;
    strcpy(ev->peer, s->peer.name);
    strcpy(ev->addr, s->peer.addr);
    ev->inc = s->peer.inc;
    ev->flag = s->dialler;
    ev->conn = hm_conn_ref(s->conn);
    ev->link = hm_addr_ref(hm_ctx_self(ctx));
    if (hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

/* Dialler: cl.challenge -> cl.proof, and the link is up. */
static void on_challenge(hm_ctx *ctx, link_state *s, const hm_wire_msg *in)
{
    hm_wire_msg w = {.type = HM_WIRE_PROOF};
    hm_auth_transcript t;
    uint8_t proof[HM_AUTH_PROOF_LEN];

    s->peer = in->u.challenge.from;
    if (strcmp(in->u.challenge.cluster, s->node->cluster) != 0)
        return refuse(s, "another cluster");
    if (in->u.challenge.proto != 1)
        return refuse(s, "no common cluster protocol version");
    if (hm_auth_from_hex(in->u.challenge.nonce, s->nonce_peer,
                         HM_AUTH_NONCE_LEN) != HM_OK ||
        hm_auth_from_hex(in->u.challenge.proof, proof, HM_AUTH_PROOF_LEN) !=
            HM_OK)
        return refuse(s, "malformed challenge");
    transcript(s, &t);
    if (!hm_auth_verify(s->node->secret, HM_AUTH_ACCEPTOR, &t, proof))
        return refuse(s, "wrong proof (no shared secret)");
    if (hm_auth_prove(s->node->secret, HM_AUTH_DIALLER, &t, proof) != HM_OK)
        return refuse(s, "cannot compute a proof");
    hm_auth_to_hex(proof, HM_AUTH_PROOF_LEN, w.u.proof.proof);
    if (write_wire(s, &w) != HM_OK)
        return;
    report_up(ctx, s);
}

/* Acceptor: cl.proof, and the link is up. */
static void on_proof(hm_ctx *ctx, link_state *s, const hm_wire_msg *in)
{
    hm_auth_transcript t;
    uint8_t proof[HM_AUTH_PROOF_LEN];

    if (hm_auth_from_hex(in->u.proof.proof, proof, HM_AUTH_PROOF_LEN) !=
        HM_OK)
        return refuse(s, "malformed proof");
    transcript(s, &t);
    if (!hm_auth_verify(s->node->secret, HM_AUTH_DIALLER, &t, proof))
        return refuse(s, "wrong proof (no shared secret)");
    report_up(ctx, s);
}

static void handshake_step(hm_ctx *ctx, link_state *s, const hm_wire_msg *w)
{
    if (!s->dialler && s->stage == LK_NEW && w->type == HM_WIRE_HELLO)
        on_hello(s, w);
    else if (s->dialler && s->stage == LK_HELLO_SENT &&
             w->type == HM_WIRE_CHALLENGE)
        on_challenge(ctx, s, w);
    else if (!s->dialler && s->stage == LK_CHALLENGED &&
             w->type == HM_WIRE_PROOF)
        on_proof(ctx, s, w);
    else
        refuse(s, "message out of turn in the handshake");
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

static void on_wire(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp)
{
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
        handshake_step(ctx, s, &w);
        hm_wire_msg_fini(&w);
        return;
    }
    m = cl_ev_msg(&cl_ctl_type, &ev);
    strcpy(ev->peer, s->peer.name);
    ev->wire = w;
    ev->has_wire = true;
    s->heard_ms = hm_ctx_now_ms(ctx);
    if (hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

static void count_undeliverable(hm_node *n)
{
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&n->st_undeliverable, 1, memory_order_relaxed);
}

/* A remote request's outcome: back to the requesting node as a reply. */
static void on_local_reply(hm_ctx *ctx, void *state, hm_msg *reply,
                           hm_err err, void *arg)
{
    link_state *s = state;
    uint64_t id = (uint64_t)(uintptr_t)arg;
    hm_msg *made = NULL;
    char *line;
    size_t len;

    if (!reply || (err != HM_OK && hm_msg_type(reply) != &hm_type_error))
        reply = made = hm_msg_create(&hm_type_error, NULL, (uint64_t)err);
    if (!s->conn ||
        cl_encode_app(reply, NULL, NULL, id, true, &line, &len) != HM_OK) {
        count_undeliverable(s->node);
    } else if (hm_conn_write_take(s->conn, line, len) != HM_OK) {
        hm_free(line);
        count_undeliverable(s->node);
    }
    hm_msg_destroy(made);
}

static void deliver_reply(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp,
                          hm_msg *m)
{
    cl_ev *ev;
    hm_msg *e = cl_ev_msg(&cl_reply_type, &ev);

    ev->inc = hp->id;
    ev->msg = m;
    if (!s->peer_addr || hm_ctx_send(ctx, s->peer_addr, e) != HM_OK) {
        hm_msg_destroy(e);
        count_undeliverable(s->node);
    }
}

static void deliver_request(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp,
                            hm_msg *m)
{
    hm_addr *to;
    hm_err err = hm_runtime_intern(hm_ctx_runtime(ctx), hp->to, &to);

    if (err == HM_OK) {
        err = hm_ctx_request(ctx, to, m, s->node->request_timeout_ms,
                             on_local_reply, (void *)(uintptr_t)hp->id,
                             NULL);
        hm_addr_release(to);
    }
    if (err != HM_OK) {
        hm_msg_destroy(m);
        count_undeliverable(s->node);
        on_local_reply(ctx, s, NULL, err, (void *)(uintptr_t)hp->id);
    }
}

/* An application message from the peer: delivered here, never forwarded
 * (the proxies refuse what comes from a link: cl_is_link_addr). */
static void on_app(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp)
{
    hm_node *n = s->node;
    hm_msg *m;
    hm_err err = hm_hp_decode_msg(hm_ctx_runtime(ctx), hp, &m);

    notice_heard(ctx, s);
    if (err != HM_OK) {
        HM_LOG_DEBUG("CL-UNDELIVERABLE", "%s: %s from %s: %s", n->name,
                     hp->u.msg.type, s->peer.name, hm_err_str(err));
        count_undeliverable(n);
        if (hp->id && !hp->u.msg.reply)
            on_local_reply(ctx, s, NULL, err, (void *)(uintptr_t)hp->id);
        return;
    }
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&n->st_received, 1, memory_order_relaxed);
    if (hp->u.msg.reply) {
        deliver_reply(ctx, s, hp, m);
    } else if (!hp->to) {
        hm_msg_destroy(m);
        count_undeliverable(n);
    } else if (hp->id) {
        deliver_request(ctx, s, hp, m);
    } else if (hm_ctx_send_name(ctx, hp->to, m) != HM_OK) {
        hm_msg_destroy(m);
        count_undeliverable(n);
    }
}

static void on_hp(hm_ctx *ctx, link_state *s, const hm_hp_msg *hp)
{
    bool cluster_line;

    if (hp->kind == HM_HP_ERROR) {
        HM_LOG_WARN("CL-LINK-ERROR", "%s: %s says %s: %s", s->node->name,
                    hm_conn_peer(s->conn), hp->u.error.code_name,
                    hp->u.error.reason ? hp->u.error.reason : "");
        return;
    }
    if (hp->kind != HM_HP_MSG)
        return; /* welcome, pong */
    cluster_line = strncmp(hp->u.msg.type, "cl.", 3) == 0;
    if (cluster_line)
        on_wire(ctx, s, hp);
    else if (s->stage == LK_UP)
        on_app(ctx, s, hp);
    else
        refuse(s, "application message before the handshake");
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
        refuse(s, "it left the handshake after our challenge");
        m = NULL;
    } else if (s->dialler) {
        m = cl_ev_msg(&cl_dial_failed_type, &ev);
        strcpy(ev->peer, s->target);
        ev->flag = why == HM_ECONNREFUSED;
    } else {
        m = NULL;
    }
    if (m && hm_ctx_send(ctx, s->node->node_addr, m) != HM_OK)
        hm_msg_destroy(m);
    s->stage = LK_NEW;
    hm_ctx_deactivate(ctx);
}

hm_err cl_link_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    link_state *s = state;
    const hm_type *t = hm_msg_type(msg);
    const uint8_t *data;
    size_t len;
    hm_hp_msg hp;
    bool have;

    if (t == &hm_node_moved_type) {
        hm_ctx_deactivate(ctx); /* the dial never started */
    } else if (t == &hm_net_opened_type) {
        s->conn = hm_conn_ref(hm_net_msg_conn(msg));
        if (s->dialler && send_hello(s) != HM_OK)
            hm_conn_abort(s->conn);
    } else if (t == &hm_net_frame_type && s->conn) {
        data = hm_net_msg_data(msg, &len);
        if (hm_hp_session_on_frame(&s->hp, s->conn, data, len, &hp, &have) ==
                HM_OK &&
            have) {
            on_hp(ctx, s, &hp);
            hm_hp_msg_fini(&hp);
        }
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
    memset(s->nonce_self, 0, sizeof s->nonce_self);
    hm_free(s);
}

const hm_hooks cl_link_hooks = {NULL, link_deactivate};

void *cl_link_state_create(hm_node *n, const char *dial_target)
{
    link_state *s = hm_calloc(1, sizeof *s);

    s->node = n;
    s->dialler = dial_target != NULL;
    if (dial_target)
        snprintf(s->target, sizeof s->target, "%s", dial_target);
    hm_hp_session_init(&s->hp, s->dialler ? HM_HP_CLIENT : HM_HP_SERVER,
                       "hermes-cluster");
    return s;
}

bool cl_is_link_addr(const hm_addr *a)
{
    return a && strncmp(hm_addr_name(a), CL_LINK_PREFIX,
                        sizeof CL_LINK_PREFIX - 1) == 0;
}
