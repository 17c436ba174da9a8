/* apps/mqtt/session_relay.c: "mqtt/fwd/<client id>", the relay on the node
 * a session moved away from (ADR 0165), and its custody of the session's
 * state while the move is not over (ADR 0225).
 *
 * When placement moves a session from this node O to node N (a member
 * joined), the session's subscriptions stay in O's tree under the relay's
 * address, a token distinct from the session's own, so that a new
 * activation of the session here never shares a token with them. The relay
 * passes what they match to the session's name (which routes to N) until
 * the fanout's "mqtt.mv.done", which it passes on too. Its sends and the
 * session's handoff share one queue on this node: the session at N gets
 * its state first.
 *
 * Custody: before any entry routes to it, the relay gets a copy of the
 * handed-over state (an mqtt.handoff whose `from` names N) and keeps it,
 * with a copy of every delivery it passes on, until the move is over (the
 * done), or until a newer state reached the session on this node (the
 * registry entry gone, mqtt_cluster_custody_has()). If N dies before that
 * (dead, or replaced by a new incarnation), the state as it left and
 * everything forwarded since go back to the session's name, which now
 * resolves to the owner without N (this node after a join), in order,
 * before anything else the relay passes on: a move loses nothing that went
 * through here when its new owner dies. If N leaves cleanly first, the
 * custody goes to the inbox of the member the session's name resolves to
 * now, behind the newer state N's leave sent there if N had adopted it
 * (the inbox ignores the older one), or as the state if N never had it (a
 * join and a leave at once, ADR 0260). Ownership:
 * the relay owns the custody message and the copies; the registry entry
 * is the node's (cluster_move.c). A delivery passed on to
 * another node gives up its receipt unit (a PUBACK means routed, as for
 * any cross-node copy); the copies carry none. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/session_impl.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

/* Members listed on the stack to find the new owner. */
#define RELAY_FEW_MEMBERS 16

typedef struct relay {
    mqtt_broker *b;
    hm_addr *to;     /* owned: the session's name */
    const char *cid; /* in our own name */
    /* Custody: the state as it left (an mqtt.handoff, `from` = the new
     * owner), the new owner's incarnation then, and copies of what was
     * passed on since, in order. NULL: none (or given back). */
    hm_msg *custody;
    uint64_t inc;
    hm_msg **kept;
    size_t kept_count, kept_cap;
    bool used; /* anything but a death notice came */
} relay;

typedef enum { OWNER_LIVE, OWNER_LEFT, OWNER_LOST } owner_fate;

/* What became of member `node` (incarnation `inc`, 0: any) by our view. */
static owner_fate fate(hm_node *n, const char *node, uint64_t inc,
                       uint64_t *inc_out)
{
    hm_node_member few[RELAY_FEW_MEMBERS], *ms = few;
    size_t count = hm_node_members(n, few, RELAY_FEW_MEMBERS);
    owner_fate f = OWNER_LOST;

    if (count <= RELAY_FEW_MEMBERS)
        ms = few;

    if (count > RELAY_FEW_MEMBERS) { /* a big cluster: all of them */
        size_t cap = count, total;

        ms = hm_calloc(cap, sizeof *ms);
        total = hm_node_members(n, ms, cap);
        count = total < cap ? total : cap;
    }
    for (size_t i = 0; i < count; i++) {
        const hm_member_info *m = &ms[i].info;

        if (strcmp(m->name, node) != 0)
            continue;
        if (inc_out)
            *inc_out = m->inc;
        if (m->state == HM_MEMBER_LEFT)
            f = OWNER_LEFT;
        else if ((m->state == HM_MEMBER_ALIVE ||
                  m->state == HM_MEMBER_SUSPECT) &&
                 (!inc || m->inc == inc))
            f = OWNER_LIVE;
        break;
    }
    if (ms != few)
        hm_free(ms);
    return f;
}

