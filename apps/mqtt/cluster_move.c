/* apps/mqtt/cluster_move.c: the fanout's side of a session that moves
 * between nodes (ADR 0165).
 *
 * When placement moves a session from node O to node N (a member joined,
 * or O leaves), the publishers on every node P learn N's filters one
 * network delay after N adopts the session, and forget O's one delay after
 * O drops them: in between, a message matching only that session's
 * filters went nowhere. So O keeps the session's subscriptions in its tree
 * under a token that reaches the session at N (its address, or the
 * leaving session that forwards), and drops them only when every member
 * has N's filters, so that whatever a publisher sent O before that has
 * reached O and been forwarded. The protocol is three kinds of line
 * between fanouts, each one FIFO with the publishes on the same link:
 *
 *   N adopts the session, adds its filters, and sends "sync" {cid, old: O}
 *   to every member after its filter delta (mqtt_cluster_move_sync());
 *   a member P with N's filters at that version sends "cut" {cid, n: N} to
 *   O: every publish P routed before knowing N's filters is ahead of it;
 *   O, with N's sync (N's own publishes are ahead of it), N's filters
 *   (its own cut) and a cut from every other live member, removes the
 *   entries under the tree's write lock and sends "mqtt.mv.done" to the
 *   token: nothing is forwarded after it.
 *
 * The session at N holds what its own node routes to it until that done,
 * delivers what O forwards at once, and drops the copies that came both
 * ways by (origin, seq) (session_move.c). A move that cannot finish (a
 * member that came up meanwhile and never heard the sync) ends after
 * MOVE_WAIT_MS. Everything here runs on the fanout receiver. */
#include "apps/mqtt/cluster_impl.h"
#include "apps/mqtt/session_msg.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

/* The longest a move forwards, or a cut waits for filters. */
#define MOVE_WAIT_MS 5000u

typedef struct mv_rec {
    mqtt_move *mv;
    uint64_t begun_ms;
    bool synced;   /* N's sync came: its publishes before it are here */
    bool self_cut; /* we have N's filters */
    char **from;   /* members whose cut came */
    size_t from_count;
} mv_rec;

/* A sync we sent as the new owner: a member greeted later gets it too. */
typedef struct mv_sync {
    char *cid, *old;
    uint64_t since_ms;
} mv_sync;

/* A cut we owe `old` once we hold `to`'s filters at (inc, ver). */
typedef struct mv_cut {
    char *cid, *old, *to;
    uint64_t inc, ver, since_ms;
} mv_cut;

const hm_type mqtt_mv_begin_type = {
    .name = "mqtt.mv.begin", .free = (void (*)(void *))mqtt_move_destroy};
const hm_type mqtt_mv_sync_type = {.name = "mqtt.mv.sync",
                                   .free = (void (*)(void *))mqtt_move_destroy};

/* A retarget's payload (mqtt_cluster_move_retarget()). */
typedef struct mv_retarget {
    char *cid, *from, *to; /* owned */
} mv_retarget;

static void retarget_free(void *p)
{
    mv_retarget *r = p;

    hm_free(r->cid);
    hm_free(r->from);
    hm_free(r->to);
    hm_free(r);
}

const hm_type mqtt_mv_retarget_type = {.name = "mqtt.mv.retarget",
                                       .free = retarget_free};

uint64_t mqtt_cluster_node_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a 64 */

    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 0x100000001b3u;
    return (h >> 1) | 1; /* 63 bits, never 0: a JSON integer */
}

void mqtt_move_destroy(mqtt_move *mv)
{
    if (!mv)
        return;
    for (size_t i = 0; i < mv->count; i++)
        hm_free(mv->filters[i]);
    hm_free(mv->filters);
    hm_free(mv->client_id);
    hm_free(mv->to);
    hm_addr_release(mv->token);
    hm_free(mv);
}

void mqtt_cluster_move_begin(mqtt_cluster *cl, mqtt_move *mv)
{
    hm_msg *m = hm_msg_create(&mqtt_mv_begin_type, mv, 0);

    /* relaxed: a count a clean leave polls. */
    atomic_fetch_add_explicit(&cl->moves_open, 1, memory_order_relaxed);
    if (hm_runtime_send(cl->rt, cl->fanout, m) != HM_OK) {
        atomic_fetch_sub_explicit(&cl->moves_open, 1, memory_order_relaxed);
        hm_msg_destroy(m);
    }
}

