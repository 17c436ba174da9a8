/* apps/mqtt/session_adopt.c: a session adopting a state that another copy
 * of it sent (a handoff: a move, a relay's custody given back, a leave's
 * inbox), and which copy wins where two states of one session meet
 * (ADR 0105, 0290).
 *
 * Key decision (docs/adr/0290): every state carries a move generation
 * (session_state.h). A session's state has generation g; the handoff that
 * moves it carries g + 1, and the copies kept for custody (a relay's on a
 * join, a leaving session's) and the records saved to the store carry g.
 * So the moved state, and whatever it became on the new owner (its saves,
 * its next moves), is always newer than a custody copy of it, and a
 * custody copy given back after a death loses to it wherever the two meet,
 * whichever arrives first. A state this activation adopted (`adopted`:
 * from a handoff or a store record) is replaced by a newer one; an older
 * or equal one is dropped and logged, keeping only the connection it
 * names if this copy has none (the client is connected there). A state a
 * client created here (session present = 0: it was told the session was
 * new) is never replaced, as before. A copy restored from the store and
 * untouched since (`from_store`) also yields to a handoff of the same
 * generation (ADR 0265: the handoff comes from a live copy of the same
 * record). A record from the store (at start-up, or a dead member's after
 * a fail-over) is adopted here too, by the same rule. Everything here runs
 * on the session's receiver; `s`, the handoff and the record are
 * borrowed. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/session_impl.h"
#include "apps/mqtt/session_state.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <string.h>

bool mqtt_session_gen_newer(const mqtt_session *s, uint32_t gen, bool handoff)
{
    if (!s->attached_ever)
        return true; /* nothing held: any state is news */
    if (s->from_store)
        return handoff ? gen >= s->gen : gen > s->gen;
    return s->adopted && gen > s->gen;
}

/* Puts decoded state `st` (borrowed) into the session: its subscriptions
 * into the tree and the list, its messages into the outbox (offline: the
 * in-flight ones are resent when a connection is there) with the packet
 * id counter, its inbound QoS 2 ids in place of ours. */
static void load(mqtt_session *s, const mqtt_session_state *st)
{
    pthread_rwlock_wrlock(&s->b->tree_lock);
    for (size_t i = 0; i < st->sub_count; i++)
        if (mqtt_topic_tree_add(s->b->tree,
                                (const char *)st->subs[i].filter.ptr,
                                st->subs[i].filter.len, token(s),
                                st->subs[i].qos, NULL) == HM_OK)
            mqtt_session_remember_sub(s, &st->subs[i].filter,
                                      st->subs[i].qos);
    pthread_rwlock_unlock(&s->b->tree_lock);
    if (!s->out && st->inflight_count + st->queued_count > 0)
        s->out = mqtt_session_new_outbox(s->b, false);
    mqtt_qos2_box_destroy(s->in_qos2);
    s->in_qos2 = NULL;
    mqtt_session_state_load(st, s->out, &s->in_qos2);
}

/* A state that reached this node after its clean leave had collected its
 * sessions (a join and a leave at once) moves on at once, or it would
 * leave with the process (ADR 0260). */
static void leave_too(hm_ctx *ctx, mqtt_session *s)
{
    char owner[HM_NODE_NAME_MAX + 1];

    /* relaxed: see broker_impl.h. */
    if (!atomic_load_explicit(&s->b->leaving, memory_order_relaxed) ||
        !mqtt_session_cluster_owner(s->b, hm_addr_name(s->self), owner))
        return;
    HM_LOG_INFO("MQTT-LEAVE", "client %s: adopted while this node leaves; "
                "it moves on to %s", session_id(s), owner);
    mqtt_session_move_leave(ctx, s, owner);
}

/* The connection `h` names, if its client is still connected somewhere
 * (not on the node that left with it): this session carries on through
 * it, telling it where the session is now. What was in flight goes again
 * (DUP), since acknowledgements may have been lost in the move. Returns
 * whether it did. */
static bool carry_on(mqtt_session *s, const mqtt_handoff *h)
{
    hm_msg *moved;

    if (!h->conn || (h->from && mqtt_conn_lived_on(h->conn, h->from)) ||
        !(s->conn_addr = mqtt_session_intern_conn(s, h->conn)))
        return false;
    atomic_fetch_add_explicit(&s->b->connected, 1, memory_order_relaxed);
    /* This node may have joined so recently that its link to the
     * connection's node is not up yet: then what follows waits for it. */
    mqtt_session_await_link(s);
    /* What the old owner held for that connection (a full link) comes
     * first: a CONNACK before any resend (ADR 0296). */
    mqtt_session_send_owed(s, h->owed);
    moved = hm_msg_create(&mqtt_moved_type,
                          mqtt_ctl_create(hm_node_name(s->b->node), NULL), 0);
    if (mqtt_session_to_conn(s, moved) != HM_OK)
        hm_msg_destroy(moved);
    if (s->out)
        mqtt_outbox_go_online(s->out);
    mqtt_session_pump(s);
    return true;
}

