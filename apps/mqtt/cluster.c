/* apps/mqtt/cluster.c: the broker's cluster mode (cluster.h): the node's
 * life cycle, cross-node publishes, and the fanout receiver
 * ("mqtt/fanout/<node name>"); the replication of filters and retained
 * messages it drives is cluster_sync.c's.
 *
 * Filters. The subscription tree calls an observer when a filter gains its
 * first subscriber or loses its last (topic.h); the observer, under the
 * tree's write lock, sends the change to the fanout receiver, so its
 * mailbox sees the changes in the tree's order. The fanout keeps this
 * node's distinct filters with a version (one per change) and sends each
 * change as a delta {inc, ver} to every peer it has greeted; a peer applies
 * a delta only if it is the next version, and otherwise asks for a
 * snapshot. Snapshots go to a member when it comes up; a digest every
 * tick (500 ms) repairs anything lost (a delta dropped while a link was down).
 * Remote filters live in an mqtt_interest (interest.h), read by publishers
 * under `lock` and changed by the fanout under its write side.
 *
 * Publishes. A publisher routes locally as before, then matches the topic
 * against the remote filters and sends one "mqtt.cl.pub" per interested
 * node to that node's fanout receiver, which routes it into its own tree
 * and never on (the one-hop rule). One publisher, one proxy, one link, one
 * fanout: per publisher and topic, order holds.
 *
 * Retained messages. Every retained set or clear carries a stamp (wall
 * clock microseconds, strictly increasing per node, and the node's name);
 * every node keeps the stamp of each retained topic, clears included
 * (tombstones), and applies a write only if its stamp is newer: last
 * writer wins, the same way everywhere, so nodes converge. Writes go to
 * every live member; snapshots on a member's arrival, and a digest (XOR of
 * entry hashes) that triggers a snapshot when two nodes stay different.
 *
 * Topics starting with '$' are node-local: $SYS figures are per node, and
 * neither forwarded nor replicated. */
#include "apps/mqtt/cluster_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define STOP_WAIT_MS 1000u
#define MAX_SYS_MEMBERS 256u

/* Local only: a membership event. */
typedef struct cl_member {
    char name[HM_NODE_NAME_MAX + 1];
    uint64_t inc;
    hm_member_event event;
} cl_member;

static void cl_pub_free(void *p)
{
    cl_pub *cp = p;

    if (!cp)
        return;
    mqtt_pub_release(cp->pub);
    hm_free(cp);
}

/* ------------------------------------------------------- mqtt.cl.pub */

static json_t *cl_pub_to_json(const void *payload)
{
    const cl_pub *cp = payload;
    json_t *topic = json_stringn(cp->pub->topic, cp->pub->topic_len);

    if (!topic)
        return NULL;
    return json_pack(
        "{s:s, s:o, s:o, s:i, s:b, s:b, s:I, s:I}", "o", cp->origin, "t", topic,
        "p", mqtt_cluster_b64_json(cp->pub->payload, cp->pub->payload_len), "q",
        cp->pub->qos, "d", cp->deliver, "r", cp->retain, "ts",
        (json_int_t)cp->ts, "n", (json_int_t)(cp->pub->seq & INT64_MAX));
}

