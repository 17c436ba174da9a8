/* apps/chat/room.c: "chat/room/<name>", one receiver per room, created on
 * demand by the factory the first time anyone joins (or speaks to) it.
 *
 * A room is its member list and nothing else: a join adds a member and
 * tells everyone ("joined"), a say is copied to every member ("said"), a
 * leave removes one ("left"). Members are addressed by name
 * ("chat/user/bob"), wherever they are connected. In a cluster the room is
 * a *placed* receiver: it lives on the node the cluster chooses for its
 * name, and every node's sends reach it there.
 *
 * Key decision: a room with no members ends itself, and a room that must
 * move (its node is no longer the one chosen for it: the cluster ends it
 * with hm_runtime_deactivate) hands its members to its successor by sending
 * them, as quiet joins, to its own name from its deactivate hook: the
 * cluster routes them to the new node. */
#include "apps/chat/chat_impl.h"

#include "apps/chat/roster.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <string.h>

typedef struct chat_room {
    chat_server *srv;
    char name[CHAT_MAX_NAME + 1];
    chat_roster members;
    chat_roster dead; /* nodes dead or left: late joins from them are void */
} chat_room;

/* Sends an event about `user` to every member. */
static void broadcast(hm_ctx *ctx, chat_room *r, const char *event,
                      const char *user, const char *text)
{
    for (size_t i = 0; i < r->members.count; i++) {
        hm_msg *m = chat_note_msg(&chat_event_type, user, r->name, text);
        chat_note_set(&((chat_note *)hm_msg_payload(m))->event, event);
        chat_send_to(ctx, CHAT_USER_PREFIX, r->members.entries[i].name, m);
    }
}

/* Answers a request (if `msg` is one) with a result: `code` NULL is
 * success; `list` (taken) may be NULL. */
static void answer(hm_ctx *ctx, chat_room *r, hm_msg *msg, chat_err *code,
                   json_t *list)
{
    chat_note *n;

    if (!hm_msg_req_id(msg) || hm_msg_is_reply(msg)) {
        json_decref(list);
        return;
    }
    n = chat_note_create(NULL, r->name, NULL);
    if (code) {
        chat_note_set(&n->code, chat_err_name(*code));
        chat_note_set(&n->text, "you are not in that room");
    }
    n->list = list;
    hm_ctx_reply(ctx, msg, hm_msg_create(&chat_result_type, n, 0));
}

static void end_if_empty(hm_ctx *ctx, chat_room *r)
{
    if (r->members.count == 0)
        hm_ctx_deactivate(ctx);
}

static void on_join(hm_ctx *ctx, chat_room *r, hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);
    bool quiet = hm_msg_arg(msg) == 1;

    if (n->node && chat_roster_has(&r->dead, n->node)) {
        /* Sent before its node died: void (answered, so that no request
         * waits for nothing). */
        answer(ctx, r, msg, NULL, NULL);
        return;
    }
    if (n->user && chat_name_valid(n->user) &&
        chat_roster_add(&r->members, n->user, n->node) && !quiet)
        broadcast(ctx, r, "joined", n->user, NULL);
    answer(ctx, r, msg, NULL, chat_roster_names(&r->members));
}

static void on_leave(hm_ctx *ctx, chat_room *r, hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);
    chat_err not_member = CHAT_ERR_NOT_MEMBER;

    if (!n->user || !chat_roster_remove(&r->members, n->user)) {
        answer(ctx, r, msg, &not_member, NULL);
        return;
    }
    broadcast(ctx, r, "left", n->user, NULL);
    answer(ctx, r, msg, NULL, NULL);
}

static void on_say(hm_ctx *ctx, chat_room *r, hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);
    chat_err not_member = CHAT_ERR_NOT_MEMBER;

    if (!n->user || !chat_roster_has(&r->members, n->user)) {
        answer(ctx, r, msg, &not_member, NULL);
        return;
    }
    broadcast(ctx, r, "said", n->user, n->text);
    answer(ctx, r, msg, NULL, NULL);
}