/* Whether the session's name resolves to this node now. */
static bool here(relay *r, char *where)
{
    return hm_node_lookup(r->b->node, hm_addr_name(r->to), where) == HM_OK &&
           strcmp(where, hm_node_name(r->b->node)) == 0;
}

static void drop_custody(relay *r)
{
    hm_msg_destroy(r->custody);
    r->custody = NULL;
    for (size_t i = 0; i < r->kept_count; i++)
        hm_msg_destroy(r->kept[i]);
    r->kept_count = 0;
}

/* The new owner died with the state: it goes back to the session's name,
 * then what was passed on since, in order. The registry entry stays until
 * the session adopts it (a fail-over here meanwhile keeps off). */
static void give_back(hm_ctx *ctx, relay *r, const char *owner)
{
    size_t n = r->kept_count;
    char where[HM_NODE_NAME_MAX + 1];

    HM_LOG_WARN("MQTT-MOVE", "client %s: its new owner %s is gone before "
                "the move was over; the state kept here and %zu messages "
                "forwarded since go back to its session", r->cid, owner, n);
    /* Adopted elsewhere (or not at all), no fail-over here waits for it. */
    if (!here(r, where))
        mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
    if (hm_ctx_send(ctx, r->to, r->custody) != HM_OK) {
        hm_msg_destroy(r->custody);
        mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
    }
    r->custody = NULL;
    for (size_t i = 0; i < n; i++)
        if (hm_ctx_send(ctx, r->to, r->kept[i]) != HM_OK)
            hm_msg_destroy(r->kept[i]);
    r->kept_count = 0;
}

/* The new owner left cleanly (ADR 0260). If it had adopted the state,
 * its leave handed the newer one to the inbox of the owner without it,
 * ahead of its goodbye: the kept state goes to that same inbox, behind
 * it, and the session there drops it (a newer state came first). If the
 * state reached it only after its leave had begun (a join and a leave at
 * once), nothing carried it on: the inbox adopts the kept one and, its old
 * node being gone, releases it at once. */
static void to_inbox(hm_ctx *ctx, relay *r, const char *owner)
{
    char where[HM_NODE_NAME_MAX + 1], name[MQTT_MSG_NAME_MAX + 1];
    mqtt_handoff *h = hm_msg_payload(r->custody);
    size_t n = r->kept_count;

    if (hm_node_lookup(r->b->node, hm_addr_name(r->to), where) != HM_OK ||
        !mqtt_inbox_name(name, sizeof name, where, r->cid)) {
        mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
        drop_custody(r);
        return;
    }
    HM_LOG_INFO("MQTT-MOVE", "client %s: its new owner %s left before the "
                "move was over; the state kept here and %zu messages "
                "forwarded since go to %s's inbox", r->cid, owner, n, where);
    if (strcmp(where, hm_node_name(r->b->node)) != 0)
        mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
    if (!h->client_id) /* an inbox wants to know whose it is */
        h->client_id = hm_strdup(r->cid);
    if (hm_ctx_send_name(ctx, name, r->custody) != HM_OK) {
        hm_msg_destroy(r->custody);
        mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
    }
    r->custody = NULL;
    for (size_t i = 0; i < n; i++)
        if (hm_ctx_send_name(ctx, name, r->kept[i]) != HM_OK)
            hm_msg_destroy(r->kept[i]);
    r->kept_count = 0;
}

/* Keeps or gives back the custody by what became of the new owner. */
static void check(hm_ctx *ctx, relay *r)
{
    const mqtt_handoff *h;

    if (!r->custody)
        return;
    h = hm_msg_payload(r->custody);
    if (!mqtt_cluster_custody_has(r->b->cluster, r->cid)) {
        drop_custody(r); /* a newer state reached the session here */
        return;
    }
    switch (fate(r->b->node, h->from, r->inc, NULL)) {
    case OWNER_LIVE:
        return;
    case OWNER_LEFT:
        to_inbox(ctx, r, h->from);
        return;
    case OWNER_LOST:
        give_back(ctx, r, h->from);
        return;
    }
}

