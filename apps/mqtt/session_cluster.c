/* apps/mqtt/session_cluster.c: where sessions and connections live in a
 * cluster, and what a member's death does to them (ADR 0105).
 *
 * A session ("mqtt/session/<client id>") is a placed name: it lives on the
 * member rendezvous hashing picks, wherever its client connects, so a client
 * id has one session cluster-wide. A connection receiver is named after its
 * node ("mqtt/conn/<node>/<id>") and that name is homed there: a session on
 * another node reaches it without presence, so there is no window in which
 * the name is unknown. When a member dies, its connections and sessions are
 * gone and nothing there will say so: the "mqtt/members/<node>" receiver tells
 * every local connection and session (mqtt.node_gone), so that a session
 * whose connection died lets it go, and a connection whose session died
 * closes (its client reconnects and learns from session present = 0 that
 * the state is gone). A session that moves because a member joined carries
 * its state as a session_state.h record, saved and loaded here. A node that
 * leaves cleanly hands each of its sessions to the member that owns it
 * without the leaver; that member's "mqtt/members/<node>" (homed, like a
 * connection) holds the state until the leaver is gone from its view, so
 * that the session's name then resolves here, and delivers it. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/session_impl.h"
#include "apps/mqtt/session_state.h"

#include "cluster/node.h"
#include "cluster/placement.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MEMBERS_PREFIX "mqtt/members/"
/* The longest a clean leave waits for its sessions' moves. */
#define LEAVE_WAIT_MS 6000
/* Members listed for a leave: far more than a cluster has. */
#define MAX_MEMBERS 256

bool mqtt_members_name(char *out, size_t cap, const char *node)
{
    int n = snprintf(out, cap, MEMBERS_PREFIX "%s", node);

    return n > 0 && (size_t)n < cap;
}

bool mqtt_session_is_placed(void *b, const char *name)
{
    (void)b;
    return strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) ==
           0;
}

bool mqtt_inbox_name(char *out, size_t cap, const char *node,
                     const char *client_id)
{
    int n = snprintf(out, cap, MQTT_INBOX_PREFIX "%s/%s", node, client_id);

    return n > 0 && (size_t)n < cap;
}

bool mqtt_conn_home(void *b, const char *name, char *node_out)
{
    size_t plen = strlen(MEMBERS_PREFIX);
    size_t ilen = strlen(MQTT_INBOX_PREFIX);
    const char *slash;

    (void)b;
    if (strncmp(name, MQTT_INBOX_PREFIX, ilen) == 0) {
        slash = strchr(name + ilen, '/');
        if (!slash || slash == name + ilen ||
            (size_t)(slash - name - ilen) > HM_NODE_NAME_MAX)
            return false;
        memcpy(node_out, name + ilen, (size_t)(slash - name - ilen));
        node_out[slash - name - ilen] = '\0';
        return true;
    }
    if (strncmp(name, MEMBERS_PREFIX, plen) == 0) {
        if (strlen(name + plen) == 0 || strlen(name + plen) > HM_NODE_NAME_MAX)
            return false;
        strcpy(node_out, name + plen);
        return true;
    }
    return mqtt_conn_name_node(name, node_out, HM_NODE_NAME_MAX + 1);
}

/* Whether `node` (borrowed) is a live member as `n` sees it now. */
static bool is_live(hm_node *n, const char *node)
{
    hm_node_member *ms = hm_calloc(MAX_MEMBERS, sizeof *ms);
    size_t count = hm_node_members(n, ms, MAX_MEMBERS);
    bool live = false;

    for (size_t i = 0; i < count && i < MAX_MEMBERS && !live; i++)
        live = strcmp(ms[i].info.name, node) == 0 &&
               (ms[i].info.state == HM_MEMBER_ALIVE ||
                ms[i].info.state == HM_MEMBER_SUSPECT);
    hm_free(ms);
    return live;
}

bool mqtt_node_is_live(mqtt_broker *b, const char *node)
{
    return is_live(b->node, node);
}

/* The connections and sessions active here (hm_runtime_foreach_active holds
 * a directory lock: only copying happens there). */
typedef struct names {
    char **v;
    size_t count, cap;
    bool conns_only;
} names;