static hm_err cl_pub_from_json(const json_t *j, void **out)
{
    const char *origin, *b64;
    json_t *topic;
    size_t b64_len;
    int qos, deliver, retain;
    json_int_t ts, seq = 0;
    uint8_t *data;
    size_t data_len;
    cl_pub *cp;

    if (json_unpack((json_t *)j, "{s:s, s:o, s:s%, s:i, s:b, s:b, s:I, s?I}",
                    "o", &origin, "t", &topic, "p", &b64, &b64_len, "q", &qos,
                    "d", &deliver, "r", &retain, "ts", &ts, "n", &seq) != 0 ||
        !json_is_string(topic) || !hm_wire_name_is_valid(origin) || qos < 0 ||
        qos > 2 || ts < 0 || seq < 0 ||
        !mqtt_topic_name_is_valid(json_string_value(topic),
                                  json_string_length(topic)) ||
        mqtt_cluster_b64_decode(b64, b64_len, &data, &data_len) != HM_OK)
        return HM_EPROTO;
    cp = hm_calloc(1, sizeof *cp);
    cp->pub =
        mqtt_pub_create(json_string_value(topic), json_string_length(topic),
                        data, data_len, (uint8_t)qos, false);
    hm_free(data);
    if (seq > 0) {
        cp->pub->origin = mqtt_cluster_node_hash(origin);
        cp->pub->seq = (uint64_t)seq;
    }
    cp->deliver = deliver;
    cp->retain = retain;
    cp->ts = (uint64_t)ts;
    snprintf(cp->origin, sizeof cp->origin, "%s", origin);
    *out = cp;
    return HM_OK;
}

const hm_type mqtt_cl_pub_type = {.name = "mqtt.cl.pub",
                                  .free = cl_pub_free,
                                  .to_json = cl_pub_to_json,
                                  .from_json = cl_pub_from_json};
static const hm_type cl_filter_type = {.name = "mqtt.cl.filter",
                                       .free = hm_free};
static const hm_type cl_member_type = {.name = "mqtt.cl.member",
                                       .free = hm_free};
/* Local only: greet the members up but not greeted yet (their fanout was
 * not in presence yet); arg: tries left. */
static const hm_type cl_regreet_type = {.name = "mqtt.cl.regreet"};
#define REGREET_MS 10u
#define REGREET_TRIES 100u

static uint64_t wall_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* ------------------------------------------------------- publishing */

static peer *peer_by_id(mqtt_cluster *cl, uint32_t id)
{
    for (size_t i = 0; i < cl->peer_count; i++)
        if (cl->peers[i].id == id)
            return &cl->peers[i];
    return NULL;
}

static bool fits_a_line(const mqtt_pub *pub)
{
    return pub->payload_len / 3 * 4 + 4 + pub->topic_len * 6 + 512 <=
           MAX_BODY_BYTES;
}

static void send_pub(mqtt_cluster *cl, hm_ctx *ctx, peer *p, mqtt_pub *pub,
                     bool deliver, bool retain, uint64_t ts)
{
    cl_pub *cp = hm_calloc(1, sizeof *cp);
    hm_msg *m;

    cp->pub = mqtt_pub_ref(pub);
    cp->deliver = deliver;
    cp->retain = retain;
    cp->ts = ts;
    memcpy(cp->origin, cl->self, sizeof cp->origin);
    m = hm_msg_create(&mqtt_cl_pub_type, cp, 0);
    if (hm_ctx_send(ctx, p->fanout, m) != HM_OK)
        hm_msg_destroy(m);
    else
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&cl->pubs_sent, 1, memory_order_relaxed);
}

