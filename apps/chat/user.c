/* apps/chat/user.c: "chat/user/<name>", one receiver per logged-in user,
 * on the node that holds the user's connection.
 *
 * The user owns the connection's handle: everything the client reads
 * (answers, direct messages, room lines, presence events) is written here.
 * Commands arrive from the session (in the client's order); each one that
 * involves another receiver is a runtime request to it, by name, with a
 * continuation that writes the answer to the client. So a direct message is
 * acknowledged by the recipient's own receiver: "chat.delivered" means it
 * reached the recipient's server, and "no_such_user" is the runtime's
 * refusal to activate a user that is not logged in anywhere.
 *
 * Key decision: a user knows the rooms it joined (by name only). When it
 * goes, for whatever reason, log_out() leaves them, tells the directory,
 * unregisters the name and closes the connection, so there is exactly one
 * way out. */
#include "apps/chat/chat_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include "cluster/node.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define CHAT_MAX_PENDING 1024 /* commands of one user awaiting an answer */

/* What a continuation needs: the client's request id and the command. The
 * user keeps them in a table it owns (freed by its deactivate hook), not
 * one allocation per request, because the runtime drops the continuations
 * of an activation that ends (their requests are then never answered); and
 * the table is bounded, because a client must not queue work without
 * bound. */
typedef struct pending {
    bool used;
    uint64_t id;
    chat_cmd_kind kind;
    char name[CHAT_MAX_NAME + 1]; /* a direct message's recipient */
    char room[CHAT_MAX_NAME + 1];
} pending;

typedef struct chat_user {
    chat_server *srv;
    char name[CHAT_MAX_NAME + 1];
    hm_conn *conn; /* owned reference */
    uint64_t conn_id;
    char rooms[CHAT_MAX_ROOMS_PER_USER][CHAT_MAX_NAME + 1];
    size_t room_count;
    pending *pending; /* owned; grows up to CHAT_MAX_PENDING */
    size_t pending_cap;
    bool logged_out; /* log_out() ran */
} chat_user;

/* ---------------------------------------------------------------- rooms */

static ptrdiff_t find_room(const chat_user *u, const char *room)
{
    for (size_t i = 0; i < u->room_count; i++)
        if (strcmp(u->rooms[i], room) == 0)
            return (ptrdiff_t)i;
    return -1;
}

static void add_room(chat_user *u, const char *room)
{
    if (find_room(u, room) < 0 && u->room_count < CHAT_MAX_ROOMS_PER_USER)
        strcpy(u->rooms[u->room_count++], room);
}

static void remove_room(chat_user *u, const char *room)
{
    ptrdiff_t at = find_room(u, room);

    if (at < 0)
        return;
    u->room_count--;
    memmove(u->rooms[at], u->rooms[at + 1],
            (u->room_count - (size_t)at) * sizeof u->rooms[0]);
}

/* ------------------------------------------------------------ requests */

/* Writes the error a failed request deserves: the callee's code from a
 * chat.result, or the runtime's error mapped to a chat code. */
static bool answer_failure(chat_user *u, const pending *p, hm_msg *reply,
                           hm_err err)
{
    const chat_note *n = reply ? chat_msg_note(reply) : NULL;

    if (err == HM_OK && n && n->code) {
        chat_write_error(u->conn, p->id, chat_err_parse(n->code),
                         n->text ? n->text : n->code);
        return true;
    }
    if (err == HM_OK)
        return false;
    if (err == HM_ENOTFOUND && p->kind == CHAT_CMD_MSG)
        chat_write_error(u->conn, p->id, CHAT_ERR_NO_SUCH_USER,
                         "no such user is logged in");
    else
        chat_write_error(u->conn, p->id, CHAT_ERR_UNDELIVERABLE,
                         hm_err_str(err));
    return true;
}