static void collect(void *arg, const char *name)
{
    names *l = arg;

    if (strncmp(name, MQTT_CONN_PREFIX, strlen(MQTT_CONN_PREFIX)) != 0 &&
        (l->conns_only ||
         (strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) != 0 &&
          strncmp(name, MQTT_INBOX_PREFIX, strlen(MQTT_INBOX_PREFIX)) != 0 &&
          strncmp(name, MQTT_FWD_PREFIX, strlen(MQTT_FWD_PREFIX)) != 0)))
        return;
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = hm_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->count++] = hm_strdup(name);
}

bool mqtt_session_reachable(mqtt_broker *b, const char *name)
{
    char where[HM_NODE_NAME_MAX + 1];
    hm_node_member *ms;
    size_t count;
    bool ok = false;

    if (hm_node_lookup(b->node, name, where) != HM_OK ||
        strcmp(where, hm_node_name(b->node)) == 0)
        return true;
    ms = hm_calloc(MAX_MEMBERS, sizeof *ms);
    count = hm_node_members(b->node, ms, MAX_MEMBERS);
    for (size_t i = 0; i < count && i < MAX_MEMBERS && !ok; i++)
        ok = strcmp(ms[i].info.name, where) == 0 &&
             ms[i].info.state == HM_MEMBER_ALIVE;
    hm_free(ms);
    return ok;
}

/* The "mqtt/members/<node>" receiver: handoffs from leaving members, held
 * until the leaver is gone. */
typedef struct members {
    mqtt_broker *b;
    hm_msg **held;
    size_t count, cap;
    char **dead; /* members we declared dead (owned names) */
    size_t dead_count, dead_cap;
} members;

/* Local only: member `payload` (an owned string) is up (joined, or back
 * after a partition). */
static const hm_type member_up_type = {.name = "mqtt.member_up",
                                       .free = hm_free};

/* Delivers a held handoff to its session, here or wherever it is placed
 * now. Takes `m`. */
static void deliver_handoff(hm_ctx *ctx, hm_msg *m)
{
    const mqtt_handoff *h = hm_msg_payload(m);
    char name[HM_ADDR_MAX_LEN + 1];

    if (snprintf(name, sizeof name, MQTT_SESSION_PREFIX "%s", h->client_id) >=
            (int)sizeof name ||
        hm_ctx_send_name(ctx, name, m) != HM_OK)
        hm_msg_destroy(m);
}

static void on_handoff_in(hm_ctx *ctx, members *ms, hm_msg *msg)
{
    const mqtt_handoff *h = hm_msg_payload(msg);

    if (!h || !h->client_id || !h->from)
        return;
    if (!is_live(ms->b->node, h->from)) { /* already gone from our view */
        deliver_handoff(ctx, hm_msg_move(msg));
        return;
    }
    if (ms->count == ms->cap) {
        ms->cap = ms->cap ? 2 * ms->cap : 16;
        ms->held = hm_realloc(ms->held, ms->cap * sizeof *ms->held);
    }
    ms->held[ms->count++] = hm_msg_move(msg);
}

/* Tells every local connection (and session, unless `conns_only`) that
 * node `gone` is gone, as mqtt.node_gone. Returns how many. */
static size_t tell_gone(hm_ctx *ctx, const char *gone, bool conns_only)
{
    hm_runtime *rt = hm_ctx_runtime(ctx);
    names l = {.conns_only = conns_only};
    size_t told;
    hm_addr *a;

    hm_runtime_foreach_active(rt, collect, &l);
    told = l.count;
    for (size_t i = 0; i < l.count; i++) {
        hm_msg *m = hm_msg_create(&mqtt_node_gone_type, hm_strdup(gone), 0);

        /* An address interned from an active name: the send never
         * activates anything new (one that ended meanwhile is activated
         * and ends at once: a session with no client, or a refused
         * connection name). */
        if (hm_runtime_intern(rt, l.v[i], &a) != HM_OK) {
            hm_msg_destroy(m);
        } else {
            if (hm_ctx_send(ctx, a, m) != HM_OK)
                hm_msg_destroy(m);
            hm_addr_release(a);
        }
        hm_free(l.v[i]);
    }
    hm_free(l.v);
    return told;
}

/* Node `gone` left or died: what it handed over goes to the sessions, and
 * every local connection and session hears of it. */
