/* apps/mqtt/session_move.c: a session's side of a move between nodes
 * (ADR 0165; the old node's side is cluster_move.c).
 *
 * While a session moves from node O to node N, a QoS 1/2 message for it
 * can reach it by two ways: O still has its subscriptions and forwards what
 * they match, and N routes what reaches N once the publishers know N's
 * filters. Nothing may be lost, nothing delivered twice, and one
 * publisher's messages must stay in order. So the session at N delivers at
 * once what O forwards (everything published before the publishers knew
 * N's filters comes that way), holds what its own node routes to it, and
 * when O says it forwards no more ("mqtt.mv.done"), delivers the held
 * messages but those it already had from O, recognised by their identity
 * (mqtt_pub.origin, seq).
 *
 * Three shapes:
 * - A member joined and placement moved the session (O's view and N's
 *   agree): O's cluster deactivates it, its deactivate hook hands the
 *   state to its own name (now N) and leaves its subscriptions in O's tree
 *   under its address, which now reaches N. Messages that were behind the
 *   deactivation in O's mailbox reach N before the state: the session
 *   keeps them ("early") until the state comes.
 * - O leaves: the session at O hands its state to "mqtt/inbox/<N>/<client
 *   id>" (homed on N) and stays as a forwarder: everything it receives goes
 *   there, in order, until done. The inbox (below) puts the subscriptions
 *   in N's tree under its own address, holds, and when O is gone from N's
 *   view (so that the session's name resolves to N) gives the session its
 *   state, the forwarded messages, then the held ones. The forwarder
 *   keeps custody (ADR 0260): a copy of the state it handed over and of
 *   every delivery it forwarded since, until O is gone; if N goes first
 *   (its inbox, holding the state, went with it), they go to the inbox of
 *   the owner without N, the fanout's move record is retargeted there,
 *   and the move goes on. A session without subscriptions moves the same
 *   way (a move record with no filters still ends with a done).
 * - Neither: no move state (s->mv is NULL) and nothing here runs. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/session_impl.h"
#include "apps/mqtt/session_state.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

/* After this long without the state (early) or the done (held), the
 * session goes on without it. More than cluster_move.c's bound. */
#define MOVE_HOLD_MS 7000u

static const hm_type move_timer_type = {.name = "mqtt.mv.timer"};

/* Messages kept in order, and the identities of those delivered from the
 * old node. */
typedef struct mv_list {
    hm_msg **v;
    size_t count, cap;
} mv_list;

typedef struct mv_ids {
    uint64_t *v; /* pairs: origin, seq */
    size_t count, cap;
} mv_ids;

struct session_move {
    bool adopted;  /* the state came; waiting for the old node's done */
    uint32_t gen;  /* numbers the timer */
    mv_list early; /* before the state */
    mv_list held;  /* routed here before the done */
    mv_ids ids;    /* delivered from the old node */
    hm_addr *fwd;  /* leaving: the new owner's inbox */
    char *old;     /* adopted: the old node (owned) */
    /* Leaving, custody (ADR 0260): the new owner (owned), the state as it
     * left (an mqtt.handoff for an inbox) and copies of the deliveries
     * forwarded since, in order, until this node is gone (the new owner's
     * inbox releases the state only then). `over`: the fanout's done came,
     * the session stays only as the state's custodian. */
    char *to;
    hm_msg *custody;
    mv_list kept;
    bool over;
};

static void list_add(mv_list *l, hm_msg *m)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = hm_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->count++] = m;
}

/* A delivery's receipt unit goes with it (saver.c). */
void mqtt_session_msg_drop(hm_msg *m)
{
    if (m && hm_msg_type(m) == &mqtt_deliver_type && hm_msg_payload(m))
        mqtt_receipt_release(((mqtt_pub *)hm_msg_payload(m))->receipt);
    hm_msg_destroy(m);
}

static void send_or_drop(hm_ctx *ctx, hm_addr *to, hm_msg *m)
{
    if (hm_ctx_send(ctx, to, m) != HM_OK)
        mqtt_session_msg_drop(m);
}

hm_msg *mqtt_session_copy_delivery(const hm_msg *m)
{
    const mqtt_pub *p = hm_msg_payload(m);
    mqtt_pub *c = mqtt_pub_create(p->topic, p->topic_len, p->payload,
                                  p->payload_len, p->qos, p->retain);

    c->origin = p->origin;
    c->seq = p->seq;
    return hm_msg_create(&mqtt_deliver_type, c, hm_msg_arg(m));
}