static void on_answer(hm_ctx *ctx, void *state, hm_msg *reply, hm_err err,
                      void *arg)
{
    chat_user *u = state;
    pending *p = &u->pending[(uintptr_t)arg];
    const chat_note *n = reply ? chat_msg_note(reply) : NULL;
    json_t *data;

    p->used = false;
    if (answer_failure(u, p, reply, err))
        return;
    data = json_object();
    if (p->kind == CHAT_CMD_JOIN)
        add_room(u, p->room);
    else if (p->kind == CHAT_CMD_LEAVE)
        remove_room(u, p->room);
    if (p->kind == CHAT_CMD_MSG)
        json_object_set_new(data, "to", json_string(p->name));
    if (p->room[0])
        json_object_set_new(data, "room", json_string(p->room));
    if (n && n->list)
        json_object_set(data, p->kind == CHAT_CMD_ROOMS ? "rooms" : "users",
                        n->list);
    chat_write_msg(u->conn,
                   p->kind == CHAT_CMD_MSG ? "chat.delivered" : "chat.ok",
                   p->id, data);
}

/* A free slot in the pending table (grown if needed), or CHAT_MAX_PENDING
 * if the table is full. */
static uintptr_t pending_slot(chat_user *u)
{
    size_t old = u->pending_cap;

    for (size_t i = 0; i < old; i++)
        if (!u->pending[i].used)
            return i;
    if (old == CHAT_MAX_PENDING)
        return CHAT_MAX_PENDING;
    u->pending_cap = old ? 2 * old : 8;
    u->pending = hm_realloc(u->pending, u->pending_cap * sizeof *u->pending);
    memset(u->pending + old, 0, (u->pending_cap - old) * sizeof *u->pending);
    return old;
}

/* Sends `m` (taken) as a request to prefix+name for command `cmd`. */
static void request(hm_ctx *ctx, chat_user *u, const chat_cmd *cmd,
                    const char *prefix, const char *name, hm_msg *m)
{
    char addr_name[CHAT_ADDR_MAX];
    uintptr_t slot;
    pending *p;
    hm_addr *to;
    hm_err err;

    if ((slot = pending_slot(u)) == CHAT_MAX_PENDING) {
        chat_write_error(u->conn, cmd->id, CHAT_ERR_BUSY,
                         "too many commands waiting for an answer");
        hm_msg_destroy(m);
        return;
    }
    p = &u->pending[slot];
    *p = (pending){.used = true, .id = cmd->id, .kind = cmd->kind};
    strcpy(p->name, cmd->name);
    strcpy(p->room, cmd->room);
    snprintf(addr_name, sizeof addr_name, "%s%s", prefix, name);
    if ((err = hm_runtime_intern(hm_ctx_runtime(ctx), addr_name, &to)) ==
        HM_OK) {
        err = hm_ctx_request(ctx, to, m, CHAT_REQUEST_TIMEOUT_MS, on_answer,
                             (void *)slot, NULL);
        hm_addr_release(to);
    }
    if (err != HM_OK) {
        p->used = false;
        hm_msg_destroy(m);
        answer_failure(u, p, NULL, err);
    }
}

static hm_msg *note_from_me_arg(chat_user *u, const hm_type *t,
                                const char *room, const char *text,
                                uint64_t arg)
{
    chat_note *n = chat_note_create(u->name, room, text);

    chat_note_set(&n->node, u->srv->node_name);
    return hm_msg_create(t, n, arg);
}

static hm_msg *note_from_me(chat_user *u, const hm_type *t, const char *room,
                            const char *text)
{
    return note_from_me_arg(u, t, room, text, 0);
}

/* The one way out: leave every room, go offline and free the name in the
 * cluster (the deactivate hook then closes the connection, once the name
 * can be taken again, so a client that sees its connection end can log in
 * again at once). Called from the handler, before
 * hm_ctx_deactivate(), so that all of it is sent while this activation is
 * live: a new login of the same name cannot spawn until it ends, so its
 * "online" and its registration always come after our "offline" and our
 * unregistration, in every mailbox. */
