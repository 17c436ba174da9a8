/* cluster/node_recv.c: the "cluster/node" receiver, the driver of the
 * membership table and the presence registry.
 *
 * It is ticked every `tick_ms` by a runtime timer and fed by the link
 * receivers (a link came up or went down, a dial failed, a cl.* line
 * arrived, the peer was heard). After every input it drains the actions the
 * state machines produced, in order: it writes their lines on the member's
 * current link, dials, closes, and turns member events into work for the
 * rest of the node (the presence of a dead member is dropped, its peer
 * receiver fails what waits for it, the live list used by placement is
 * rebuilt). It owns one slot per member with that member's current link.
 *
 * Key decision: duplicate links are settled here, before the table hears of
 * them: a second authenticated link to the same incarnation keeps the one
 * hm_members_keep_new_link() chooses and silently closes the other, so both
 * ends agree without talking; a link from a newer incarnation always wins. */
#include "cluster/node_impl.h"

#include "cluster/options.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- slots */

static cl_slot *slot_find(hm_node *n, const char *name)
{
    for (size_t i = 0; i < n->slot_count; i++)
        if (strcmp(n->slots[i].name, name) == 0)
            return &n->slots[i];
    return NULL;
}

static cl_slot *slot_ensure(hm_node *n, const char *name)
{
    cl_slot *s = slot_find(n, name);

    if (s)
        return s;
    if (n->slot_count == n->slot_cap) {
        n->slot_cap = n->slot_cap ? 2 * n->slot_cap : 8;
        n->slots = hm_realloc(n->slots, n->slot_cap * sizeof *n->slots);
    }
    s = &n->slots[n->slot_count++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->peer = cl_peer_ensure(n, name, &s->peer_addr);
    return s;
}

static void tell_peer(hm_ctx *ctx, cl_slot *s, const hm_type *type,
                      hm_conn *conn)
{
    cl_ev *ev;
    hm_msg *m;

    if (!s->peer_addr)
        return;
    m = cl_ev_msg(type, &ev);
    ev->conn = conn ? hm_conn_ref(conn) : NULL;
    ev->inc = s->inc;
    if (hm_ctx_send(ctx, s->peer_addr, m) != HM_OK)
        hm_msg_destroy(m);
}

/* Forgets the slot's link (closing it if `close`). */
static void slot_unlink(cl_slot *s, bool close)
{
    if (close && s->conn)
        hm_conn_close(s->conn);
    hm_conn_release(s->conn);
    hm_addr_release(s->link);
    s->conn = NULL;
    s->link = NULL;
}

/* ----------------------------------------------------------- actions */

static void send_wire(hm_node *n, const char *peer, const hm_wire_msg *w,
                      uint64_t now_ms)
{
    cl_slot *s = slot_find(n, peer);
    char *line;
    size_t len;

    if (!s || !s->conn || cl_encode_wire(w, &line, &len) != HM_OK)
        return;
    /* Ahead of queued routed traffic (peer.c writes it as bulk): a
     * heartbeat that waits behind a long queue looks like silence. */
    if (hm_conn_write_take(s->conn, line, len) != HM_OK)
        hm_free(line);
    else
        hm_members_on_sent(n->members, peer, now_ms);
}

/* Dials in progress, by address: the table may ask again for one that is
 * still connecting (members.h, HM_MACT_DIAL); it is ignored. */
static bool dialing_find(hm_node *n, const char *addr, size_t *at)
{
    for (size_t i = 0; i < n->dialing_count; i++) {
        if (strcmp(n->dialing[i], addr) == 0) {
            *at = i;
            return true;
        }
    }
    return false;
}

static void dialing_add(hm_node *n, const char *addr)
{
    if (n->dialing_count == n->dialing_cap) {
        n->dialing_cap = n->dialing_cap ? 2 * n->dialing_cap : 8;
        n->dialing = hm_realloc(n->dialing,
                                n->dialing_cap * sizeof *n->dialing);
    }
    snprintf(n->dialing[n->dialing_count++], CL_ADDR_CAP, "%s", addr);
}

static void dialing_done(hm_node *n, const char *addr)
{
    size_t at;

    if (addr && dialing_find(n, addr, &at))
        memcpy(n->dialing[at], n->dialing[--n->dialing_count], CL_ADDR_CAP);
}

static void dial(hm_ctx *ctx, hm_node *n, const char *peer, const char *addr)
{
    char name[64], host[CL_ADDR_CAP];
    hm_addr *owner;
    void *state;
    size_t at;
    int port;
    hm_err err;

    if (dialing_find(n, addr, &at))
        return;
    if (hm_cluster_parse_hostport(addr, host, sizeof host, &port) != HM_OK) {
        hm_members_on_dial_failed(n->members, peer, false,
                                  hm_ctx_now_ms(ctx));
        return;
    }
    /* relaxed: names need only be unique. */
    snprintf(name, sizeof name, CL_LINK_PREFIX "d%llu",
             (unsigned long long)atomic_fetch_add_explicit(
                 &n->next_dial, 1, memory_order_relaxed));
    state = cl_link_state_create(n, peer, addr);
    if (hm_runtime_spawn(n->rt, name,
                         &(hm_receiver){.handler = cl_link_handle,
                                        .state = state,
                                        .hooks = &cl_link_hooks,
                                        .pinned = true},
                         &owner) != HM_OK) {
        hm_free(state);
        return;
    }
    err = hm_net_connect(n->net, &(hm_connect_config){
                                     .host = host, .port = port,
                                     .owner = owner,
                                     .timeout_ms = 1000,
                                     .conn = n->link_opt},
                         NULL);
    if (err != HM_OK) {
        /* The link receiver will never hear of a connection: retire it. */
        hm_runtime_deactivate(n->rt, owner);
        hm_members_on_dial_failed(n->members, peer, false,
                                  hm_ctx_now_ms(ctx));
    } else {
        dialing_add(n, addr);
    }
    hm_addr_release(owner);
}

/* Rebuilds the live list (placement) and the snapshot (API). */
static void publish(hm_node *n)
{
    size_t count = hm_members_count(n->members);
    hm_node_member *snap = hm_calloc(count + 1, sizeof *snap);
    char(*live)[CL_NAME_CAP] = hm_calloc(count + 1, sizeof *live);
    size_t nlive = 0;

    strcpy(live[nlive++], n->name);
    for (size_t i = 0; i < count; i++) {
        hm_node_member *m = &snap[i];
        cl_slot *s;

        hm_members_at(n->members, i, &m->info);
        if (m->info.state == HM_MEMBER_ALIVE ||
            m->info.state == HM_MEMBER_SUSPECT)
            strcpy(live[nlive++], m->info.name);
        if ((s = slot_find(n, m->info.name)) != NULL) {
            m->write_queue_len = s->conn ? hm_conn_queued_len(s->conn) : 0;
            m->buffered = s->peer ? cl_peer_buffered(s->peer) : 0;
            m->undeliverable = s->peer ? cl_peer_undeliverable(s->peer) : 0;
        }
    }
    pthread_mutex_lock(&n->lock);
    if (nlive != n->live_count ||
        memcmp(live, n->live, nlive * sizeof *live) != 0)
        n->live_changed = true;
    hm_free(n->snap);
    hm_free(n->live);
    n->snap = snap;
    n->snap_count = count;
    n->live = live;
    n->live_count = nlive;
    cl_unlock(n);
}

/* The placed names active here, collected by hm_runtime_foreach_active
 * (which holds a directory lock: nothing but copying happens there). */
typedef struct active_list {
    hm_node *node;
    char **names;
    size_t count, cap;
} active_list;

static void collect_placed(void *arg, const char *name)
{
    active_list *l = arg;

    if (!l->node->placed(l->node->placed_arg, name))
        return;
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->names = hm_realloc(l->names, l->cap * sizeof *l->names);
    }
    l->names[l->count++] = hm_strdup(name);
}

