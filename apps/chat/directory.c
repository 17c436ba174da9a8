/* apps/chat/directory.c: "chat/directory", who is online and which rooms
 * are open: one receiver for the whole chat (placed by the cluster on one
 * node, like a room).
 *
 * Users announce themselves when they log in (online) and out (offline);
 * the directory passes each change once to every node that has users (to
 * its chat/local, which tells the users there: local.c) and answers "who"
 * and "rooms". Rooms announce that they opened and closed.
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
    chat_roster dead;  /* nodes dead or left (and not back) */
} chat_directory;

/* Sends the change "`user` (on `node`) went `event`" to chat/local/<node>
 * of node `to` (arg 1: quiet, for its replica only). */
static void tell_node(hm_ctx *ctx, const char *to, const char *event,
                      const chat_roster_entry *e, uint64_t quiet)
{
    chat_note *n = chat_note_create(e->name, NULL, NULL);

    chat_note_set(&n->event, event);
    chat_note_set(&n->node, e->node);
    chat_send_to(ctx, CHAT_LOCAL_PREFIX, to,
                 hm_msg_create(&chat_event_type, n, quiet));
}

/* True if some user is on `node`. */
static bool node_has_users(const chat_directory *d, const char *node)
{
    for (size_t i = 0; i < d->users.count; i++)
        if (strcmp(d->users.entries[i].node, node) == 0)
            return true;
    return false;
}

static const chat_roster_entry *find_user(const chat_directory *d,
                                          const char *name)
{
    for (size_t i = 0; i < d->users.count; i++)
        if (strcmp(d->users.entries[i].name, name) == 0)
            return &d->users.entries[i];
    return NULL;
}

/* Tells every node with users about `e` going `event`, and also `extra`
 * (the subject's own node, which may have no users left; NULL: none).
 * O(users x nodes): the nodes are few. */
static void fan_out(hm_ctx *ctx, chat_directory *d, const char *event,
                    const chat_roster_entry *e, const char *extra)
{
    chat_roster nodes;

    chat_roster_init(&nodes);
    for (size_t i = 0; i < d->users.count; i++)
        chat_roster_add(&nodes, d->users.entries[i].node, NULL);
    if (extra)
        chat_roster_add(&nodes, extra, NULL);
    for (size_t i = 0; i < nodes.count; i++)
        tell_node(ctx, nodes.entries[i].name, event, e, 0);
    chat_roster_fini(&nodes);
}

/* A user came online. A node that had no users until now gets the whole
 * list first (quietly), so its replica starts complete. */
static void on_online(hm_ctx *ctx, chat_directory *d, const chat_note *n,
                      bool quiet)
{
    bool new_node = !node_has_users(d, n->node);
    bool added = chat_roster_add(&d->users, n->user, n->node);
    const chat_roster_entry *e = find_user(d, n->user);

    if (new_node)
        for (size_t i = 0; i < d->users.count; i++)
            tell_node(ctx, e->node, "online", &d->users.entries[i], 1);
    if (added && !quiet)
        fan_out(ctx, d, "online", e, NULL);
}

static void on_offline(hm_ctx *ctx, chat_directory *d, const char *user)
{
    const chat_roster_entry *e = find_user(d, user);
    chat_roster_entry gone;

    if (!e)
        return;
    gone = *e;
    chat_roster_remove(&d->users, user);
    fan_out(ctx, d, "offline", &gone, gone.node);
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

/* Every node's chat/local hears of a dead node from its own cluster node
 * and tells its users; here the dead node's users just go. */
static void on_node_gone(chat_directory *d, const char *node, bool dead)
{
    if (dead)
        chat_roster_add(&d->dead, node, NULL);
    chat_roster_remove_node(&d->users, node, NULL, NULL);
    chat_roster_remove_node(&d->rooms, node, NULL, NULL);
}

static hm_err directory_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    chat_directory *d = state;
    const hm_type *t = hm_msg_type(msg);
    const chat_note *n = chat_msg_note(msg);

    if (t == &chat_online_type && n->user && chat_name_valid(n->user) &&
        n->node && !chat_roster_has(&d->dead, n->node)) {
        on_online(ctx, d, n, hm_msg_arg(msg) == 1);
    } else if (t == &chat_offline_type && n->user) {
        on_offline(ctx, d, n->user);
    } else if (t == &chat_room_open_type && n->room) {
        chat_roster_add(&d->rooms, n->room, n->node);
    } else if (t == &chat_room_close_type && n->room) {
        chat_roster_remove(&d->rooms, n->room);
    } else if (t == &chat_who_type) {
        reply_list(ctx, msg, &d->users);
    } else if (t == &chat_rooms_type) {
        reply_list(ctx, msg, &d->rooms);
    } else if (t == &chat_node_gone_type && n->node) {
        on_node_gone(d, n->node, hm_msg_arg(msg) == 1);
    } else if (t == &chat_node_up_type && n->node) {
        chat_roster_remove(&d->dead, n->node);
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
    chat_roster_fini(&d->dead);
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