void mqtt_cluster_move_sync(mqtt_cluster *cl, const char *client_id,
                            const char *old)
{
    mqtt_move *mv = hm_calloc(1, sizeof *mv);
    hm_msg *m;

    mv->client_id = hm_strdup(client_id);
    mv->to = hm_strdup(old);
    m = hm_msg_create(&mqtt_mv_sync_type, mv, 0);
    if (hm_runtime_send(cl->rt, cl->fanout, m) != HM_OK)
        hm_msg_destroy(m);
}

void mqtt_cluster_move_retarget(mqtt_cluster *cl, const char *client_id,
                                const char *from, const char *to)
{
    mv_retarget *r = hm_calloc(1, sizeof *r);
    hm_msg *m;

    r->cid = hm_strdup(client_id);
    r->from = hm_strdup(from);
    r->to = hm_strdup(to);
    m = hm_msg_create(&mqtt_mv_retarget_type, r, 0);
    if (hm_runtime_send(cl->rt, cl->fanout, m) != HM_OK)
        hm_msg_destroy(m);
}

uint32_t mqtt_cluster_moves_open(mqtt_cluster *cl)
{
    /* relaxed: a count polled by a clean leave. */
    return cl ? atomic_load_explicit(&cl->moves_open, memory_order_relaxed) : 0;
}

static mv_rec *find_rec(mqtt_cluster *cl, const char *cid, const char *to)
{
    for (size_t i = 0; i < cl->move_count; i++)
        if (strcmp(cl->moves[i].mv->client_id, cid) == 0 &&
            strcmp(cl->moves[i].mv->to, to) == 0)
            return &cl->moves[i];
    return NULL;
}

void mqtt_cluster_move_on_begin(hm_ctx *ctx, mqtt_cluster *cl, hm_msg *msg)
{
    mqtt_move *mv = hm_msg_take_payload(msg);

    if (cl->move_count == cl->move_cap) {
        cl->move_cap = cl->move_cap ? 2 * cl->move_cap : 8;
        cl->moves = hm_realloc(cl->moves, cl->move_cap * sizeof *cl->moves);
    }
    cl->moves[cl->move_count++] =
        (mv_rec){.mv = mv, .begun_ms = hm_ctx_now_ms(ctx)};
    HM_LOG_INFO("MQTT-MOVE",
                "client %s: forwarding to %s while the "
                "members learn its filters there",
                mv->client_id, mv->to);
}

void mqtt_cluster_move_on_retarget(hm_ctx *ctx, mqtt_cluster *cl,
                                   const void *p)
{
    const mv_retarget *rt = p;
    mv_rec *r = find_rec(cl, rt->cid, rt->from);

    if (!r)
        return; /* over already */
    hm_free(r->mv->to);
    r->mv->to = hm_strdup(rt->to);
    r->synced = r->self_cut = false;
    for (size_t k = 0; k < r->from_count; k++)
        hm_free(r->from[k]);
    r->from_count = 0;
    r->begun_ms = hm_ctx_now_ms(ctx);
    HM_LOG_INFO("MQTT-MOVE", "client %s: %s is gone; forwarding to %s "
                "instead", rt->cid, rt->from, rt->to);
}

/* Removes the entries, tells the token, frees record `i`. */
static void finish(hm_ctx *ctx, mqtt_cluster *cl, size_t i, bool late)
{
    mqtt_move *mv = cl->moves[i].mv;
    mqtt_broker *b = cl->b;
    hm_msg *done;

    pthread_rwlock_wrlock(&b->tree_lock);
    for (size_t k = 0; k < mv->count; k++)
        mqtt_topic_tree_remove(b->tree, mv->filters[k], strlen(mv->filters[k]),
                               (uint64_t)(uintptr_t)mv->token);
    pthread_rwlock_unlock(&b->tree_lock);
    /* After the removal: nothing routed here reaches the token after it. */
    done = hm_msg_create(&mqtt_mv_done_type, NULL, 0);
    if (hm_ctx_send(ctx, mv->token, done) != HM_OK)
        hm_msg_destroy(done);
    if (late)
        HM_LOG_WARN("MQTT-MOVE",
                    "client %s: stopped forwarding to %s "
                    "without every member's cut",
                    mv->client_id, mv->to);
    else
        HM_LOG_INFO("MQTT-MOVE",
                    "client %s: every member routes to %s; "
                    "forwarding ends",
                    mv->client_id, mv->to);
    for (size_t k = 0; k < cl->moves[i].from_count; k++)
        hm_free(cl->moves[i].from[k]);
    hm_free(cl->moves[i].from);
    mqtt_move_destroy(mv);
    cl->moves[i] = cl->moves[--cl->move_count];
    /* relaxed: see mqtt_cluster_moves_open(). */
    atomic_fetch_sub_explicit(&cl->moves_open, 1, memory_order_relaxed);
}

