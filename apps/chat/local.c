/* apps/chat/local.c: "chat/local/<node>", one receiver per node: what is on
 * this node, and who is online anywhere.
 *
 * It keeps three lists: the users logged in here, the rooms active here,
 * and a replica of everyone online in the whole chat (name and node), fed
 * by the directory. Presence events reach users through it: the directory
 * sends each online/offline change once per node, to that node's
 * chat/local, which updates its replica and tells its own users. So a
 * login costs one message per node, not one per user.
 *
 * Key decision: when a node dies, each surviving node learns it from its
 * own cluster node (chat_local_node_gone, called from the member event
 * callback), not from the directory, which may have died with it. Each
 * chat/local then reads its replica to tell its users who went offline,
 * tells the rooms here to drop that node's members, and asks its users to
 * announce themselves again, quietly, to the rooms and the directory, since
 * those may have been on the dead node and are rebuilt elsewhere. */
#include "apps/chat/chat_impl.h"

#include "apps/chat/roster.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include "cluster/node.h"

#include <stdio.h>
#include <string.h>

typedef struct chat_local {
    chat_server *srv;
    chat_roster users;  /* logged in on this node */
    chat_roster rooms;  /* active on this node */
    chat_roster online; /* everyone online, with their nodes */
    chat_roster dead;   /* nodes dead or left (and not back) */
} chat_local;

/* Tells every user on this node except `user` that `user` went `event`. */
static void tell_users(hm_ctx *ctx, chat_local *l, const char *event,
                       const char *user)
{
    for (size_t i = 0; i < l->users.count; i++) {
        const char *to = l->users.entries[i].name;
        hm_msg *m;

        if (strcmp(to, user) == 0)
            continue;
        m = chat_note_msg(&chat_event_type, user, NULL, NULL);
        chat_note_set(&((chat_note *)hm_msg_payload(m))->event, event);
        chat_send_to(ctx, CHAT_USER_PREFIX, to, m);
    }
}

static void on_track(chat_local *l, const hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);
    chat_roster *r = n->user ? &l->users : &l->rooms;
    const char *name = n->user ? n->user : n->room;

    if (!name)
        return;
    if (hm_msg_arg(msg))
        chat_roster_add(r, name, NULL);
    else
        chat_roster_remove(r, name);
}

/* An online or offline change from the directory (arg 1: quiet, only
 * update the replica). */
static void on_presence(hm_ctx *ctx, chat_local *l, const hm_msg *msg)
{
    const chat_note *n = chat_msg_note(msg);
    bool quiet = hm_msg_arg(msg) == 1;
    bool changed;

    if (!n->user || !n->event)
        return;
    if (strcmp(n->event, "online") == 0 && n->node &&
        chat_roster_has(&l->dead, n->node))
        return; /* sent before its node died, arrived after */
    if (strcmp(n->event, "online") == 0)
        changed = chat_roster_add(&l->online, n->user, n->node);
    else
        changed = chat_roster_remove(&l->online, n->user);
    /* A user already known online who logs in on another node (its
     * client failed over before we heard its old node died) stays online
     * for the users here: only its node changes. */
    if (changed && !quiet)
        tell_users(ctx, l, n->event, n->user);
}

/* A node message of `type` about `node` (borrowed). Returns owned. */
static hm_msg *node_msg(const hm_type *type, const char *node, uint64_t arg)
{
    chat_note *n = chat_note_create(NULL, NULL, NULL);

    chat_note_set(&n->node, node);
    return hm_msg_create(type, n, arg);
}

static void collect(void *arg, const char *name)
{
    chat_roster_add(arg, name, NULL);
}