static void take_custody(relay *r, hm_msg *msg)
{
    const mqtt_handoff *h = hm_msg_payload(msg);

    drop_custody(r);
    if (!h || !h->from)
        return;
    r->custody = hm_msg_move(msg);
    r->inc = 0;
    if (fate(r->b->node, h->from, 0, &r->inc) != OWNER_LIVE)
        r->inc = 0;
    mqtt_cluster_custody_set(r->b->cluster, r->cid, true);
}

/* Passes `msg` (taken) on to the session's name. */
static void pass(hm_ctx *ctx, relay *r, hm_msg *msg)
{
    char where[HM_NODE_NAME_MAX + 1];
    bool deliver = hm_msg_type(msg) == &mqtt_deliver_type;
    mqtt_pub *pub = deliver ? hm_msg_payload(msg) : NULL;

    if (deliver && r->custody) {
        if (r->kept_count == r->kept_cap) {
            r->kept_cap = r->kept_cap ? 2 * r->kept_cap : 32;
            r->kept = hm_realloc(r->kept, r->kept_cap * sizeof *r->kept);
        }
        r->kept[r->kept_count++] = mqtt_session_copy_delivery(msg);
    }
    if (pub && pub->receipt && !here(r, where)) {
        /* To another node: routed is all a PUBACK promises there. The
         * pub is shared: only this message's unit goes. */
        mqtt_receipt_release(pub->receipt);
        if (hm_ctx_send(ctx, r->to, msg) != HM_OK)
            hm_msg_destroy(msg);
        return;
    }
    if (hm_ctx_send(ctx, r->to, msg) != HM_OK)
        mqtt_session_msg_drop(msg);
}

static hm_err relay_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    relay *r = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &mqtt_node_gone_type && !r->used) {
        /* Told of a death after it ended: nothing here to keep. */
        hm_ctx_deactivate(ctx);
        return HM_OK;
    }
    r->used = true;
    if (t == &mqtt_handoff_type) {
        take_custody(r, msg);
        return HM_OK;
    }
    check(ctx, r);
    if (t == &mqtt_mv_done_type) {
        /* Every member routes to the new owner, which had the state: the
         * move is over. */
        if (r->custody)
            mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
        drop_custody(r);
    }
    if (t->to_json)
        pass(ctx, r, hm_msg_move(msg));
    if (t == &mqtt_mv_done_type)
        hm_ctx_deactivate(ctx);
    return HM_OK;
}

static hm_err relay_activate(hm_ctx *ctx, void *state)
{
    relay *r = state;
    const char *name = hm_addr_name(hm_ctx_self(ctx));
    char to[MQTT_MSG_NAME_MAX + 1];

    r->cid = name + strlen(MQTT_FWD_PREFIX);
    if (snprintf(to, sizeof to, MQTT_SESSION_PREFIX "%s", r->cid) >=
        (int)sizeof to)
        return HM_EINVAL;
    return hm_runtime_intern(r->b->rt, to, &r->to);
}

static void relay_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    relay *r = state;

    (void)ctx;
    if (r->custody && why != HM_DEACTIVATE_CLOSE)
        mqtt_cluster_custody_set(r->b->cluster, r->cid, false);
    drop_custody(r);
    hm_free(r->kept);
    hm_addr_release(r->to);
    hm_free(r);
}

static const hm_hooks relay_hooks = {.activate = relay_activate,
                                     .deactivate = relay_deactivate};

void mqtt_relay_make(mqtt_broker *b, hm_receiver *out)
{
    relay *r = hm_calloc(1, sizeof *r);

    r->b = b;
    *out = (hm_receiver){.handler = relay_handle,
                         .state = r,
                         .hooks = &relay_hooks,
                         .pinned = true};
}