static void list_fini(mv_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        mqtt_session_msg_drop(l->v[i]);
    hm_free(l->v);
    *l = (mv_list){0};
}

static void ids_add(mv_ids *ids, const mqtt_pub *pub)
{
    if (!pub || pub->seq == 0)
        return;
    if (ids->count + 2 > ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 64;
        ids->v = hm_realloc(ids->v, ids->cap * sizeof *ids->v);
    }
    ids->v[ids->count++] = pub->origin;
    ids->v[ids->count++] = pub->seq;
}

static bool ids_have(const mv_ids *ids, const mqtt_pub *pub)
{
    if (!pub || pub->seq == 0)
        return false;
    for (size_t i = 0; i < ids->count; i += 2)
        if (ids->v[i] == pub->origin && ids->v[i + 1] == pub->seq)
            return true;
    return false;
}

/* Whether `msg` came the old node's way: from another node (O's fanout or
 * connections, through the session's address), or from a session name
 * (the forwarder at a leaving node) or an inbox. */
static bool forwarded(const mqtt_broker *b, const hm_msg *msg)
{
    const hm_addr *from = hm_msg_from(msg);
    const char *name, *self = hm_node_name(b->node);
    char node[MQTT_MSG_NAME_MAX + 1];
    size_t fl = strlen(MQTT_FANOUT_PREFIX);

    if (!from)
        return false;
    name = hm_addr_name(from);
    if (strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) == 0 ||
        strncmp(name, MQTT_FWD_PREFIX, strlen(MQTT_FWD_PREFIX)) == 0 ||
        strncmp(name, MQTT_INBOX_PREFIX, strlen(MQTT_INBOX_PREFIX)) == 0)
        return true;
    if (strncmp(name, MQTT_FANOUT_PREFIX, fl) == 0)
        return strcmp(name + fl, self) != 0;
    if (mqtt_conn_name_node(name, node, sizeof node))
        return strcmp(node, self) != 0;
    return false;
}

static bool from_prefix(const hm_msg *msg, const char *prefix)
{
    const hm_addr *from = hm_msg_from(msg);

    return from && strncmp(hm_addr_name(from), prefix, strlen(prefix)) == 0;
}

static void arm(mqtt_session *s)
{
    hm_msg *t = hm_msg_create(&move_timer_type, NULL, ++s->mv->gen);

    if (hm_runtime_send_after(s->b->rt, s->self, t, MOVE_HOLD_MS, NULL) !=
        HM_OK)
        hm_msg_destroy(t);
}

static void move_free(session_move *mv)
{
    if (!mv)
        return;
    list_fini(&mv->early);
    list_fini(&mv->held);
    list_fini(&mv->kept);
    hm_free(mv->ids.v);
    hm_addr_release(mv->fwd);
    hm_free(mv->old);
    hm_free(mv->to);
    hm_msg_destroy(mv->custody);
    hm_free(mv);
}

bool mqtt_session_move_handed(const mqtt_session *s)
{
    return s->mv && s->mv->fwd;
}

void mqtt_session_move_fini(mqtt_session *s)
{
    move_free(s->mv);
    s->mv = NULL;
}

/* Runs `l`'s messages through the handler, in order, with no move state,
 * skipping those delivered from the old node already. */
static void replay(hm_ctx *ctx, mqtt_session *s, mv_list *l, const mv_ids *ids)
{
    for (size_t i = 0; i < l->count; i++) {
        hm_msg *m = l->v[i];

        if (ids && hm_msg_type(m) == &mqtt_deliver_type &&
            ids_have(ids, hm_msg_payload(m))) {
            mqtt_session_msg_drop(m);
            continue;
        }
        mqtt_session_handle(ctx, s, m);
        hm_msg_destroy(m);
    }
    l->count = 0;
}

/* The old node forwards no more (or we waited long enough). */
static void finish_held(hm_ctx *ctx, mqtt_session *s)
{
    session_move *mv = s->mv;

    s->mv = NULL;
    replay(ctx, s, &mv->held, &mv->ids);
    move_free(mv);
}