static void on_gone(hm_ctx *ctx, members *ms, const char *gone)
{
    size_t kept = 0, given = 0, told;

    for (size_t i = 0; i < ms->count; i++) {
        const mqtt_handoff *h = hm_msg_payload(ms->held[i]);

        if (strcmp(h->from, gone) == 0) {
            deliver_handoff(ctx, ms->held[i]);
            given++;
        } else {
            ms->held[kept++] = ms->held[i];
        }
    }
    ms->count = kept;
    told = tell_gone(ctx, gone, false);
    HM_LOG_INFO("MQTT-NODE-GONE", "member %s is gone: %zu sessions handed "
                "over; told %zu local connections and sessions", gone, given,
                told);
}

static size_t find_dead(const members *ms, const char *name)
{
    size_t i = 0;

    while (i < ms->dead_count && strcmp(ms->dead[i], name) != 0)
        i++;
    return i;
}

/* A member we declared dead is heard again (a healed partition: it never
 * saw itself die). Our sessions let its connections go meanwhile, but it
 * still holds them: tell its "mqtt/members/<node>", which closes them
 * (their clients reconnect and learn, session present = 0, what they
 * have). */
static void on_up(hm_ctx *ctx, members *ms, const char *up)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    size_t i = find_dead(ms, up);
    hm_msg *m;

    if (i == ms->dead_count)
        return;
    hm_free(ms->dead[i]);
    ms->dead[i] = ms->dead[--ms->dead_count];
    if (!mqtt_members_name(name, sizeof name, up))
        return;
    m = hm_msg_create(&mqtt_lost_type,
                      mqtt_ctl_create(hm_node_name(ms->b->node), NULL), 0);
    if (hm_ctx_send_name(ctx, name, m) != HM_OK)
        hm_msg_destroy(m);
}

static void remember_dead(members *ms, const char *name)
{
    if (find_dead(ms, name) < ms->dead_count)
        return;
    if (ms->dead_count == ms->dead_cap) {
        ms->dead_cap = ms->dead_cap ? 2 * ms->dead_cap : 8;
        ms->dead = hm_realloc(ms->dead, ms->dead_cap * sizeof *ms->dead);
    }
    ms->dead[ms->dead_count++] = hm_strdup(name);
}

static hm_err members_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    members *ms = state;

    if (hm_msg_type(msg) == &mqtt_handoff_type)
        on_handoff_in(ctx, ms, msg);
    else if (hm_msg_type(msg) == &mqtt_node_gone_type && hm_msg_payload(msg)) {
        if (hm_msg_arg(msg) == HM_MEMBER_EV_DEAD)
            remember_dead(ms, hm_msg_payload(msg));
        on_gone(ctx, ms, hm_msg_payload(msg));
    } else if (hm_msg_type(msg) == &member_up_type && hm_msg_payload(msg)) {
        on_up(ctx, ms, hm_msg_payload(msg));
    } else if (hm_msg_type(msg) == &mqtt_lost_type && hm_msg_payload(msg)) {
        const mqtt_ctl *c = hm_msg_payload(msg);

        if (c->name) {
            HM_LOG_INFO("MQTT-NODE-LOST", "member %s had us dead: its "
                        "sessions let our connections go; told %zu local "
                        "connections", c->name, tell_gone(ctx, c->name, true));
        }
    }
    return HM_OK;
}

static void members_deactivate(hm_ctx *ctx, void *state,
                               hm_deactivate_reason why)
{
    members *ms = state;

    (void)ctx;
    (void)why;
    for (size_t i = 0; i < ms->count; i++)
        hm_msg_destroy(ms->held[i]);
    hm_free(ms->held);
    for (size_t i = 0; i < ms->dead_count; i++)
        hm_free(ms->dead[i]);
    hm_free(ms->dead);
    hm_free(ms);
}

static const hm_hooks members_hooks = {.deactivate = members_deactivate};

hm_err mqtt_session_cluster_start(mqtt_broker *b)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    members *ms;
    hm_err err;

    if ((err = mqtt_session_msg_register(b->rt)) != HM_OK)
        return err;
    if (!mqtt_members_name(name, sizeof name, hm_node_name(b->node)))
        return HM_EINVAL;
    ms = hm_calloc(1, sizeof *ms);
    ms->b = b;
    err = hm_runtime_spawn(b->rt, name,
                           &(hm_receiver){.handler = members_handle,
                                          .state = ms,
                                          .hooks = &members_hooks,
                                          .pinned = true},
                           &b->members);
    if (err != HM_OK)
        hm_free(ms);
    return err;
}

