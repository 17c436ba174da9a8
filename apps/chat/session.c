/* apps/chat/session.c: "chat/session/<conn id>", one receiver per client
 * connection.
 *
 * The session owns the connection's inbound side for its whole life: the
 * net layer delivers every line here. It runs the HP engine (hello,
 * welcome, ping, pong, error lines), decodes chat commands, logs the user
 * in, and forwards every later command to "chat/user/<name>", which owns
 * the connection's handle and does the work. It also watches the heartbeat:
 * a client that sends nothing (not even a ping) for idle_timeout_ms is
 * logged out and disconnected.
 *
 * Key decision: the session, not the user, keeps the connection's frames
 * (ADR 0070). Handing the frames over with hm_conn_set_owner() at login
 * would race: lines the client sent right after its login could reach the
 * user before the session forwarded the ones read before the switch. With
 * the session in front, every command reaches the user through one sender,
 * in the order the client sent it. */
#include "apps/chat/chat_impl.h"

#include "net/hp_session.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include "cluster/node.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

const hm_type chat_cmd_type = {.name = "chat.cmd", .free = hm_free};
const hm_type chat_gone_type = {.name = "chat.gone"};

/* A login tried again (self -> self, after LOGIN_RETRY_MS). Payload: the
 * owned chat_cmd; arg: the attempts made so far. The name's previous user
 * may still be ending (its deactivate hook closed the old connection, so
 * the client can log in again before the runtime has released the name)
 * or a late message may be activating the name through the factory: the
 * spawn says HM_EAGAIN, and a few milliseconds later it succeeds. */
static const hm_type login_retry_type = {.name = "chat.login_retry",
                                         .free = hm_free};
#define LOGIN_RETRY_MS 2
#define LOGIN_RETRIES 250 /* half a second in all, then "internal" */

/* A frame that arrived while a login waited to be tried again, kept to be
 * handled after it, in order. */
typedef struct held_frame {
    struct held_frame *next;
    size_t len;
    uint8_t line[];
} held_frame;

typedef struct chat_session {
    chat_server *srv;
    hm_conn *conn; /* owned reference, from "net.opened" on */
    uint64_t conn_id;
    hm_hp_session hp;
    hm_addr *user; /* owned reference once logged in; NULL before */
    uint64_t last_heard_ms;
    hm_timer_id idle_timer;
    bool login_waiting;            /* a login_retry_type is on its way */
    held_frame *held, **held_tail; /* frames held meanwhile, oldest first */
} chat_session;

static hm_err session_activate(hm_ctx *ctx, void *state)
{
    chat_session *s = state;
    hm_runtime *rt = hm_ctx_runtime(ctx);
    uint32_t period = s->srv->idle_timeout_ms / 4;

    s->last_heard_ms = hm_ctx_now_ms(ctx);
    return hm_runtime_send_every(rt, hm_ctx_self(ctx), period ? period : 1, 0,
                                 &s->idle_timer);
}

static void session_deactivate(hm_ctx *ctx, void *state,
                               hm_deactivate_reason why)
{
    chat_session *s = state;

    if (s->idle_timer)
        hm_runtime_cancel_timer(hm_ctx_runtime(ctx), s->idle_timer);
    if (s->conn && why != HM_DEACTIVATE_REQUESTED)
        hm_conn_abort(s->conn); /* a failed session must not leave it open */
    hm_conn_release(s->conn);
    hm_addr_release(s->user);
    while (s->held) {
        held_frame *f = s->held;

        s->held = f->next;
        hm_free(f);
    }
    hm_free(s);
}

static hm_err session_handle(hm_ctx *ctx, void *state, hm_msg *msg);

static const hm_hooks SESSION_HOOKS = {.activate = session_activate,
                                       .deactivate = session_deactivate};

hm_err chat_session_accept(void *arg, uint64_t conn_id, const char *peer,
                           hm_addr **owner_out)
{
    chat_server *srv = arg;
    chat_session *s = hm_calloc(1, sizeof *s);
    char name[CHAT_ADDR_MAX];
    hm_err err;

    s->srv = srv;
    s->conn_id = conn_id;
    s->held_tail = &s->held;
    hm_hp_session_init(&s->hp, HM_HP_SERVER, "hermes-chat/1");
    snprintf(name, sizeof name, CHAT_SESSION_PREFIX "%llu",
             (unsigned long long)conn_id);
    err = hm_runtime_spawn(srv->rt, name,
                           &(hm_receiver){.handler = session_handle,
                                          .state = s,
                                          .hooks = &SESSION_HOOKS,
                                          .pinned = true},
                           owner_out);
    if (err != HM_OK) {
        hm_free(s);
        return err;
    }
    HM_LOG_INFO("CHAT-CONNECT", "%s: connection from %s", name, peer);
    return HM_OK;
}