static void log_out(hm_ctx *ctx, chat_user *u)
{
    char addr[CHAT_ADDR_MAX];

    if (u->logged_out)
        return;
    u->logged_out = true;
    HM_LOG_INFO("CHAT-LOGOUT", "%s logged out", u->name);
    for (size_t i = 0; i < u->room_count; i++)
        chat_send_to(ctx, CHAT_ROOM_PREFIX, u->rooms[i],
                     note_from_me(u, &chat_leave_type, u->rooms[i], NULL));
    chat_send_to(ctx, CHAT_DIRECTORY, "",
                 note_from_me(u, &chat_offline_type, NULL, NULL));
    chat_send_to(ctx, CHAT_LOCAL_PREFIX, u->srv->node_name,
                 hm_msg_create(&chat_track_type,
                               chat_note_create(u->name, NULL, NULL), 0));
    snprintf(addr, sizeof addr, CHAT_USER_PREFIX "%s", u->name);
    if (u->srv->node)
        hm_node_unregister(u->srv->node, addr);
}

/* The login the session forwarded once it spawned us: announce ourselves
 * to the directory and to chat/local, and answer the client. (A spawned
 * receiver's activate hook runs before its first message, so this is where
 * a user's life visibly begins.) */
static void on_login(hm_ctx *ctx, chat_user *u, const chat_cmd *c)
{
    json_t *data = json_object();

    chat_send_to(ctx, CHAT_DIRECTORY, "",
                 note_from_me(u, &chat_online_type, NULL, NULL));
    chat_send_to(ctx, CHAT_LOCAL_PREFIX, u->srv->node_name,
                 hm_msg_create(&chat_track_type,
                               chat_note_create(u->name, NULL, NULL), 1));
    json_object_set_new(data, "user", json_string(u->name));
    json_object_set_new(data, "node", json_string(u->srv->node_name));
    chat_write_msg(u->conn, "chat.ok", c->id, data);
}

static void on_command(hm_ctx *ctx, chat_user *u, const chat_cmd *c)
{
    switch (c->kind) {
    case CHAT_CMD_LOGIN:
        on_login(ctx, u, c);
        break;
    case CHAT_CMD_LOGOUT:
        chat_write_msg(u->conn, "chat.ok", c->id, NULL);
        log_out(ctx, u);
        hm_ctx_deactivate(ctx);
        break;
    case CHAT_CMD_MSG:
        request(ctx, u, c, CHAT_USER_PREFIX, c->name,
                note_from_me(u, &chat_dm_type, NULL, c->text));
        break;
    case CHAT_CMD_JOIN:
        if (u->room_count == CHAT_MAX_ROOMS_PER_USER &&
            find_room(u, c->room) < 0) {
            chat_write_error(u->conn, c->id, CHAT_ERR_BAD_REQUEST,
                             "too many rooms");
            break;
        }
        request(ctx, u, c, CHAT_ROOM_PREFIX, c->room,
                note_from_me(u, &chat_join_type, c->room, NULL));
        break;
    case CHAT_CMD_LEAVE:
        request(ctx, u, c, CHAT_ROOM_PREFIX, c->room,
                note_from_me(u, &chat_leave_type, c->room, NULL));
        break;
    case CHAT_CMD_SAY:
        request(ctx, u, c, CHAT_ROOM_PREFIX, c->room,
                note_from_me(u, &chat_say_type, c->room, c->text));
        break;
    case CHAT_CMD_WHO:
        if (c->room[0])
            request(ctx, u, c, CHAT_ROOM_PREFIX, c->room,
                    note_from_me(u, &chat_who_type, c->room, NULL));
        else
            request(ctx, u, c, CHAT_DIRECTORY, "",
                    note_from_me(u, &chat_who_type, NULL, NULL));
        break;
    case CHAT_CMD_ROOMS:
        request(ctx, u, c, CHAT_DIRECTORY, "",
                note_from_me(u, &chat_rooms_type, NULL, NULL));
        break;
    case CHAT_CMD_COUNT:
        break;
    }
}