/* The live members but us, as placement wants them. */
typedef struct others {
    hm_node_member *ms;
    const char **names;
    size_t count;
} others;

static void others_get(hm_node *n, others *o)
{
    size_t count;

    o->ms = hm_calloc(MAX_MEMBERS, sizeof *o->ms);
    o->names = hm_calloc(MAX_MEMBERS, sizeof *o->names);
    o->count = 0;
    count = hm_node_members(n, o->ms, MAX_MEMBERS);
    for (size_t i = 0; i < count && i < MAX_MEMBERS; i++)
        if (o->ms[i].info.state == HM_MEMBER_ALIVE ||
            o->ms[i].info.state == HM_MEMBER_SUSPECT)
            o->names[o->count++] = o->ms[i].info.name;
}

static void collect_sessions(void *arg, const char *name)
{
    if (strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) == 0)
        collect(arg, name);
}

void mqtt_session_cluster_leave(mqtt_broker *b)
{
    others o;
    names l = {0};
    size_t sent = 0;

    if (!b->node || !b->rt)
        return;
    /* relaxed: see broker_impl.h. Before the collection: a session not
     * collected sees it when its state comes. */
    atomic_store_explicit(&b->leaving, true, memory_order_relaxed);
    others_get(b->node, &o);
    if (o.count > 0)
        hm_runtime_foreach_active(b->rt, collect_sessions, &l);
    for (size_t i = 0; i < l.count; i++) {
        hm_placement_set set = {.names = o.names, .count = o.count};
        size_t owner;
        hm_msg *m;

        if (hm_placement_owner(l.v[i], &set, &owner) == HM_OK) {
            m = hm_msg_create(&mqtt_leave_type, hm_strdup(o.names[owner]), 0);
            if (hm_runtime_send_name(b->rt, l.v[i], m) != HM_OK)
                hm_msg_destroy(m);
            else
                sent++;
        }
        hm_free(l.v[i]);
    }
    hm_free(l.v);
    hm_free(o.names);
    hm_free(o.ms);
    if (sent > 0) {
        HM_LOG_INFO("MQTT-LEAVE", "handing %zu sessions to the other "
                    "members", sent);
        /* The handoffs reach the links before the node says goodbye. */
        hm_runtime_wait_idle(b->rt, 1000);
    }
    /* What still reaches us is forwarded until every member routes to
     * the new owners (cluster_move.c), within a bound. */
    for (int i = 0; i < LEAVE_WAIT_MS / 5 &&
                    mqtt_cluster_moves_open(b->cluster) > 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    hm_runtime_wait_idle(b->rt, 1000); /* the dones onto the links */
}

void mqtt_session_cluster_event(mqtt_broker *b, const char *name,
                                hm_member_event event)
{
    hm_msg *m;

    if (b->members && event == HM_MEMBER_EV_UP) {
        m = hm_msg_create(&member_up_type, hm_strdup(name), 0);
        if (hm_runtime_send(b->rt, b->members, m) != HM_OK)
            hm_msg_destroy(m);
        return;
    }
    if (!b->members || (event != HM_MEMBER_EV_DEAD &&
                        event != HM_MEMBER_EV_LEFT &&
                        event != HM_MEMBER_EV_REPLACED))
        return;
    m = hm_msg_create(&mqtt_node_gone_type, hm_strdup(name), (uint64_t)event);
    if (hm_runtime_send(b->rt, b->members, m) != HM_OK)
        hm_msg_destroy(m);
    if (event == HM_MEMBER_EV_DEAD) /* its sessions, from the store */
        mqtt_saver_failover(b, name);
}

/* ------------------------------------------------ state for a handoff */

typedef struct state_msgs {
    mqtt_state_msg *inflight, *queued;
    size_t inflight_count, queued_count;
} state_msgs;

static void collect_msg(void *arg, const mqtt_out_entry *e)
{
    state_msgs *sm = arg;
    const mqtt_pub *pub = e->msg;
    mqtt_state_msg m = {.qos = e->qos,
                        .stage = e->stage,
                        .packet_id = e->packet_id,
                        .dup = e->stage != 0 && e->sent};

    if (pub) {
        m.retain = pub->retain;
        m.topic = (mqtt_bytes){(const uint8_t *)pub->topic, pub->topic_len};
        m.payload = (mqtt_bytes){pub->payload, pub->payload_len};
    }
    if (e->stage == 0)
        sm->queued[sm->queued_count++] = m;
    else
        sm->inflight[sm->inflight_count++] = m;
}

hm_err mqtt_session_state_save(const char *client_id, uint32_t gen,
                               const mqtt_state_sub *subs, size_t count,
                               const mqtt_outbox *out, const mqtt_qos2_ids *in,
                               uint8_t **data_out, size_t *len_out)
{
    size_t n = out ? mqtt_outbox_inflight_count(out) +
                         mqtt_outbox_queued_count(out)
                   : 0;
    state_msgs sm = {.inflight = hm_calloc(n + 1, sizeof *sm.inflight),
                     .queued = hm_calloc(n + 1, sizeof *sm.queued)};
    hm_err err;

    if (out) /* NULL: nothing waits or is in flight (ADR 0150) */
        mqtt_outbox_foreach(out, collect_msg, &sm);
    err = mqtt_session_state_encode(
        &(mqtt_session_state){
            .client_id = {(const uint8_t *)client_id, strlen(client_id)},
            .gen = gen,
            .next_packet_id = out ? mqtt_outbox_next_id(out) : 1,
            .subs = (mqtt_state_sub *)subs,
            .sub_count = count,
            .inflight = sm.inflight,
            .inflight_count = sm.inflight_count,
            .queued = sm.queued,
            .queued_count = sm.queued_count,
            .in_qos2 = in ? in->ids : NULL,
            .in_qos2_count = in ? in->count : 0},
        data_out, len_out);
    hm_free(sm.inflight);
    hm_free(sm.queued);
    return err;
}

static void load_msg(mqtt_outbox *out, const mqtt_state_msg *m)
{
    mqtt_pub *pub = NULL;
    mqtt_out_entry e = {.qos = m->qos,
                        .stage = m->stage,
                        .packet_id = m->packet_id,
                        .sent = m->dup};

    if (m->stage != MQTT_STAGE_AWAIT_PUBCOMP)
        pub = mqtt_pub_create(m->topic.ptr, m->topic.len, m->payload.ptr,
                              m->payload.len, m->qos, m->retain);
    e.msg = pub;
    if (mqtt_outbox_restore(out, &e) != HM_OK)
        mqtt_pub_release(pub);
}

void mqtt_session_state_load(const mqtt_session_state *st, mqtt_outbox *out,
                             mqtt_qos2_ids **in_out)
{
    for (size_t i = 0; out && i < st->inflight_count; i++)
        load_msg(out, &st->inflight[i]);
    for (size_t i = 0; out && i < st->queued_count; i++)
        load_msg(out, &st->queued[i]);
    if (out)
        mqtt_outbox_set_next_id(out, st->next_packet_id);
    *in_out = NULL;
    if (st->in_qos2_count == 0)
        return;
    *in_out = hm_calloc(1, sizeof **in_out);
    for (size_t i = 0; i < st->in_qos2_count; i++)
        mqtt_qos2_ids_receive(*in_out, st->in_qos2[i]);
}

/* ------------------------------------- a session: member deaths, handoff */

bool mqtt_conn_lived_on(const char *name, const char *node)
{
    char home[MQTT_MSG_NAME_MAX + 1];

    return mqtt_conn_name_node(name, home, sizeof home) &&
           strcmp(home, node) == 0;
}

/* The same for `a` (may be NULL). */
static bool lived_on(const hm_addr *a, const char *node)
{
    return a && mqtt_conn_lived_on(hm_addr_name(a), node);
}

/* Node `node` died: a connection there will never detach. */
void mqtt_session_on_node_gone(hm_ctx *ctx, mqtt_session *s, const char *node)
{
    mqtt_session_move_on_gone(ctx, s, node);
    if (lived_on(s->old_conn_addr, node))
        mqtt_session_finish_takeover(ctx, s, NULL); /* its QoS 2 ids are lost */
    if (lived_on(s->conn_addr, node)) {
        HM_LOG_INFO("MQTT-CONN-LOST", "client %s: its connection's node %s "
                    "died", session_id(s), node);
        mqtt_session_let_go(s);
        if (!s->persistent)
            mqtt_session_end(ctx, s);
    }
}

/* The state to hand over, encoded (session_state.h) with move generation
 * `gen` (ADR 0290: s->gen + 1 for the move itself, s->gen for a custody
 * copy, which the moved state must beat wherever the two meet). Returns
 * owned, or NULL if it cannot be encoded (logged). */
static mqtt_handoff *make_handoff(mqtt_session *s, uint32_t gen)
{
    mqtt_handoff *h = hm_calloc(1, sizeof *h);
    hm_err err = mqtt_session_encode(s, gen, &h->state, &h->state_len);

    if (err != HM_OK) {
        HM_LOG_WARN("MQTT-HANDOFF", "client %s: cannot encode the session: "
                    "%s", session_id(s), hm_err_str(err));
        hm_free(h);
        return NULL;
    }
    h->conn = s->conn_addr ? hm_strdup(hm_addr_name(s->conn_addr)) : NULL;
    h->username = s->username ? hm_strdup(s->username) : NULL;
    h->ws = s->ws;
    h->persistent = s->persistent;
    h->present = s->attached_ever;
    h->owed = mqtt_session_stall_owed(s); /* ADR 0296 */
    return h;
}

/* Membership moved this session to another node: send the state there
 * (to our own address, which now routes to the new owner). Or this node is
 * leaving: send it to `owner`'s inbox ("mqtt/inbox/<owner>/<client id>",
 * session_inbox.c), which holds it until we are gone from its view. */
/* The handoff message: for our own address (`owner` NULL) or for a
 * leave's inbox. NULL if the state cannot be encoded (logged). */
static hm_msg *handoff_msg(mqtt_session *s, bool leave, uint32_t gen)
{
    mqtt_handoff *h = make_handoff(s, gen);

    if (!h)
        return NULL;
    if (leave) {
        h->client_id = hm_strdup(session_id(s));
        h->from = hm_strdup(hm_node_name(s->b->node));
    }
    /* This node forwards what still reaches it (session_move.c). */
    h->old = hm_strdup(hm_node_name(s->b->node));
    return hm_msg_create(&mqtt_handoff_type, h, 0);
}

hm_msg *mqtt_session_leave_custody(mqtt_session *s)
{
    return handoff_msg(s, true, s->gen);
}

bool mqtt_session_cluster_owner(mqtt_broker *b, const char *name,
                                char *out)
{
    others o;
    size_t owner;
    bool ok;

    others_get(b->node, &o);
    ok = o.count > 0 &&
         hm_placement_owner(name,
                            &(hm_placement_set){.names = o.names,
                                                .count = o.count},
                            &owner) == HM_OK;
    if (ok)
        snprintf(out, HM_NODE_NAME_MAX + 1, "%s", o.names[owner]);
    hm_free(o.names);
    hm_free(o.ms);
    return ok;
}

void mqtt_session_hand_over(mqtt_session *s, const char *owner)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    hm_msg *m = handoff_msg(s, owner != NULL, s->gen + 1);
    hm_err err;

    if (!m)
        return;
    if (owner) /* a leave: this session stays on as a forwarder */
        mqtt_session_drop_pending(s);
    HM_LOG_INFO("MQTT-HANDOFF", "client %s: session moves to %s "
                "(%zu subscriptions)", session_id(s),
                owner ? owner : "its new owner",
                (size_t)mqtt_session_sub_count(s));
    if (!owner)
        err = hm_runtime_send(s->b->rt, s->self, m);
    else if (mqtt_inbox_name(name, sizeof name, owner, session_id(s)))
        err = hm_runtime_send_name(s->b->rt, name, m);
    else
        err = HM_EINVAL;
    if (err != HM_OK)
        hm_msg_destroy(m);
}

void mqtt_session_hand_over_custody(mqtt_session *s, hm_addr *relay,
                                    const char *to)
{
    mqtt_handoff *h = make_handoff(s, s->gen);
    hm_msg *m;

    if (!h)
        return;
    h->from = hm_strdup(to); /* the new owner; no `old`: no move back */
    m = hm_msg_create(&mqtt_handoff_type, h, 0);
    if (hm_runtime_send(s->b->rt, relay, m) != HM_OK)
        hm_msg_destroy(m);
}