void mqtt_cluster_route(mqtt_cluster *cl, hm_ctx *ctx, mqtt_deliveries *d,
                        mqtt_pub *pub, bool retain)
{
    mqtt_broker *b = cl->b;
    bool fits = fits_a_line(pub);
    /* A retained write too big to cross is kept here unstamped, like a
     * '$' topic: stamped, it would make the digests differ for good. */
    bool local_only = pub->topic[0] == '$' || !fits;
    uint64_t ts = 0;

    retain = retain && !b->cfg.retain_unavailable;
    if (!local_only && pub->seq == 0) {
        /* Not yet shared: the routes below carry the identity. relaxed:
         * numbers need only be unique. */
        pub->origin = cl->self_hash;
        pub->seq =
            atomic_fetch_add_explicit(&cl->next_seq, 1, memory_order_relaxed) +
            1;
    }
    if (retain) {
        pthread_rwlock_wrlock(&b->retain_lock);
        if (local_only) {
            mqtt_retain_set(b->retained, pub->topic, pub->topic_len,
                            pub->payload, pub->payload_len, pub->qos);
        } else {
            ts = wall_us();
            ts = ts > cl->last_ts ? ts : cl->last_ts + 1;
            cl->last_ts = ts;
            mqtt_cluster_retain_apply(cl, pub->topic, pub->topic_len,
                                      pub->payload, pub->payload_len, pub->qos,
                                      ts, cl->self);
        }
        /* Routed under the lock: store or route, never both (ADR 0255). */
        mqtt_broker_route_local(b, ctx, d, pub);
        pthread_rwlock_unlock(&b->retain_lock);
        mqtt_saver_retained(b, pub); /* persistence: no-op when off */
    } else {
        mqtt_broker_route_local(b, ctx, d, pub);
    }
    if (!fits && pub->topic[0] != '$') {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&cl->too_big, 1, memory_order_relaxed);
        HM_LOG_WARN("MQTT-CL-TOO-BIG",
                    "a %zu-byte publish on %s stays on this node",
                    pub->payload_len, pub->topic);
    }
    if (local_only)
        return;
    pthread_rwlock_rdlock(&cl->lock);
    mqtt_interest_match(cl->interest, pub->topic, pub->topic_len, d);
    if (!retain) {
        for (size_t i = 0; i < d->count; i++) {
            peer *p = peer_by_id(cl, (uint32_t)d->items[i].subscriber);

            if (p && p->fanout)
                send_pub(cl, ctx, p, pub, true, false, 0);
        }
    } else { /* every live member stores it; the interested deliver it */
        for (size_t i = 0; i < cl->peer_count; i++) {
            peer *p = &cl->peers[i];
            bool deliver = false;

            for (size_t k = 0; k < d->count && !deliver; k++)
                deliver = d->items[k].subscriber == p->id;
            if (p->fanout && (p->up || deliver))
                send_pub(cl, ctx, p, pub, deliver, true, ts);
        }
    }
    pthread_rwlock_unlock(&cl->lock);
}

/* Runs in the subscription tree's add/remove, under its write lock. */
static void on_filter_change(void *arg, const char *filter, size_t len,
                             bool added)
{
    mqtt_cluster *cl = arg;
    cl_filter *f;
    hm_msg *m;

    if (len > 0 && filter[0] == '$')
        return; /* it matches only '$' topics, which never cross */
    f = hm_alloc(sizeof *f + len + 1);
    f->added = added;
    f->len = len;
    memcpy(f->filter, filter, len);
    f->filter[len] = '\0';
    m = hm_msg_create(&cl_filter_type, f, 0);
    if (hm_runtime_send(cl->rt, cl->fanout, m) != HM_OK)
        hm_msg_destroy(m);
}

/* A member that just came up is greeted as soon as presence knows its
 * fanout, not at the next tick: a session moving there waits for it
 * (cluster_move.c). */
static void regreet(hm_ctx *ctx, mqtt_cluster *cl, uint64_t tries)
{
    bool missing = false;
    hm_msg *m;

    for (size_t i = 0; i < cl->peer_count; i++) {
        peer *p = &cl->peers[i];

        if (p->up && p->fanout && !p->greeted)
            mqtt_cluster_greet(cl, ctx, p);
        missing = missing || (p->up && p->fanout && !p->greeted);
    }
    if (!missing || tries == 0)
        return;
    m = hm_msg_create(&cl_regreet_type, NULL, tries - 1);
    if (hm_runtime_send_after(cl->rt, cl->fanout, m, REGREET_MS, NULL) != HM_OK)
        hm_msg_destroy(m);
}