/* After a membership change: every placed activation here that the live
 * members now place on another member ends (its hooks run); the next
 * message for it activates a proxy to its owner. A proxy among them ends
 * too and comes back at the next message, pointed at the new owner. */
static void move_placed(hm_node *n)
{
    active_list l = {.node = n};
    char where[CL_NAME_CAP];
    hm_addr *a;

    if (!n->placed)
        return;
    hm_runtime_foreach_active(n->rt, collect_placed, &l);
    for (size_t i = 0; i < l.count; i++) {
        if (cl_route(n, l.names[i], where) &&
            hm_runtime_intern(n->rt, l.names[i], &a) == HM_OK) {
            HM_LOG_DEBUG("CL-MOVE", "%s: %s now lives on %s", n->name,
                         l.names[i], where);
            hm_runtime_deactivate(n->rt, a);
            hm_addr_release(a);
        }
        hm_free(l.names[i]);
    }
    hm_free(l.names);
}

static void on_member_event(hm_ctx *ctx, hm_node *n,
                            const hm_member_action *a)
{
    cl_slot *s = slot_find(n, a->peer);

    if (a->event == HM_MEMBER_EV_UP) {
        /* Back with the same incarnation after a false death (a long
         * partition): its names count again; its snapshot follows. */
        pthread_mutex_lock(&n->lock);
        hm_presence_on_node_up(n->pres, a->peer, a->inc);
        cl_unlock(n);
        /* Its peer receiver learns of the link before the app learns of
         * the member: after a death it drops what it is given until then,
         * and an app answers UP with sends (mqtt.lost). on_link_up tells
         * it again; a second peer_up only rewrites unacknowledged lines,
         * which the member's duplicate filter drops. */
        if (s && s->conn)
            tell_peer(ctx, s, &cl_peer_up_type, s->conn);
    } else if (a->event == HM_MEMBER_EV_DEAD ||
               a->event == HM_MEMBER_EV_LEFT ||
               a->event == HM_MEMBER_EV_REPLACED) {
        pthread_mutex_lock(&n->lock);
        hm_presence_on_node_gone(n->pres, a->peer, a->inc);
        cl_unlock(n);
        if (s)
            tell_peer(ctx, s, &cl_peer_gone_type, NULL);
    }
    publish(n);
    if (a->event != HM_MEMBER_EV_SUSPECT && a->event != HM_MEMBER_EV_ALIVE)
        move_placed(n);
    if (n->on_event)
        n->on_event(n->event_arg, a->peer, a->inc, a->event);
}