static void on_node_gone(hm_ctx *ctx, chat_local *l, const char *node,
                         uint64_t dead)
{
    chat_roster gone;

    HM_LOG_INFO("CHAT-NODE-GONE", "node %s is gone: its users are offline",
                node);
    if (dead)
        chat_roster_add(&l->dead, node, NULL);
    chat_roster_init(&gone);
    chat_roster_remove_node(&l->online, node, collect, &gone);
    for (size_t i = 0; i < gone.count; i++)
        tell_users(ctx, l, "offline", gone.entries[i].name);
    chat_roster_fini(&gone);
    for (size_t i = 0; i < l->rooms.count; i++)
        chat_send_to(ctx, CHAT_ROOM_PREFIX, l->rooms.entries[i].name,
                     node_msg(&chat_node_gone_type, node, dead));
    chat_send_to(ctx, CHAT_DIRECTORY, "",
                 node_msg(&chat_node_gone_type, node, dead));
    for (size_t i = 0; i < l->users.count; i++)
        chat_send_to(ctx, CHAT_USER_PREFIX, l->users.entries[i].name,
                     chat_note_msg(&chat_rejoin_type, NULL, NULL, NULL));
}

/* A node we saw die is up again (a new incarnation): the rooms here and
 * the directory accept its users again. */
static void on_node_back(hm_ctx *ctx, chat_local *l, const char *node)
{
    for (size_t i = 0; i < l->rooms.count; i++)
        chat_send_to(ctx, CHAT_ROOM_PREFIX, l->rooms.entries[i].name,
                     node_msg(&chat_node_up_type, node, 0));
    chat_send_to(ctx, CHAT_DIRECTORY, "",
                 node_msg(&chat_node_up_type, node, 0));
}

static hm_err local_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    chat_local *l = state;
    const hm_type *t = hm_msg_type(msg);
    const chat_note *n = chat_msg_note(msg);

    if (t == &chat_track_type)
        on_track(l, msg);
    else if (t == &chat_event_type)
        on_presence(ctx, l, msg);
    else if (t == &chat_node_gone_type && n->node &&
             strcmp(n->node, l->srv->node_name) != 0)
        on_node_gone(ctx, l, n->node, hm_msg_arg(msg));
    else if (t == &chat_node_up_type && n->node &&
             chat_roster_remove(&l->dead, n->node))
        on_node_back(ctx, l, n->node);
    return HM_OK;
}

static void local_deactivate(hm_ctx *ctx, void *state,
                             hm_deactivate_reason why)
{
    chat_local *l = state;

    chat_roster_fini(&l->users);
    chat_roster_fini(&l->rooms);
    chat_roster_fini(&l->online);
    chat_roster_fini(&l->dead);
    hm_free(l);
}

static const hm_hooks LOCAL_HOOKS = {.deactivate = local_deactivate};

hm_err chat_local_spawn(chat_server *srv)
{
    chat_local *l = hm_calloc(1, sizeof *l);
    char addr[CHAT_ADDR_MAX];
    hm_err err;

    l->srv = srv;
    snprintf(addr, sizeof addr, CHAT_LOCAL_PREFIX "%s", srv->node_name);
    err = hm_runtime_spawn(srv->rt, addr,
                           &(hm_receiver){.handler = local_handle, .state = l,
                                          .hooks = &LOCAL_HOOKS,
                                          .pinned = true},
                           NULL);
    if (err != HM_OK) {
        hm_free(l);
        return err;
    }
    if (srv->node)
        return hm_node_register(srv->node, addr);
    return HM_OK;
}

static void tell_local(chat_server *srv, hm_msg *m)
{
    char addr[CHAT_ADDR_MAX];

    snprintf(addr, sizeof addr, CHAT_LOCAL_PREFIX "%s", srv->node_name);
    if (hm_runtime_send_name(srv->rt, addr, m) != HM_OK)
        hm_msg_destroy(m);
}

void chat_local_node_gone(chat_server *srv, const char *node, bool dead)
{
    tell_local(srv, node_msg(&chat_node_gone_type, node, dead));
}

void chat_local_node_up(chat_server *srv, const char *node)
{
    tell_local(srv, node_msg(&chat_node_up_type, node, 0));
}