/* ------------------------------------------------------------- inbound */

/* A direct message for this user: show it, then acknowledge it. */
static void on_dm(hm_ctx *ctx, chat_user *u, hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);

    chat_write_msg(u->conn, "chat.dm", 0,
                   json_pack("{s:s*,s:s*}", "from", n->user, "text", n->text));
    if (hm_msg_req_id(msg) && !hm_msg_is_reply(msg))
        hm_ctx_reply(ctx, msg, chat_note_msg(&chat_result_type, u->name,
                                             NULL, NULL));
}

/* A room line or a presence change: show it. */
static void on_event(chat_user *u, const hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);

    if (n->event && strcmp(n->event, "said") == 0)
        chat_write_msg(u->conn, "chat.said", 0,
                       json_pack("{s:s*,s:s*,s:s*}", "room", n->room, "from",
                                 n->user, "text", n->text));
    else
        chat_write_msg(u->conn, "chat.presence", 0,
                       json_pack("{s:s*,s:s*,s:s*}", "event", n->event,
                                 "user", n->user, "room", n->room));
}

/* A node left the cluster: the rooms and the directory it held are gone,
 * so say again, quietly, where we are (arg 1: no events for this). */
static void rejoin(hm_ctx *ctx, chat_user *u)
{
    for (size_t i = 0; i < u->room_count; i++)
        chat_send_to(ctx, CHAT_ROOM_PREFIX, u->rooms[i],
                     note_from_me_arg(u, &chat_join_type, u->rooms[i], NULL,
                                      1));
    chat_send_to(ctx, CHAT_DIRECTORY, "",
                 note_from_me_arg(u, &chat_online_type, NULL, NULL, 1));
}

static hm_err user_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    chat_user *u = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &chat_cmd_type && hm_msg_arg(msg) == u->conn_id)
        on_command(ctx, u, hm_msg_payload(msg));
    else if (t == &chat_gone_type && hm_msg_arg(msg) == u->conn_id) {
        log_out(ctx, u);
        hm_ctx_deactivate(ctx);
    }
    else if (t == &chat_dm_type)
        on_dm(ctx, u, msg);
    else if (t == &chat_event_type)
        on_event(u, msg);
    else if (t == &chat_rejoin_type)
        rejoin(ctx, u);
    return HM_OK;
}

/* ------------------------------------------------------------ lifecycle */

/* Any other end (the runtime closing, a failed handler) still logs out. */
static void user_deactivate(hm_ctx *ctx, void *state,
                            hm_deactivate_reason why)
{
    chat_user *u = state;

    if (why != HM_DEACTIVATE_CLOSE)
        log_out(ctx, u);
    hm_conn_close(u->conn);
    hm_conn_release(u->conn);
    hm_free(u->pending);
    hm_free(u);
}

static const hm_hooks USER_HOOKS = {.deactivate = user_deactivate};

hm_err chat_user_spawn(chat_server *srv, const char *name, hm_conn *conn,
                       uint64_t conn_id, hm_addr **out)
{
    chat_user *u = hm_calloc(1, sizeof *u);
    char addr[CHAT_ADDR_MAX];
    hm_err err;

    u->srv = srv;
    strcpy(u->name, name);
    u->conn = hm_conn_ref(conn);
    u->conn_id = conn_id;
    snprintf(addr, sizeof addr, CHAT_USER_PREFIX "%s", name);
    err = hm_runtime_spawn(srv->rt, addr,
                           &(hm_receiver){.handler = user_handle,
                                          .state = u,
                                          .hooks = &USER_HOOKS,
                                          .pinned = true},
                           out);
    if (err != HM_OK) {
        hm_conn_release(u->conn);
        hm_free(u);
    }
    return err;
}