void mqtt_session_move_on_gone(hm_ctx *ctx, mqtt_session *s,
                               const char *node)
{
    if (!s->mv || !s->mv->adopted || s->mv->fwd || !s->mv->old ||
        strcmp(s->mv->old, node) != 0)
        return;
    /* The old node forwards no more: what it had not forwarded is lost
     * with it (docs/mqtt.md); what we hold goes out now, not after the
     * bound. */
    HM_LOG_WARN("MQTT-MOVE", "client %s: the old node %s is gone during "
                "the move; delivering what was held", session_id(s), node);
    finish_held(ctx, s);
}

bool mqtt_session_move_early(hm_ctx *ctx, mqtt_session *s, hm_msg *msg)
{
    const hm_type *t = hm_msg_type(msg);

    (void)ctx;
    if (!s->b->node || (t != &mqtt_deliver_type && t != &mqtt_ack_type &&
                        t != &mqtt_forward_type && t != &mqtt_detach_type))
        return false;
    if (!s->mv) { /* a state may follow (a move): keep these for it */
        s->mv = hm_calloc(1, sizeof *s->mv);
        arm(s);
    }
    list_add(&s->mv->early, hm_msg_move(msg));
    return true;
}

void mqtt_session_move_adopted(mqtt_session *s, const char *old)
{
    if (!s->mv)
        s->mv = hm_calloc(1, sizeof *s->mv);
    s->mv->adopted = true;
    hm_free(s->mv->old);
    s->mv->old = hm_strdup(old);
    arm(s);
    /* After our filters (the tree's observer told the fanout first). */
    mqtt_cluster_move_sync(s->b->cluster, session_id(s), old);
}

void mqtt_session_move_replay_early(hm_ctx *ctx, mqtt_session *s)
{
    mv_list early;

    if (!s->mv || s->mv->early.count == 0)
        return;
    early = s->mv->early;
    s->mv->early = (mv_list){0};
    if (!s->mv->adopted)
        mqtt_session_move_fini(s); /* no move after all */
    for (size_t i = 0; i < early.count; i++) {
        /* Through the handler: they came from the old node. */
        mqtt_session_handle(ctx, s, early.v[i]);
        hm_msg_destroy(early.v[i]);
    }
    hm_free(early.v);
}

/* The leaving session passes `m` (taken) to the new owner's inbox,
 * keeping a copy of a delivery while it has custody. */
static void forward(hm_ctx *ctx, session_move *mv, hm_msg *m)
{
    if (mv->custody && hm_msg_type(m) == &mqtt_deliver_type)
        list_add(&mv->kept, mqtt_session_copy_delivery(m));
    send_or_drop(ctx, mv->fwd, m);
}

/* The new owner of a leaving session is gone before this node was (its
 * inbox, holding the state until then, went with it): the kept state and
 * the copies go to the inbox of the member that owns the session now, and
 * the move goes on there, or, if it was over, the done follows them
 * (ADR 0260). */
static void retarget(hm_ctx *ctx, mqtt_session *s)
{
    session_move *mv = s->mv;
    char owner[HM_NODE_NAME_MAX + 1], name[MQTT_MSG_NAME_MAX + 1];
    hm_addr *inbox;

    if (!mqtt_session_cluster_owner(s->b, hm_addr_name(s->self), owner) ||
        !mqtt_inbox_name(name, sizeof name, owner, session_id(s)) ||
        hm_runtime_intern(s->b->rt, name, &inbox) != HM_OK) {
        HM_LOG_WARN("MQTT-MOVE", "client %s: its new owner %s is gone and "
                    "no member is left to take it: the session is lost",
                    session_id(s), mv->to);
        hm_msg_destroy(mv->custody);
        mv->custody = NULL;
        return;
    }
    HM_LOG_WARN("MQTT-MOVE", "client %s: its new owner %s is gone while "
                "this node leaves; the state kept here and %zu messages "
                "forwarded since go to %s", session_id(s), mv->to,
                mv->kept.count, owner);
    /* Before the state: its sync finds the move retargeted. */
    if (!mv->over)
        mqtt_cluster_move_retarget(s->b->cluster, session_id(s), mv->to,
                                   owner);
    send_or_drop(ctx, inbox,
                 hm_msg_create(&mqtt_handoff_type,
                               mqtt_handoff_clone(hm_msg_payload(mv->custody)),
                               0));
    for (size_t i = 0; i < mv->kept.count; i++)
        send_or_drop(ctx, inbox, mqtt_session_copy_delivery(mv->kept.v[i]));
    if (mv->over) /* nothing is forwarded from here any more */
        send_or_drop(ctx, inbox, hm_msg_create(&mqtt_mv_done_type, NULL, 0));
    hm_addr_release(mv->fwd);
    mv->fwd = inbox;
    hm_free(mv->to);
    mv->to = hm_strdup(owner);
}