static void on_member(hm_ctx *ctx, mqtt_cluster *cl, const cl_member *m)
{
    peer *p = mqtt_cluster_peer_get(cl, m->name);

    if (!p->fanout)
        return;
    switch (m->event) {
    case HM_MEMBER_EV_UP:
        pthread_rwlock_wrlock(&cl->lock); /* publishers read `up` */
        p->up = true;
        pthread_rwlock_unlock(&cl->lock);
        p->greeted = false;
        regreet(ctx, cl, REGREET_TRIES);
        break;
    case HM_MEMBER_EV_DEAD:
    case HM_MEMBER_EV_LEFT:
    case HM_MEMBER_EV_REPLACED:
        /* Its subscribers are gone with it: publish nothing its way. */
        pthread_rwlock_wrlock(&cl->lock);
        p->up = false;
        pthread_rwlock_unlock(&cl->lock);
        p->greeted = false;
        mqtt_cluster_forget_filters(cl, p);
        break;
    default: /* SUSPECT, ALIVE: links buffer meanwhile; nothing moves */
        break;
    }
}

static void on_remote_pub(hm_ctx *ctx, mqtt_cluster *cl, mqtt_deliveries *d,
                          cl_pub *cp)
{
    mqtt_broker *b = cl->b;

    /* relaxed: a statistic. */
    atomic_fetch_add_explicit(&cl->pubs_received, 1, memory_order_relaxed);
    if (cp->pub->topic[0] == '$')
        return; /* node-local topics never cross */
    if (cp->retain && !b->cfg.retain_unavailable) {
        /* Routed under the lock: store or route, never both (ADR 0255). */
        pthread_rwlock_wrlock(&b->retain_lock);
        mqtt_cluster_retain_apply(cl, cp->pub->topic, cp->pub->topic_len,
                                  cp->pub->payload, cp->pub->payload_len,
                                  cp->pub->qos, cp->ts, cp->origin);
        if (cp->deliver) /* here only: never sent on (the one-hop rule) */
            mqtt_broker_route_local(b, ctx, d, cp->pub);
        pthread_rwlock_unlock(&b->retain_lock);
        return;
    }
    if (cp->deliver) /* here only: never sent on (the one-hop rule) */
        mqtt_broker_route_local(b, ctx, d, cp->pub);
}

typedef struct fanout_state {
    mqtt_cluster *cl;
    mqtt_deliveries d;
} fanout_state;

static hm_err fanout_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    fanout_state *st = state;
    mqtt_cluster *cl = st->cl;
    const hm_type *t = hm_msg_type(msg);

    if (t == &mqtt_cl_pub_type)
        on_remote_pub(ctx, cl, &st->d, hm_msg_payload(msg));
    else if (t == &hm_type_json)
        mqtt_cluster_on_json(ctx, cl, hm_msg_payload(msg));
    else if (t == &cl_filter_type)
        mqtt_cluster_local_filter(ctx, cl, hm_msg_payload(msg));
    else if (t == &cl_member_type)
        on_member(ctx, cl, hm_msg_payload(msg));
    else if (t == &hm_type_tick)
        mqtt_cluster_tick(ctx, cl);
    else if (t == &cl_regreet_type)
        regreet(ctx, cl, hm_msg_arg(msg));
    else if (t == &mqtt_mv_begin_type)
        mqtt_cluster_move_on_begin(ctx, cl, msg);
    else if (t == &mqtt_mv_sync_type)
        mqtt_cluster_move_on_sync_req(ctx, cl, hm_msg_payload(msg));
    else if (t == &mqtt_mv_retarget_type)
        mqtt_cluster_move_on_retarget(ctx, cl, hm_msg_payload(msg));
    return HM_OK;
}

static void fanout_deactivate(hm_ctx *ctx, void *state,
                              hm_deactivate_reason why)
{
    fanout_state *st = state;

    (void)ctx;
    (void)why;
    mqtt_deliveries_fini(&st->d);
    hm_free(st);
}

static const hm_hooks fanout_hooks = {.deactivate = fanout_deactivate};

/* ---------------------------------------------------------- membership */