/* An older (or equal) state than ours: dropped. Its connection, if ours
 * has none, is where the client is. */
static void drop_older(mqtt_session *s, const mqtt_handoff *h, uint32_t gen)
{
    if (!s->adopted && !s->from_store) {
        /* A client attached here before the state arrived: it was told
         * the session was new, and that is what it now is. */
        HM_LOG_WARN("MQTT-HANDOFF", "client %s: state arrived after a new "
                    "connection; dropped", session_id(s));
    } else {
        HM_LOG_WARN("MQTT-HANDOFF", "client %s: an older state (generation "
                    "%u, here %u) arrived; dropped", session_id(s),
                    (unsigned)gen, (unsigned)s->gen);
        if (!s->conn_addr && s->persistent)
            carry_on(s, h);
    }
    mqtt_session_mark_dirty(s); /* the store's copy is ours again */
}

/* Messages delivered live to a state that a newer one replaces: they
 * carry an identity (mqtt_pub.origin, seq) where a state's own loaded
 * messages have none. They are what came after that state (a relay's
 * copies of what it forwarded after its give-back, what was routed here
 * since), which the newer state may lack (a dead owner's record saved
 * before them): they are delivered again into it, possibly twice to the
 * client (QoS 1/2 allow that, as after any move). */
typedef struct live_msgs {
    hm_msg **v;
    size_t count, cap;
} live_msgs;

static void keep_live(void *arg, const mqtt_out_entry *e)
{
    live_msgs *l = arg;
    const mqtt_pub *p = e->msg;
    mqtt_pub *c;

    if (!p || p->seq == 0)
        return;
    /* A copy without the receipt: the original's unit stays with it. */
    c = mqtt_pub_create(p->topic, p->topic_len, p->payload, p->payload_len,
                        p->qos, p->retain);
    c->origin = p->origin;
    c->seq = p->seq;
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = hm_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->count++] = hm_msg_create(&mqtt_deliver_type, c, e->qos);
}

static void take_live(const mqtt_session *s, live_msgs *l)
{
    if (s->out)
        mqtt_outbox_foreach(s->out, keep_live, l);
}

/* Delivers them into the newer state (`ctx` NULL: drops them). */
static void give_live(hm_ctx *ctx, mqtt_session *s, live_msgs *l)
{
    if (l->count > 0 && ctx)
        HM_LOG_INFO("MQTT-HANDOFF", "client %s: %zu messages delivered to "
                    "the older state go to the newer one", session_id(s),
                    l->count);
    for (size_t i = 0; i < l->count; i++) {
        if (ctx)
            mqtt_session_handle(ctx, s, l->v[i]);
        hm_msg_destroy(l->v[i]);
    }
    hm_free(l->v);
    *l = (live_msgs){0};
}

/* A newer state replaces ours: what we hold goes. A connection attached
 * here stays (the client's latest: it carries on with the newer state,
 * its in-flight messages resent with DUP); one the newer state names
 * instead is told to close, as in a takeover. */
static void make_room(hm_ctx *ctx, mqtt_session *s, const mqtt_handoff *h,
                      uint32_t gen)
{
    HM_LOG_INFO("MQTT-HANDOFF", "client %s: the newer state (generation %u, "
                "here %u%s) replaces the one here", session_id(s),
                (unsigned)gen, (unsigned)s->gen,
                s->from_store ? ", restored from the store" : "");
    if (s->conn_addr && h->conn &&
        strcmp(h->conn, hm_addr_name(s->conn_addr)) != 0) {
        hm_addr *other = mqtt_session_intern_conn(s, h->conn);
        hm_msg *kick = hm_msg_create(&mqtt_kick_type, NULL, 0);

        if (!other || hm_ctx_send(ctx, other, kick) != HM_OK)
            hm_msg_destroy(kick);
        hm_addr_release(other);
    }
    mqtt_session_forget_state(s);
    s->from_store = s->adopted = false;
}