/* A leaving node's session still waiting for an earlier move's done:
 * what it held goes to the inbox (after what that move forwarded). */
static void forward_held(hm_ctx *ctx, mqtt_session *s)
{
    session_move *mv = s->mv;

    for (size_t i = 0; i < mv->held.count; i++) {
        hm_msg *m = mv->held.v[i];

        if (ids_have(&mv->ids, hm_msg_payload(m)))
            mqtt_session_msg_drop(m);
        else
            forward(ctx, mv, m);
    }
    mv->held.count = 0;
    mv->adopted = false;
}

/* The leaving node's session, forwarding everything to the inbox; if an
 * earlier move to here is not done yet, what this node routes to it is
 * still held until that done, as in mqtt_session_move_intercept(). */
static bool forward_all(hm_ctx *ctx, mqtt_session *s, hm_msg *msg)
{
    session_move *mv = s->mv;
    const hm_type *t = hm_msg_type(msg);
    hm_msg *m;

    if (t == &mqtt_node_gone_type) {
        if (mv->custody && mv->to && hm_msg_payload(msg) &&
            strcmp(hm_msg_payload(msg), mv->to) == 0)
            retarget(ctx, s);
    } else if (t == &mqtt_mv_done_type &&
               from_prefix(msg, MQTT_FANOUT_PREFIX)) {
        /* Ours (this node's fanout): nothing more comes here. */
        forward_held(ctx, s);
        m = hm_msg_create(&mqtt_mv_done_type, NULL, 0);
        send_or_drop(ctx, mv->fwd, m);
        if (mv->custody) /* the state's custodian until we are gone */
            mv->over = true;
        else
            mqtt_session_end(ctx, s);
    } else if ((t == &mqtt_mv_done_type && from_prefix(msg, MQTT_FWD_PREFIX)) ||
               (t == &move_timer_type && hm_msg_arg(msg) == mv->gen)) {
        if (mv->adopted) /* the earlier move is over */
            forward_held(ctx, s);
    } else if (t == &mqtt_deliver_type && mv->adopted &&
               !forwarded(s->b, msg)) {
        list_add(&mv->held, hm_msg_move(msg));
    } else if (t->to_json && t != &mqtt_mv_done_type) {
        /* A handoff too: another copy's state follows ours to the inbox,
         * and the session there keeps the newer (ADR 0290). */
        if (t == &mqtt_deliver_type && mv->adopted)
            ids_add(&mv->ids, hm_msg_payload(msg));
        forward(ctx, mv, hm_msg_move(msg));
    }
    return true; /* local ones (saves, leaves) have no use now */
}

bool mqtt_session_move_intercept(hm_ctx *ctx, mqtt_session *s, hm_msg *msg)
{
    session_move *mv = s->mv;
    const hm_type *t = hm_msg_type(msg);

    if (mv->fwd)
        return forward_all(ctx, s, msg);
    if (t == &move_timer_type) {
        if (hm_msg_arg(msg) != mv->gen)
            return true;
        if (mv->adopted) {
            HM_LOG_WARN("MQTT-MOVE",
                        "client %s: no word from the old node; "
                        "going on",
                        session_id(s));
            finish_held(ctx, s);
        } else { /* no state came: they were strays after all */
            mqtt_session_move_replay_early(ctx, s);
        }
        return true;
    }
    if (!mv->adopted) {
        if (t == &mqtt_attach_type) /* a new client: nothing to adopt */
            mqtt_session_move_fini(s);
        return t != &mqtt_handoff_type && t != &mqtt_attach_type &&
               mqtt_session_move_early(ctx, s, msg);
    }
    if (t == &mqtt_mv_done_type) {
        if (from_prefix(msg, MQTT_FWD_PREFIX)) /* the old node's relay */
            finish_held(ctx, s);
        return true;
    }
    if (t != &mqtt_deliver_type)
        return false;
    if (forwarded(s->b, msg)) {
        ids_add(&mv->ids, hm_msg_payload(msg));
        return false;
    }
    list_add(&mv->held, hm_msg_move(msg));
    return true;
}