/* True if `name` is logged in on another node of the cluster. */
static bool taken_elsewhere(chat_server *srv, const char *addr)
{
    char where[HM_NODE_NAME_MAX + 1];

    if (srv->node && hm_node_lookup(srv->node, addr, where) == HM_OK)
        return strcmp(where, srv->node_name) != 0;
    return false;
}

/* Forwards `cmd` (taken) to the logged-in user. */
static void forward(hm_ctx *ctx, chat_session *s, chat_cmd *cmd)
{
    hm_msg *fwd = hm_msg_create(&chat_cmd_type, cmd, s->conn_id);

    if (hm_ctx_send(ctx, s->user, fwd) != HM_OK) {
        chat_write_error(s->conn, cmd->id, CHAT_ERR_INTERNAL,
                         "the server is busy");
        hm_msg_destroy(fwd);
    }
}

/* The name is live here, and no other node has it: it may be a proxy left
 * from when the user was on another node. A message makes a proxy look the
 * name up again and end; the client's next login then succeeds. A real
 * user ignores it. */
static void nudge(hm_ctx *ctx, const char *addr)
{
    hm_msg *m = chat_note_msg(&chat_nudge_type, NULL, NULL, NULL);

    if (hm_ctx_send_name(ctx, addr, m) != HM_OK)
        hm_msg_destroy(m);
}

/* Tries the login `cmd` (taken) again in LOGIN_RETRY_MS; `attempts` made
 * so far. True if the retry is on its way (frames are held until then). */
static bool retry_login(hm_ctx *ctx, chat_session *s, chat_cmd *cmd,
                        uint64_t attempts)
{
    hm_msg *m;

    if (attempts >= LOGIN_RETRIES)
        return false;
    m = hm_msg_create(&login_retry_type, cmd, attempts + 1);
    if (hm_runtime_send_after(hm_ctx_runtime(ctx), hm_ctx_self(ctx), m,
                              LOGIN_RETRY_MS, NULL) != HM_OK) {
        hm_msg_take_payload(m); /* the caller still owns cmd */
        hm_msg_destroy(m);
        return false;
    }
    s->login_waiting = true;
    return true;
}

/* Logs in: spawns "chat/user/<name>" (which fails if the name is live on
 * this node), registers the name in the cluster, and forwards the login to
 * the new user, which announces itself and answers. Takes `cmd`; this is
 * its attempt number `attempts` + 1. */
static void login(hm_ctx *ctx, chat_session *s, chat_cmd *cmd,
                  uint64_t attempts)
{
    char addr[CHAT_ADDR_MAX];
    hm_err err;

    snprintf(addr, sizeof addr, CHAT_USER_PREFIX "%s", cmd->name);
    if (s->user) {
        chat_write_error(s->conn, cmd->id, CHAT_ERR_ALREADY_LOGGED_IN,
                         "this connection is already logged in");
    } else if (taken_elsewhere(s->srv, addr)) {
        chat_write_error(s->conn, cmd->id, CHAT_ERR_NAME_TAKEN,
                         "that name is logged in on another server");
    } else if ((err = chat_user_spawn(s->srv, cmd->name, s->conn, s->conn_id,
                                      &s->user)) != HM_OK) {
        if (err == HM_EAGAIN && retry_login(ctx, s, cmd, attempts))
            return;
        chat_write_error(s->conn, cmd->id,
                         err == HM_EEXIST ? CHAT_ERR_NAME_TAKEN
                                          : CHAT_ERR_INTERNAL,
                         err == HM_EEXIST ? "that name is logged in"
                                          : hm_err_str(err));
        if (err == HM_EEXIST && s->srv->node)
            nudge(ctx, addr);
    } else {
        if (s->srv->node)
            hm_node_register(s->srv->node, addr);
        HM_LOG_INFO("CHAT-LOGIN", "%s logged in (connection %llu)",
                    cmd->name, (unsigned long long)s->conn_id);
        forward(ctx, s, cmd);
        return;
    }
    hm_free(cmd);
}