static bool has_cut(const mv_rec *r, const char *name)
{
    for (size_t i = 0; i < r->from_count; i++)
        if (strcmp(r->from[i], name) == 0)
            return true;
    return false;
}

static bool complete(const mqtt_cluster *cl, const mv_rec *r)
{
    if (!r->synced || !r->self_cut)
        return false;
    for (size_t i = 0; i < cl->peer_count; i++) {
        const peer *p = &cl->peers[i];

        if (p->up && strcmp(p->name, r->mv->to) != 0 && !has_cut(r, p->name))
            return false;
    }
    return true;
}

/* Sends (or, for us, records) the cuts whose filters have arrived. */
static void pay_cuts(hm_ctx *ctx, mqtt_cluster *cl, uint64_t now)
{
    size_t kept = 0;

    for (size_t i = 0; i < cl->cut_count; i++) {
        mv_cut *c = &cl->cuts[i];
        peer *to = mqtt_cluster_peer_get(cl, c->to);
        bool have = to->inc != c->inc || to->ver >= c->ver;

        if (!have && now - c->since_ms < MOVE_WAIT_MS) {
            cl->cuts[kept++] = *c;
            continue;
        }
        if (strcmp(c->old, cl->self) == 0) {
            mv_rec *r = find_rec(cl, c->cid, c->to);

            if (r)
                r->self_cut = true;
        } else {
            peer *old = mqtt_cluster_peer_get(cl, c->old);
            json_t *j = mqtt_cluster_head(cl, "cut");

            json_object_set_new(j, "c", json_string(c->cid));
            json_object_set_new(j, "n", json_string(c->to));
            if (old->fanout && old->up)
                mqtt_cluster_send_json(ctx, old, j);
            else
                json_decref(j);
        }
        hm_free(c->cid);
        hm_free(c->old);
        hm_free(c->to);
    }
    cl->cut_count = kept;
}

void mqtt_cluster_move_check(hm_ctx *ctx, mqtt_cluster *cl)
{
    uint64_t now = hm_ctx_now_ms(ctx);
    size_t kept = 0;

    for (size_t i = 0; i < cl->sync_count; i++) {
        if (now - cl->syncs[i].since_ms < MOVE_WAIT_MS) {
            cl->syncs[kept++] = cl->syncs[i];
            continue;
        }
        hm_free(cl->syncs[i].cid);
        hm_free(cl->syncs[i].old);
    }
    cl->sync_count = kept;
    pay_cuts(ctx, cl, now);
    for (size_t i = 0; i < cl->move_count;) {
        bool late = now - cl->moves[i].begun_ms >= MOVE_WAIT_MS;

        if (complete(cl, &cl->moves[i]) || late)
            finish(ctx, cl, i, !complete(cl, &cl->moves[i]));
        else
            i++;
    }
}

static void send_sync(hm_ctx *ctx, mqtt_cluster *cl, peer *p, const mv_sync *sy)
{
    json_t *j = mqtt_cluster_head(cl, "sync");

    json_object_set_new(j, "c", json_string(sy->cid));
    json_object_set_new(j, "od", json_string(sy->old));
    mqtt_cluster_send_json(ctx, p, j);
}

void mqtt_cluster_move_on_sync_req(hm_ctx *ctx, mqtt_cluster *cl,
                                   const mqtt_move *mv)
{
    mv_sync sy = {.cid = hm_strdup(mv->client_id),
                  .old = hm_strdup(mv->to),
                  .since_ms = hm_ctx_now_ms(ctx)};

    for (size_t i = 0; i < cl->peer_count; i++) {
        peer *p = &cl->peers[i];

        if (!p->up || !p->fanout)
            continue;
        if (!p->greeted) /* our filters first, then the sync */
            mqtt_cluster_greet(cl, ctx, p);
        if (p->greeted)
            send_sync(ctx, cl, p, &sy);
    }
    /* A member greeted later (it came up meanwhile) gets it then. */
    if (cl->sync_count == cl->sync_cap) {
        cl->sync_cap = cl->sync_cap ? 2 * cl->sync_cap : 8;
        cl->syncs = hm_realloc(cl->syncs, cl->sync_cap * sizeof *cl->syncs);
    }
    cl->syncs[cl->sync_count++] = sy;
}