bool mqtt_session_move_away(mqtt_session *s, const char *to, bool relay)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    hm_addr *token;
    mqtt_move *mv;

    uint32_t count = s->subs ? s->subs->count : 0;

    if (!s->b->cluster)
        return false;
    if (!relay) {
        token = hm_addr_ref(s->self);
    } else if (snprintf(name, sizeof name, MQTT_FWD_PREFIX "%s",
                        session_id(s)) >= (int)sizeof name ||
               hm_runtime_intern(s->b->rt, name, &token) != HM_OK) {
        return false;
    }
    if (relay) { /* the relay's entries first: the filters never lapse */
        /* Custody (ADR 0225): the relay keeps the state, ahead of
         * anything the entries route to it, until the move is over. */
        mqtt_session_hand_over_custody(s, token, to);
        pthread_rwlock_wrlock(&s->b->tree_lock);
        for (uint32_t i = 0; i < count; i++)
            mqtt_topic_tree_add(
                s->b->tree, s->subs->items[i].filter, s->subs->items[i].len,
                (uint64_t)(uintptr_t)token, s->subs->items[i].qos, NULL);
        pthread_rwlock_unlock(&s->b->tree_lock);
    }
    mv = hm_calloc(1, sizeof *mv);
    mv->client_id = hm_strdup(session_id(s));
    mv->to = hm_strdup(to);
    mv->token = token;
    /* No subscriptions: nothing is forwarded, but the move still ends
     * with a done, so the new owner stops holding (and custody, ours or
     * the relay's, lasts until then). */
    mv->count = count;
    mv->filters = hm_calloc(mv->count + 1, sizeof *mv->filters);
    for (size_t i = 0; i < mv->count; i++)
        mv->filters[i] = hm_strdup(s->subs->items[i].filter);
    mqtt_cluster_move_begin(s->b->cluster, mv);
    return true;
}

void mqtt_session_move_leave(hm_ctx *ctx, mqtt_session *s, const char *owner)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    hm_addr *inbox;

    if (!s->persistent && !s->conn_addr) {
        mqtt_session_end(ctx, s);
        return;
    }
    mqtt_session_hand_over(s, owner);
    if (!mqtt_inbox_name(name, sizeof name, owner, session_id(s)) ||
        hm_runtime_intern(s->b->rt, name, &inbox) != HM_OK) {
        mqtt_session_end(ctx, s);
        return;
    }
    /* From now on a forwarder: the client is the new owner's. What an
     * earlier move to here still holds stays held (forward_all()). */
    if (!s->mv)
        s->mv = hm_calloc(1, sizeof *s->mv);
    s->mv->fwd = inbox;
    /* Custody (ADR 0260): if the owner dies before the move is over, the
     * state goes to the next one. Before let_go: it names the client's
     * connection. */
    s->mv->to = hm_strdup(owner);
    s->mv->custody = mqtt_session_leave_custody(s);
    /* What came before the state (adopted while leaving) follows it. */
    for (size_t i = 0; i < s->mv->early.count; i++)
        forward(ctx, s->mv, s->mv->early.v[i]);
    s->mv->early.count = 0;
    mqtt_session_move_away(s, owner, false);
    mqtt_session_let_go(s);
}

/* ------------------------------------------------------------ the relay */

void mqtt_session_move_unrelay(mqtt_broker *b, const char *client_id,
                               char *const *filters, size_t count)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    hm_addr *relay;

    if (!b->node ||
        snprintf(name, sizeof name, MQTT_FWD_PREFIX "%s", client_id) >=
            (int)sizeof name ||
        hm_runtime_intern(b->rt, name, &relay) != HM_OK)
        return;
    for (size_t i = 0; i < count; i++)
        mqtt_topic_tree_remove(b->tree, filters[i], strlen(filters[i]),
                               (uint64_t)(uintptr_t)relay);
    hm_addr_release(relay);
}

/* ------------------------------------------------------------ the inbox */

/* "mqtt/inbox/<N>/<client id>" on N, for a session whose node O leaves:
 * its state first, then what O's session forwards, in order. Its
 * subscriptions go into N's tree at once under the inbox's address (so the
 * publishers learn N's filters while O still forwards), what N routes is
 * held, and when O is gone from N's view the session's name resolves here:
 * the entries pass to the session's address under the tree's write lock,
 * and the session gets its state, the forwarded messages and the held ones
 * but the copies it already had. */