/* One "msg" line from the client: a chat command. */
static void on_command(hm_ctx *ctx, chat_session *s, const hm_hp_msg *m)
{
    chat_cmd *cmd = hm_alloc(sizeof *cmd);
    chat_fail fail;

    if (chat_cmd_parse(m->u.msg.type, m->u.msg.data, m->id, cmd, &fail) !=
        HM_OK) {
        chat_write_error(s->conn, m->id, fail.code, fail.reason);
        hm_free(cmd);
        return;
    }
    if (cmd->kind == CHAT_CMD_LOGIN) {
        login(ctx, s, cmd, 0);
    } else if (!s->user) {
        chat_write_error(s->conn, cmd->id, CHAT_ERR_NOT_LOGGED_IN,
                         "log in first (chat.login)");
        hm_free(cmd);
    } else {
        forward(ctx, s, cmd);
    }
}

/* One line from the client (borrowed). */
static void on_line(hm_ctx *ctx, chat_session *s, const uint8_t *line,
                    size_t len)
{
    hm_hp_msg m;
    bool have;

    if (hm_hp_session_on_frame(&s->hp, s->conn, line, len, &m, &have) !=
            HM_OK ||
        !have)
        return; /* the engine answered (or sent an error line) itself */
    if (m.kind == HM_HP_MSG && !m.u.msg.reply)
        on_command(ctx, s, &m);
    hm_hp_msg_fini(&m);
}

static void on_frame(hm_ctx *ctx, chat_session *s, const hm_msg *msg)
{
    size_t len;
    const uint8_t *line = hm_net_msg_data(msg, &len);

    s->last_heard_ms = hm_ctx_now_ms(ctx);
    if (s->login_waiting) { /* after the login, in order */
        held_frame *f = hm_alloc(sizeof *f + len);

        f->next = NULL;
        f->len = len;
        memcpy(f->line, line, len);
        *s->held_tail = f;
        s->held_tail = &f->next;
        return;
    }
    on_line(ctx, s, line, len);
}

/* The login's retry arrived: try it, then handle the frames held since,
 * unless it has to wait again. */
static void on_login_retry(hm_ctx *ctx, chat_session *s, hm_msg *msg)
{
    s->login_waiting = false;
    login(ctx, s, hm_msg_take_payload(msg), hm_msg_arg(msg));
    while (s->held && !s->login_waiting) {
        held_frame *f = s->held;

        if (!(s->held = f->next))
            s->held_tail = &s->held;
        on_line(ctx, s, f->line, f->len);
        hm_free(f);
    }
}

/* Logs the user (if any) out now: the connection is closed or closing. */
static void log_out(hm_ctx *ctx, chat_session *s)
{
    hm_msg *gone;

    if (!s->user)
        return;
    gone = hm_msg_create(&chat_gone_type, NULL, s->conn_id);
    if (hm_ctx_send(ctx, s->user, gone) != HM_OK)
        hm_msg_destroy(gone);
    hm_addr_release(s->user);
    s->user = NULL;
}

/* The connection closed: log the user out and end the session. */
static void on_closed(hm_ctx *ctx, chat_session *s, const hm_msg *msg)
{
    HM_LOG_INFO("CHAT-DISCONNECT", "connection %llu closed: %s",
                (unsigned long long)s->conn_id,
                hm_err_str(hm_net_msg_err(msg)));
    log_out(ctx, s);
    hm_ctx_deactivate(ctx);
}

static void on_tick(hm_ctx *ctx, chat_session *s)
{
    uint64_t now = hm_ctx_now_ms(ctx);

    if (!s->conn || now - s->last_heard_ms <= s->srv->idle_timeout_ms)
        return;
    HM_LOG_INFO("CHAT-IDLE", "connection %llu silent for %llu ms: closing",
                (unsigned long long)s->conn_id,
                (unsigned long long)(now - s->last_heard_ms));
    chat_write_msg(s->conn, "chat.bye", 0,
                   json_pack("{s:s}", "reason", "idle_timeout"));
    hm_conn_close(s->conn); /* flushes the bye, then closes */
    log_out(ctx, s); /* now: a dead peer would hold the close until linger */
    hm_runtime_cancel_timer(hm_ctx_runtime(ctx), s->idle_timer);
    s->idle_timer = 0;
}

static hm_err session_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    chat_session *s = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &hm_net_opened_type) {
        s->conn = hm_conn_ref(hm_net_msg_conn(msg));
    } else if (t == &hm_net_frame_type) {
        on_frame(ctx, s, msg);
    } else if (t == &hm_net_error_type) {
        hm_hp_session_on_framing_error(&s->hp, s->conn, hm_net_msg_err(msg));
    } else if (t == &hm_net_closed_type) {
        on_closed(ctx, s, msg);
    } else if (t == &hm_type_tick) {
        on_tick(ctx, s);
    } else if (t == &login_retry_type) {
        on_login_retry(ctx, s, msg);
    }
    return HM_OK;
}