/* The first message of a session that moved here: adopt its state. */
void mqtt_session_on_handoff(hm_ctx *ctx, mqtt_session *s, mqtt_handoff *h)
{
    mqtt_session_state st;
    const char *why = NULL;
    live_msgs live = {0};

    /* A state for it reached its session here: whatever a relay here kept
     * of an earlier move away is older (ADR 0225). */
    mqtt_cluster_custody_set(s->b->cluster, session_id(s), false);
    if (mqtt_session_state_decode(h->state, h->state_len, &st, &why) ==
            HM_OK &&
        (st.client_id.len != strlen(session_id(s)) ||
         memcmp(st.client_id.ptr, session_id(s), st.client_id.len) != 0)) {
        mqtt_session_state_fini(&st);
        why = "another client id";
    }
    if (why) {
        HM_LOG_WARN("MQTT-HANDOFF", "client %s: bad session state: %s",
                    session_id(s), why);
        if (!s->attached_ever) /* nothing here to keep */
            mqtt_session_end(ctx, s);
        return;
    }
    if (!mqtt_session_gen_newer(s, st.gen, true)) {
        drop_older(s, h, st.gen);
        mqtt_session_state_fini(&st);
        return;
    }
    if (s->attached_ever) {
        take_live(s, &live);
        make_room(ctx, s, h, st.gen);
    }
    load(s, &st);
    if (s->subs) { /* back where it moved away from: its own entries now */
        char **f = hm_calloc(s->subs->count, sizeof *f);

        for (uint32_t i = 0; i < s->subs->count; i++)
            f[i] = s->subs->items[i].filter;
        pthread_rwlock_wrlock(&s->b->tree_lock);
        mqtt_session_move_unrelay(s->b, session_id(s), f, s->subs->count);
        pthread_rwlock_unlock(&s->b->tree_lock);
        hm_free(f);
    }
    s->gen = st.gen;
    s->adopted = true;
    mqtt_session_state_fini(&st);
    s->persistent = h->persistent;
    if (!s->conn_addr) { /* else the connection here and its user stay */
        s->attached_ever = h->present;
        s->ws = h->ws;
        hm_free(s->username);
        s->username = h->username;
        h->username = NULL;
    }
    HM_LOG_INFO("MQTT-HANDOFF", "client %s: session adopted (%zu "
                "subscriptions, generation %u)", session_id(s),
                (size_t)mqtt_session_sub_count(s), (unsigned)s->gen);
    /* A durable session is saved here from now on. */
    mqtt_session_mark_dirty(s);
    /* The old node forwards until every member routes here. */
    if (h->old && strcmp(h->old, hm_node_name(s->b->node)) != 0)
        mqtt_session_move_adopted(s, h->old);
    if (s->conn_addr) { /* kept (make_room): resends first */
        if (s->out)
            mqtt_outbox_go_online(s->out);
        mqtt_session_pump(s);
    } else if (!carry_on(s, h) && !s->persistent) {
        give_live(NULL, s, &live);
        mqtt_session_end(ctx, s);
        return;
    }
    give_live(ctx, s, &live);
    leave_too(ctx, s);
}

/* A stored session at start-up, or a dead member's after a fail-over
 * (saver.c): its subscriptions go into the tree, its messages into the
 * outbox (offline: the in-flight ones are resent when the client is
 * back), its inbound QoS 2 ids are kept. A session that is already live
 * here wins over the record (docs/adr/0160) unless the record is newer
 * (ADR 0290). */
void mqtt_session_on_restore(hm_ctx *ctx, mqtt_session *s, mqtt_restore *r)
{
    mqtt_session_state st;
    live_msgs live = {0};
    bool online;

    if (mqtt_session_state_decode(r->record, r->len, &st, NULL) != HM_OK)
        return; /* checked at load; from a link, checked here */
    if (st.client_id.len != strlen(session_id(s)) ||
        memcmp(st.client_id.ptr, session_id(s), st.client_id.len) != 0) {
        mqtt_session_state_fini(&st);
        return; /* not this session's: only a faulty peer sends that */
    }
    if (!mqtt_session_gen_newer(s, st.gen, false)) {
        HM_LOG_WARN("MQTT-FAILOVER", "client %s: live here already "
                    "(generation %u, stored %u); the stored session is "
                    "dropped", session_id(s), (unsigned)s->gen,
                    (unsigned)st.gen);
        mqtt_session_state_fini(&st);
        return;
    }
    if (s->attached_ever) { /* a copy adopted here, older (ADR 0290) */
        HM_LOG_INFO("MQTT-FAILOVER", "client %s: the newer state (generation "
                    "%u, here %u) replaces the one here", session_id(s),
                    (unsigned)st.gen, (unsigned)s->gen);
        take_live(s, &live);
        mqtt_session_forget_state(s); /* the connection stays */
    }
    online = s->conn_addr != NULL;
    s->persistent = s->attached_ever = true;
    s->gen = st.gen;
    s->adopted = true;
    /* until a client or a handoff brings newer */
    s->from_store = !online;
    mqtt_session_dur(s)->saved_ever = true;
    load(s, &st);
    if (r->inbound.count > 0 && !s->in_qos2)
        s->in_qos2 = hm_calloc(1, sizeof *s->in_qos2);
    for (size_t i = 0; i < r->inbound.count; i++)
        mqtt_qos2_ids_receive(s->in_qos2, r->inbound.ids[i]);
    mqtt_session_state_fini(&st);
    if (online) { /* resends (DUP) first */
        if (s->out)
            mqtt_outbox_go_online(s->out);
        mqtt_session_pump(s);
    }
    give_live(ctx, s, &live);
    if (r->adopt) /* saved under this node now: the next fail-over finds it */
        mqtt_session_adopted(s);
}