typedef struct inbox {
    mqtt_broker *b;
    hm_addr *self;
    char *cid, *old; /* owned, once the state came */
    hm_msg *handoff;
    mv_list fwd, held;
    mv_ids ids;
    char **filters; /* owned, with their QoS */
    uint8_t *qos;
    size_t count;
    bool done; /* the old node forwards no more */
    bool gone; /* it is gone from our view */
} inbox;

/* How long the inbox waits for the done once the old node is gone. */
#define INBOX_GRACE_MS 2000u
static const hm_type inbox_timer_type = {.name = "mqtt.inbox.timer"};

static void inbox_adopt(inbox *in, hm_msg *msg)
{
    const mqtt_handoff *h = hm_msg_payload(msg);
    const char *old = h->old ? h->old : h->from;
    mqtt_session_state st;

    if (!h->client_id || !old ||
        mqtt_session_state_decode(h->state, h->state_len, &st, NULL) != HM_OK)
        return;
    in->cid = hm_strdup(h->client_id);
    in->old = hm_strdup(old);
    in->handoff = hm_msg_move(msg);
    in->filters = hm_calloc(st.sub_count + 1, sizeof *in->filters);
    in->qos = hm_calloc(st.sub_count + 1, 1);
    pthread_rwlock_wrlock(&in->b->tree_lock);
    for (size_t i = 0; i < st.sub_count; i++) {
        const mqtt_bytes *f = &st.subs[i].filter;

        if (mqtt_topic_tree_add(in->b->tree, (const char *)f->ptr, f->len,
                                (uint64_t)(uintptr_t)in->self, st.subs[i].qos,
                                NULL) != HM_OK)
            continue;
        in->filters[in->count] = hm_strndup((const char *)f->ptr, f->len);
        in->qos[in->count++] = st.subs[i].qos;
    }
    pthread_rwlock_unlock(&in->b->tree_lock);
    mqtt_session_state_fini(&st);
    HM_LOG_INFO("MQTT-MOVE", "client %s: state held here until %s is gone "
                "(%zu subscriptions)", in->cid, in->old, in->count);
    mqtt_cluster_move_sync(in->b->cluster, in->cid, in->old);
}

/* The old node is gone: the session's name resolves here now. */
static void inbox_release(hm_ctx *ctx, inbox *in)
{
    char name[MQTT_MSG_NAME_MAX + 1];
    mqtt_handoff *h = hm_msg_payload(in->handoff);
    hm_addr *sa;

    if (snprintf(name, sizeof name, MQTT_SESSION_PREFIX "%s", in->cid) >=
            (int)sizeof name ||
        hm_runtime_intern(in->b->rt, name, &sa) != HM_OK)
        return;
    hm_free(h->old); /* the move is over for the session */
    h->old = NULL;
    pthread_rwlock_wrlock(&in->b->tree_lock);
    for (size_t i = 0; i < in->count; i++) { /* add first: no gap */
        mqtt_topic_tree_add(in->b->tree, in->filters[i], strlen(in->filters[i]),
                            (uint64_t)(uintptr_t)sa, in->qos[i], NULL);
        mqtt_topic_tree_remove(in->b->tree, in->filters[i],
                               strlen(in->filters[i]),
                               (uint64_t)(uintptr_t)in->self);
    }
    /* It moved away from here before and comes back: the session's own
     * entries replace what forwarded to it. */
    mqtt_session_move_unrelay(in->b, in->cid, in->filters, in->count);
    /* Under the lock: ahead of anything the tree routes to the session. */
    send_or_drop(ctx, sa, in->handoff);
    in->handoff = NULL;
    for (size_t i = 0; i < in->fwd.count; i++)
        send_or_drop(ctx, sa, in->fwd.v[i]);
    in->fwd.count = 0;
    for (size_t i = 0; i < in->held.count; i++) {
        hm_msg *m = in->held.v[i];

        if (ids_have(&in->ids, hm_msg_payload(m)))
            mqtt_session_msg_drop(m);
        else
            send_or_drop(ctx, sa, m);
    }
    in->held.count = 0;
    pthread_rwlock_unlock(&in->b->tree_lock);
    HM_LOG_INFO("MQTT-MOVE", "client %s: handed to its session here", in->cid);
    for (size_t i = 0; i < in->count; i++)
        hm_free(in->filters[i]);
    in->count = 0;
    hm_addr_release(sa);
    hm_ctx_deactivate(ctx);
}

/* A message after the release (or with no state before it): straight
 * to the session's name, late rather than lost. */