static void collect(void *arg, const char *name)
{
    chat_roster_add(arg, name, NULL);
}

/* Every member on a node that died is gone: tell the others. */
static void on_node_gone(hm_ctx *ctx, chat_room *r, hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);
    chat_roster gone;

    if (!n->node)
        return;
    if (hm_msg_arg(msg) == 1)
        chat_roster_add(&r->dead, n->node, NULL);
    chat_roster_init(&gone);
    chat_roster_remove_node(&r->members, n->node, collect, &gone);
    for (size_t i = 0; i < gone.count; i++)
        broadcast(ctx, r, "left", gone.entries[i].name, NULL);
    chat_roster_fini(&gone);
}

static hm_err room_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    chat_room *r = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &chat_join_type) {
        on_join(ctx, r, msg);
    } else if (t == &chat_leave_type) {
        on_leave(ctx, r, msg);
    } else if (t == &chat_say_type) {
        on_say(ctx, r, msg);
    } else if (t == &chat_who_type) {
        answer(ctx, r, msg, NULL, chat_roster_names(&r->members));
    } else if (t == &chat_node_gone_type) {
        on_node_gone(ctx, r, msg);
    } else if (t == &chat_node_up_type && chat_msg_note(msg)->node) {
        chat_roster_remove(&r->dead, chat_msg_note(msg)->node);
    }
    /* A room exists while it has members; one that a stray message made
     * (a who, a say or a leave by a non-member) ends at once. */
    end_if_empty(ctx, r);
    return HM_OK;
}

static hm_err room_activate(hm_ctx *ctx, void *state)
{
    chat_room *r = state;
    hm_msg *open = chat_note_msg(&chat_room_open_type, NULL, r->name, NULL);

    HM_LOG_INFO("CHAT-ROOM-OPEN", "room %s is active on node %s", r->name,
                r->srv->node_name);
    chat_note_set(&((chat_note *)hm_msg_payload(open))->node,
                  r->srv->node_name);
    chat_send_to(ctx, CHAT_DIRECTORY, "", open);
    chat_send_to(ctx, CHAT_LOCAL_PREFIX, r->srv->node_name,
                 hm_msg_create(&chat_track_type,
                               chat_note_create(NULL, r->name, NULL), 1));
    return HM_OK;
}

static void room_deactivate(hm_ctx *ctx, void *state,
                            hm_deactivate_reason why)
{
    chat_room *r = state;

    if (why != HM_DEACTIVATE_CLOSE) {
        chat_send_to(ctx, CHAT_LOCAL_PREFIX, r->srv->node_name,
                     hm_msg_create(&chat_track_type,
                                   chat_note_create(NULL, r->name, NULL), 0));
        /* Members left at the end: the cluster is moving us (we end
         * ourselves only when empty). Hand them on. */
        for (size_t i = 0; i < r->members.count; i++) {
            const chat_roster_entry *e = &r->members.entries[i];
            chat_note *n = chat_note_create(e->name, r->name, NULL);

            chat_note_set(&n->node, e->node);
            chat_send_to(ctx, CHAT_ROOM_PREFIX, r->name,
                         hm_msg_create(&chat_join_type, n, 1));
        }
        if (r->members.count == 0)
            chat_send_to(ctx, CHAT_DIRECTORY, "",
                         chat_note_msg(&chat_room_close_type, NULL, r->name,
                                       NULL));
    }
    chat_roster_fini(&r->members);
    chat_roster_fini(&r->dead);
    hm_free(r);
}

static const hm_hooks ROOM_HOOKS = {.activate = room_activate,
                                    .deactivate = room_deactivate};

void chat_room_make(chat_server *srv, const char *room, hm_receiver *out)
{
    chat_room *r = hm_calloc(1, sizeof *r);

    r->srv = srv;
    strcpy(r->name, room);
    chat_roster_init(&r->members);
    chat_roster_init(&r->dead);
    *out = (hm_receiver){.handler = room_handle, .state = r,
                         .hooks = &ROOM_HOOKS, .pinned = true};
}