/* Runs on the "cluster/node" receiver: quick, and only a send. */
static void on_member_event(void *arg, const char *name, uint64_t inc,
                            hm_member_event event)
{
    mqtt_cluster *cl = arg;
    cl_member *m;
    hm_msg *msg;

    HM_LOG_INFO("MQTT-MEMBER", "member %s (incarnation %llu): %s", name,
                (unsigned long long)inc, hm_member_event_name(event));
    m = hm_calloc(1, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->inc = inc;
    m->event = event;
    msg = hm_msg_create(&cl_member_type, m, 0);
    if (hm_runtime_send(cl->rt, cl->fanout, msg) != HM_OK)
        hm_msg_destroy(msg);
    mqtt_session_cluster_event(cl->b, name, event);
}

/* ---------------------------------------------------------------- $SYS */

void mqtt_cluster_sys(mqtt_cluster *cl, mqtt_sys_put_fn put, void *arg)
{
    hm_node_member *ms = hm_calloc(MAX_SYS_MEMBERS, sizeof *ms);
    size_t n = hm_node_members(cl->node, ms, MAX_SYS_MEMBERS), live = 1;
    char topic[sizeof "$SYS/broker/cluster/nodes//status" + HM_NODE_NAME_MAX];
    char buf[32];

    put(arg, "$SYS/broker/cluster/node", cl->self);
    snprintf(topic, sizeof topic, "$SYS/broker/cluster/nodes/%s/status",
             cl->self);
    put(arg, topic, "alive");
    if (n > MAX_SYS_MEMBERS)
        n = MAX_SYS_MEMBERS;
    for (size_t i = 0; i < n; i++) {
        hm_member_state s = ms[i].info.state;

        if (s == HM_MEMBER_ALIVE || s == HM_MEMBER_SUSPECT)
            live++;
        snprintf(topic, sizeof topic, "$SYS/broker/cluster/nodes/%.*s/status",
                 HM_NODE_NAME_MAX, ms[i].info.name);
        put(arg, topic, hm_member_state_name(s));
    }
#define PUT_U64(t, v)                                                          \
    do {                                                                       \
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)(v));            \
        put(arg, t, buf);                                                      \
    } while (0)
    PUT_U64("$SYS/broker/cluster/members/count", live);
    /* relaxed: statistics. */
    PUT_U64("$SYS/broker/cluster/publishes/sent",
            atomic_load_explicit(&cl->pubs_sent, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/publishes/received",
            atomic_load_explicit(&cl->pubs_received, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/publishes/too big",
            atomic_load_explicit(&cl->too_big, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/filters/local",
            atomic_load_explicit(&cl->filters_local, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/filters/remote",
            atomic_load_explicit(&cl->filters_remote, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/writes/stalls",
            atomic_load_explicit(&cl->b->link_stalls, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/writes/held",
            atomic_load_explicit(&cl->b->link_held, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/writes/notices",
            atomic_load_explicit(&cl->b->link_notices, memory_order_relaxed));
    PUT_U64("$SYS/broker/cluster/writes/retries",
            atomic_load_explicit(&cl->b->link_retries, memory_order_relaxed));
#undef PUT_U64
    hm_free(ms);
}

/* ---------------------------------------------------------- lifecycle */

hm_err mqtt_cluster_create(mqtt_broker *b, const mqtt_broker_config *cfg,
                           hm_factory_fn factory, void *factory_arg,
                           mqtt_cluster **out)
{
    mqtt_cluster *cl = hm_calloc(1, sizeof *cl);
    hm_err err;

    cl->b = b;
    err = hm_node_create(
        &(hm_node_config){.name = cfg->node_name,
                          .cluster = cfg->cluster_name,
                          .listen = cfg->cluster_listen,
                          .seeds = cfg->cluster_join,
                          .seed_count = cfg->cluster_join_count,
                          .secret_file = cfg->cluster_secret_file,
                          .buffer_limit = cfg->cluster_buffer_limit,
                          .factory = factory,
                          .factory_arg = factory_arg,
                          /* sessions and connections (session_cluster.c) */
                          .placed = mqtt_session_is_placed,
                          .placed_arg = b,
                          .home = mqtt_conn_home,
                          .home_arg = b,
                          .on_event = on_member_event,
                          .event_arg = cl},
        &cl->node);
    if (err != HM_OK) {
        hm_free(cl);
        return err;
    }
    snprintf(cl->self, sizeof cl->self, "%s", hm_node_name(cl->node));
    cl->self_hash = mqtt_cluster_node_hash(cl->self);
    snprintf(cl->fanout_name, sizeof cl->fanout_name, MQTT_FANOUT_PREFIX "%s",
             cl->self);
    cl->inc = hm_node_inc(cl->node);
    pthread_rwlock_init(&cl->lock, NULL);
    pthread_mutex_init(&cl->custody_lock, NULL);
    cl->interest = mqtt_interest_create();
    cl->mine = mqtt_interest_create();
    cl->stamps = mqtt_retain_create();
    *out = cl;
    return HM_OK;
}

hm_node *mqtt_cluster_node(mqtt_cluster *cl)
{
    return cl->node;
}

hm_err mqtt_cluster_start(mqtt_cluster *cl, hm_runtime *rt, hm_net *net)
{
    fanout_state *st = hm_calloc(1, sizeof *st);
    hm_err err;

    cl->rt = rt;
    st->cl = cl;
    mqtt_deliveries_init(&st->d);
    /* The fanout exists before the node starts, so membership events
     * (on_member_event, on the node's receiver) always find it. */
    err = hm_runtime_spawn(rt, cl->fanout_name,
                           &(hm_receiver){.handler = fanout_handle,
                                          .state = st,
                                          .hooks = &fanout_hooks,
                                          .pinned = true},
                           &cl->fanout);
    if (err != HM_OK) {
        mqtt_deliveries_fini(&st->d);
        hm_free(st);
        return err;
    }
    /* From now on every change of the tree's filter set reaches the
     * fanout; the tree is still empty (no listener yet). */
    pthread_rwlock_wrlock(&cl->b->tree_lock);
    mqtt_topic_tree_observe(cl->b->tree, on_filter_change, cl);
    pthread_rwlock_unlock(&cl->b->tree_lock);
    if ((err = hm_runtime_register_type(rt, &mqtt_cl_pub_type)) != HM_OK ||
        (err = mqtt_session_cluster_start(cl->b)) != HM_OK ||
        (err = hm_runtime_send_every(rt, cl->fanout, TICK_MS, TAG_TICK,
                                     NULL)) != HM_OK)
        return err;
    if ((err = hm_node_start(cl->node, rt, net)) != HM_OK) {
        HM_LOG_ERROR("MQTT-CLUSTER", "node %s did not start: %s", cl->self,
                     hm_err_str(err));
        return err;
    }
    if ((err = hm_node_register(cl->node, cl->fanout_name)) != HM_OK)
        return err;
    HM_LOG_INFO("MQTT-CLUSTER", "node %s, cluster address %s", cl->self,
                hm_node_addr(cl->node));
    return HM_OK;
}

void mqtt_cluster_stop(mqtt_cluster *cl)
{
    if (!cl || cl->stopped || !cl->rt)
        return;
    cl->stopped = true;
    hm_node_stop(cl->node, STOP_WAIT_MS);
}

void mqtt_cluster_destroy(mqtt_cluster *cl)
{
    if (!cl)
        return;
    for (size_t i = 0; i < cl->peer_count; i++)
        json_decref(cl->peers[i].stage);
    mqtt_cluster_move_fini(cl);
    /* The addresses died with the runtime (runtime.h). */
    hm_free(cl->peers);
    mqtt_interest_destroy(cl->interest);
    mqtt_interest_destroy(cl->mine);
    mqtt_retain_destroy(cl->stamps);
    pthread_rwlock_destroy(&cl->lock);
    pthread_mutex_destroy(&cl->custody_lock);
    hm_node_destroy(cl->node);
    hm_free(cl);
}