static void inbox_pass(hm_ctx *ctx, hm_msg *msg)
{
    const char *name = hm_addr_name(hm_ctx_self(ctx));
    const char *cid = strchr(name + strlen(MQTT_INBOX_PREFIX), '/');
    char to[MQTT_MSG_NAME_MAX + 1];
    hm_msg *m = hm_msg_move(msg);

    if (!cid || !hm_msg_type(m)->to_json ||
        snprintf(to, sizeof to, MQTT_SESSION_PREFIX "%s", cid + 1) >=
            (int)sizeof to ||
        hm_ctx_send_name(ctx, to, m) != HM_OK)
        mqtt_session_msg_drop(m);
}

static hm_err inbox_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    inbox *in = state;
    const hm_type *t = hm_msg_type(msg);

    if (!in->handoff) {
        /* A handoff naming its client is a leave's state; one without
         * (another copy's, forwarded by the leaver) goes on as it is. */
        if (t == &mqtt_handoff_type && !in->cid &&
            ((const mqtt_handoff *)hm_msg_payload(msg))->client_id) {
            inbox_adopt(in, msg);
            /* A relay's custody after the new owner left (ADR 0260): that
             * node is gone already and forwards nothing. */
            if (in->handoff && !mqtt_node_is_live(in->b, in->old)) {
                in->gone = in->done = true;
                inbox_release(ctx, in);
            }
        } else if (t != &inbox_timer_type && t != &mqtt_node_gone_type &&
                   t != &mqtt_mv_done_type) {
            inbox_pass(ctx, msg);
        }
        return HM_OK;
    }
    if (from_prefix(msg, MQTT_FWD_PREFIX))
        return HM_OK; /* a relay's custody, older than the state held */
    if (t == &mqtt_node_gone_type || t == &mqtt_mv_done_type ||
        t == &inbox_timer_type) {
        /* Released when the old node is gone from our view (the session's
         * name resolves here) and said it forwards no more, or a while
         * after it went without saying so (it died). */
        if (t == &mqtt_mv_done_type)
            in->done = true;
        else if (t == &inbox_timer_type)
            in->done = in->gone;
        else if (hm_msg_payload(msg) &&
                 strcmp(hm_msg_payload(msg), in->old) == 0 && !in->gone) {
            hm_msg *tm = hm_msg_create(&inbox_timer_type, NULL, 0);

            in->gone = true;
            if (hm_runtime_send_after(in->b->rt, in->self, tm, INBOX_GRACE_MS,
                                      NULL) != HM_OK)
                hm_msg_destroy(tm);
        }
        if (in->done && in->gone)
            inbox_release(ctx, in);
    } else if (t == &mqtt_deliver_type && !forwarded(in->b, msg)) {
        list_add(&in->held, hm_msg_move(msg));
    } else if (t->to_json) {
        if (t == &mqtt_deliver_type)
            ids_add(&in->ids, hm_msg_payload(msg));
        list_add(&in->fwd, hm_msg_move(msg));
    }
    return HM_OK;
}

static hm_err inbox_activate(hm_ctx *ctx, void *state)
{
    inbox *in = state;

    in->self = hm_addr_ref(hm_ctx_self(ctx));
    return HM_OK;
}

static void inbox_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    inbox *in = state;

    (void)ctx;
    (void)why;
    pthread_rwlock_wrlock(&in->b->tree_lock);
    for (size_t i = 0; i < in->count; i++)
        mqtt_topic_tree_remove(in->b->tree, in->filters[i],
                               strlen(in->filters[i]),
                               (uint64_t)(uintptr_t)in->self);
    pthread_rwlock_unlock(&in->b->tree_lock);
    for (size_t i = 0; i < in->count; i++)
        hm_free(in->filters[i]);
    hm_free(in->filters);
    hm_free(in->qos);
    mqtt_session_msg_drop(in->handoff);
    list_fini(&in->fwd);
    list_fini(&in->held);
    hm_free(in->ids.v);
    hm_free(in->cid);
    hm_free(in->old);
    hm_addr_release(in->self);
    hm_free(in);
}

static const hm_hooks inbox_hooks = {.activate = inbox_activate,
                                     .deactivate = inbox_deactivate};

void mqtt_inbox_make(mqtt_broker *b, hm_receiver *out)
{
    inbox *in = hm_calloc(1, sizeof *in);

    in->b = b;
    *out = (hm_receiver){.handler = inbox_handle,
                         .state = in,
                         .hooks = &inbox_hooks,
                         .pinned = true};
}
