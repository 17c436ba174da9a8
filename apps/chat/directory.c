/* apps/chat/directory.c: "chat/directory", who is online and which rooms
 * are open: one receiver for the whole chat (placed by the cluster on one
 * node, like a room).
 *
 * Users announce themselves when they log in (online) and out (offline);
 * the directory tells every other online user ("chat.presence" online /
 * offline) and answers "who" and "rooms". Rooms announce that they opened
 * and closed.
 *
 * Key decision: the directory's state is soft. If the node holding it dies,
 * the next activation starts empty and is filled again by the quiet
 * re-announcements (arg 1: no events) every user sends when a node leaves
 * (user.c, rejoin); a directory that must move hands its state on as the
 * same quiet announcements, sent to its own name. */
#include "apps/chat/chat_impl.h"

#include "apps/chat/roster.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <string.h>

typedef struct chat_directory {
    chat_server *srv;
    chat_roster users; /* online users and their nodes */
    chat_roster rooms; /* open rooms and the node holding each */
} chat_directory;

/* Tells every online user except `user` that `user` went `event`. */
static void broadcast(hm_ctx *ctx, chat_directory *d, const char *event,
                      const char *user)
{
    for (size_t i = 0; i < d->users.count; i++) {
        const char *to = d->users.entries[i].name;
        hm_msg *m;

        if (strcmp(to, user) == 0)
            continue;
        m = chat_note_msg(&chat_event_type, user, NULL, NULL);
        chat_note_set(&((chat_note *)hm_msg_payload(m))->event, event);
        chat_send_to(ctx, CHAT_USER_PREFIX, to, m);
    }
}

static void reply_list(hm_ctx *ctx, hm_msg *msg, const chat_roster *r)
{
    chat_note *n;

    if (!hm_msg_req_id(msg) || hm_msg_is_reply(msg))
        return;
    n = chat_note_create(NULL, NULL, NULL);
    n->list = chat_roster_names(r);
    hm_ctx_reply(ctx, msg, hm_msg_create(&chat_result_type, n, 0));
}

static void collect(void *arg, const char *name)
{
    chat_roster_add(arg, name, NULL);
}

static void on_node_gone(hm_ctx *ctx, chat_directory *d, const char *node)
{
    chat_roster gone;

    chat_roster_init(&gone);
    chat_roster_remove_node(&d->users, node, collect, &gone);
    chat_roster_remove_node(&d->rooms, node, NULL, NULL);
    for (size_t i = 0; i < gone.count; i++)
        broadcast(ctx, d, "offline", gone.entries[i].name);
    chat_roster_fini(&gone);
}

static hm_err directory_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    chat_directory *d = state;
    const hm_type *t = hm_msg_type(msg);
    const chat_note *n = chat_msg_note(msg);

    if (t == &chat_online_type && n->user && chat_name_valid(n->user)) {
        if (chat_roster_add(&d->users, n->user, n->node) &&
            hm_msg_arg(msg) != 1)
            broadcast(ctx, d, "online", n->user);
    } else if (t == &chat_offline_type && n->user) {
        if (chat_roster_remove(&d->users, n->user))
            broadcast(ctx, d, "offline", n->user);
    } else if (t == &chat_room_open_type && n->room) {
        chat_roster_add(&d->rooms, n->room, n->node);
    } else if (t == &chat_room_close_type && n->room) {
        chat_roster_remove(&d->rooms, n->room);
    } else if (t == &chat_who_type) {
        reply_list(ctx, msg, &d->users);
    } else if (t == &chat_rooms_type) {
        reply_list(ctx, msg, &d->rooms);
    } else if (t == &chat_node_gone_type && n->node) {
        on_node_gone(ctx, d, n->node);
    }
    return HM_OK;
}

/* Sends one quiet announcement of `e` to our own name (see the top). */
static void hand_on(hm_ctx *ctx, const hm_type *t, const chat_roster_entry *e)
{
    chat_note *n = chat_note_create(NULL, NULL, NULL);

    chat_note_set(t == &chat_online_type ? &n->user : &n->room, e->name);
    chat_note_set(&n->node, e->node);
    chat_send_to(ctx, CHAT_DIRECTORY, "", hm_msg_create(t, n, 1));
}

static void directory_deactivate(hm_ctx *ctx, void *state,
                                 hm_deactivate_reason why)
{
    chat_directory *d = state;

    /* The directory never ends itself: if it ends before the runtime
     * closes, the cluster is moving it to another node. */
    for (size_t i = 0; why != HM_DEACTIVATE_CLOSE && i < d->users.count; i++)
        hand_on(ctx, &chat_online_type, &d->users.entries[i]);
    for (size_t i = 0; why != HM_DEACTIVATE_CLOSE && i < d->rooms.count; i++)
        hand_on(ctx, &chat_room_open_type, &d->rooms.entries[i]);
    chat_roster_fini(&d->users);
    chat_roster_fini(&d->rooms);
    hm_free(d);
}

static hm_err directory_activate(hm_ctx *ctx, void *state)
{
    chat_directory *d = state;

    HM_LOG_INFO("CHAT-DIRECTORY", "the directory is active on node %s",
                d->srv->node_name);
    return HM_OK;
}

static const hm_hooks DIRECTORY_HOOKS = {.activate = directory_activate,
                                         .deactivate = directory_deactivate};

void chat_directory_make(chat_server *srv, hm_receiver *out)
{
    chat_directory *d = hm_calloc(1, sizeof *d);

    d->srv = srv;
    chat_roster_init(&d->users);
    chat_roster_init(&d->rooms);
    *out = (hm_receiver){.handler = directory_handle, .state = d,
                         .hooks = &DIRECTORY_HOOKS, .pinned = true};
}