static void drain(hm_ctx *ctx, hm_node *n)
{
    uint64_t now = hm_ctx_now_ms(ctx);
    hm_member_action a;
    hm_presence_action pa;
    cl_slot *s;

    while (hm_members_next_action(n->members, &a)) {
        switch (a.kind) {
        case HM_MACT_SEND:
            send_wire(n, a.peer, &a.msg, now);
            break;
        case HM_MACT_DIAL:
            if (!n->leaving)
                dial(ctx, n, a.peer, a.addr);
            break;
        case HM_MACT_CLOSE:
            if ((s = slot_find(n, a.peer)) != NULL && s->conn) {
                slot_unlink(s, true);
                tell_peer(ctx, s, &cl_peer_down_type, NULL);
                pthread_mutex_lock(&n->lock);
                hm_presence_on_link_down(n->pres, a.peer);
                cl_unlock(n);
            }
            break;
        case HM_MACT_EVENT:
            on_member_event(ctx, n, &a);
            break;
        }
        hm_wire_msg_fini(&a.msg);
    }
    pthread_mutex_lock(&n->lock);
    while (hm_presence_next_action(n->pres, &pa)) {
        send_wire(n, pa.peer, &pa.msg, now);
        hm_wire_msg_fini(&pa.msg);
    }
    cl_unlock(n);
}

/* ------------------------------------------------------------- links */

/* A second link to a member that has one. True if the new one replaced it
 * silently (the table is not told); false to go on as a fresh link. */
static bool settle_duplicate(hm_ctx *ctx, hm_node *n, cl_slot *s, cl_ev *ev,
                             bool *refused)
{
    *refused = false;
    if (!s->conn)
        return false;
    if (ev->inc == s->inc &&
        !hm_members_keep_new_link(n->name, s->name, s->dialled, ev->flag)) {
        hm_conn_close(ev->conn);
        *refused = true;
        return true;
    }
    slot_unlink(s, true);
    s->conn = ev->conn;
    s->link = ev->link;
    s->dialled = ev->flag;
    ev->conn = NULL;
    ev->link = NULL;
    if (ev->inc != s->inc)
        return false; /* a new incarnation: the table must hear of it */
    tell_peer(ctx, s, &cl_peer_up_type, s->conn);
    return true;
}

static void on_link_up(hm_ctx *ctx, hm_node *n, cl_ev *ev)
{
    uint64_t now = hm_ctx_now_ms(ctx);
    cl_slot *s = slot_ensure(n, ev->peer);
    bool refused;

    dialing_done(n, ev->str);
    if (n->leaving) {
        hm_conn_close(ev->conn);
        return;
    }
    if (settle_duplicate(ctx, n, s, ev, &refused))
        return;
    if (ev->conn) {
        s->conn = ev->conn;
        s->link = ev->link;
        s->dialled = ev->flag;
        ev->conn = NULL;
        ev->link = NULL;
    }
    s->inc = ev->inc;
    if (hm_members_on_link_up(n->members, ev->peer, ev->addr, ev->inc, now) !=
        HM_OK) {
        slot_unlink(s, true);
        drain(ctx, n);
        return;
    }
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&n->st_links_up, 1, memory_order_relaxed);
    drain(ctx, n); /* REPLACED (the old incarnation's end) comes first */
    tell_peer(ctx, s, &cl_peer_up_type, s->conn);
    pthread_mutex_lock(&n->lock);
    hm_presence_on_link_up(n->pres, ev->peer, now);
    cl_unlock(n);
    drain(ctx, n);
    publish(n);
}