void mqtt_cluster_move_on_greet(hm_ctx *ctx, mqtt_cluster *cl, peer *p)
{
    for (size_t i = 0; i < cl->sync_count; i++)
        send_sync(ctx, cl, p, &cl->syncs[i]);
}

void mqtt_cluster_move_on_json(hm_ctx *ctx, mqtt_cluster *cl, peer *p,
                               const char *kind, const json_t *j)
{
    const char *cid = json_string_value(json_object_get(j, "c"));
    json_int_t inc = json_integer_value(json_object_get(j, "i"));
    json_int_t ver = json_integer_value(json_object_get(j, "v"));
    mv_rec *r;

    if (!cid)
        return;
    if (kind[0] == 'c') { /* "cut" from p for the move of cid to "n" */
        const char *to = json_string_value(json_object_get(j, "n"));

        if (to && (r = find_rec(cl, cid, to)) && !has_cut(r, p->name)) {
            r->from =
                hm_realloc(r->from, (r->from_count + 1) * sizeof *r->from);
            r->from[r->from_count++] = hm_strdup(p->name);
        }
    } else { /* "sync" from p, the new owner of cid, which was at "od" */
        const char *old = json_string_value(json_object_get(j, "od"));

        if (!old || !hm_wire_name_is_valid(old))
            return;
        if (strcmp(old, cl->self) == 0 && (r = find_rec(cl, cid, p->name)))
            r->synced = true;
        if (cl->cut_count == cl->cut_cap) {
            cl->cut_cap = cl->cut_cap ? 2 * cl->cut_cap : 8;
            cl->cuts = hm_realloc(cl->cuts, cl->cut_cap * sizeof *cl->cuts);
        }
        cl->cuts[cl->cut_count++] = (mv_cut){.cid = hm_strdup(cid),
                                             .old = hm_strdup(old),
                                             .to = hm_strdup(p->name),
                                             .inc = (uint64_t)inc,
                                             .ver = (uint64_t)ver,
                                             .since_ms = hm_ctx_now_ms(ctx)};
    }
    mqtt_cluster_move_check(ctx, cl);
}

void mqtt_cluster_move_fini(mqtt_cluster *cl)
{
    for (size_t i = 0; i < cl->move_count; i++) {
        for (size_t k = 0; k < cl->moves[i].from_count; k++)
            hm_free(cl->moves[i].from[k]);
        hm_free(cl->moves[i].from);
        /* The token died with the runtime (runtime.h): not released. */
        cl->moves[i].mv->token = NULL;
        mqtt_move_destroy(cl->moves[i].mv);
    }
    hm_free(cl->moves);
    for (size_t i = 0; i < cl->cut_count; i++) {
        hm_free(cl->cuts[i].cid);
        hm_free(cl->cuts[i].old);
        hm_free(cl->cuts[i].to);
    }
    hm_free(cl->cuts);
    for (size_t i = 0; i < cl->sync_count; i++) {
        hm_free(cl->syncs[i].cid);
        hm_free(cl->syncs[i].old);
    }
    hm_free(cl->syncs);
    for (size_t i = 0; i < cl->custody_count; i++)
        hm_free(cl->custody[i]);
    hm_free(cl->custody);
}

/* ------------------------------------------------------------ custody */

void mqtt_cluster_custody_set(mqtt_cluster *cl, const char *client_id,
                              bool on)
{
    size_t i = 0;

    if (!cl)
        return;
    pthread_mutex_lock(&cl->custody_lock);
    while (i < cl->custody_count && strcmp(cl->custody[i], client_id) != 0)
        i++;
    if (on && i == cl->custody_count) {
        if (cl->custody_count == cl->custody_cap) {
            cl->custody_cap = cl->custody_cap ? 2 * cl->custody_cap : 8;
            cl->custody = hm_realloc(cl->custody,
                                     cl->custody_cap * sizeof *cl->custody);
        }
        cl->custody[cl->custody_count++] = hm_strdup(client_id);
    } else if (!on && i < cl->custody_count) {
        hm_free(cl->custody[i]);
        cl->custody[i] = cl->custody[--cl->custody_count];
    }
    pthread_mutex_unlock(&cl->custody_lock);
}

bool mqtt_cluster_custody_has(mqtt_cluster *cl, const char *client_id)
{
    bool has = false;

    if (!cl)
        return false;
    pthread_mutex_lock(&cl->custody_lock);
    for (size_t i = 0; i < cl->custody_count && !has; i++)
        has = strcmp(cl->custody[i], client_id) == 0;
    pthread_mutex_unlock(&cl->custody_lock);
    return has;
}