static void on_link_down(hm_ctx *ctx, hm_node *n, cl_ev *ev)
{
    cl_slot *s = slot_find(n, ev->peer);

    if (!s || !s->link || s->link != ev->link)
        return; /* a link we had already replaced or closed */
    slot_unlink(s, false);
    hm_members_on_link_down(n->members, ev->peer, hm_ctx_now_ms(ctx));
    pthread_mutex_lock(&n->lock);
    hm_presence_on_link_down(n->pres, ev->peer);
    cl_unlock(n);
    tell_peer(ctx, s, &cl_peer_down_type, NULL);
    drain(ctx, n);
    publish(n);
}

static void on_ctl(hm_ctx *ctx, hm_node *n, cl_ev *ev)
{
    uint64_t now = hm_ctx_now_ms(ctx);
    hm_err err;

    if (hm_members_on_message(n->members, ev->peer, &ev->wire, now) ==
        HM_EINVAL) {
        pthread_mutex_lock(&n->lock);
        hm_members_on_heard(n->members, ev->peer, now);
        err = hm_presence_on_message(n->pres, ev->peer, &ev->wire, now);
        cl_unlock(n);
        if (err != HM_OK)
            HM_LOG_DEBUG("CL-CTL-IGNORED", "%s: %s from %s ignored", n->name,
                         hm_wire_type_name(ev->wire.type), ev->peer);
    }
    drain(ctx, n);
}

static void on_presence(hm_ctx *ctx, hm_node *n, cl_ev *ev, bool add)
{
    hm_err err;

    pthread_mutex_lock(&n->lock);
    err = add ? hm_presence_register(n->pres, ev->str, hm_ctx_now_ms(ctx))
              : hm_presence_unregister(n->pres, ev->str, hm_ctx_now_ms(ctx));
    cl_unlock(n);
    if (err != HM_OK)
        HM_LOG_WARN("CL-PRESENCE", "%s: %s %s: %s", n->name,
                    add ? "register" : "unregister", ev->str,
                    hm_err_str(err));
    drain(ctx, n);
}

static void on_leave(hm_ctx *ctx, hm_node *n, hm_msg *msg)
{
    hm_members_leave(n->members, hm_ctx_now_ms(ctx));
    drain(ctx, n); /* the LEAVE lines are queued on every link */
    n->leaving = true;
    for (size_t i = 0; i < n->slot_count; i++)
        if (n->slots[i].conn)
            hm_conn_close(n->slots[i].conn); /* flushes first */
    hm_ctx_reply(ctx, msg, hm_msg_create(&cl_leave_type,
                                         hm_calloc(1, sizeof(cl_ev)), 0));
}

static void on_tick(hm_ctx *ctx, hm_node *n)
{
    uint64_t now = hm_ctx_now_ms(ctx);

    hm_members_tick(n->members, now);
    pthread_mutex_lock(&n->lock);
    hm_presence_tick(n->pres, now);
    cl_unlock(n);
    drain(ctx, n);
    publish(n);
}

hm_err cl_node_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_node *n = state;
    const hm_type *t = hm_msg_type(msg);
    cl_ev *ev = hm_msg_payload(msg);

    if (t == &hm_type_tick)
        on_tick(ctx, n);
    else if (t == &cl_link_up_type)
        on_link_up(ctx, n, ev);
    else if (t == &cl_link_down_type)
        on_link_down(ctx, n, ev);
    else if (t == &cl_ctl_type)
        on_ctl(ctx, n, ev);
    else if (t == &cl_heard_type)
        hm_members_on_heard(n->members, ev->peer, hm_ctx_now_ms(ctx));
    else if (t == &cl_dial_failed_type) {
        dialing_done(n, ev->addr); /* or the address is never dialled again */
        hm_members_on_dial_failed(n->members, ev->peer[0] ? ev->peer : NULL,
                                  ev->flag, hm_ctx_now_ms(ctx));
        drain(ctx, n);
    } else if (t == &cl_register_type || t == &cl_unregister_type)
        on_presence(ctx, n, ev, t == &cl_register_type);
    else if (t == &cl_leave_type)
        on_leave(ctx, n, msg);
    return HM_OK;
}
