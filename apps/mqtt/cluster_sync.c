/* apps/mqtt/cluster_sync.c: how the nodes of an MQTT cluster keep each
 * other's subscription filters and retained messages (cluster_impl.h).
 *
 * Filters. The fanout receiver keeps this node's distinct filters (fed by
 * the subscription tree's observer, in the tree's order) with a version,
 * one per change, and sends each change as a delta {inc, ver} to every peer
 * it has greeted; a peer applies a delta only if it is the next version and
 * otherwise asks for a snapshot. Snapshots go to a member when it comes up
 * (once presence knows its fanout here) and to whoever asks, in parts of
 * about 128 KiB so that no line nears the link's 1 MiB limit; a digest
 * every tick repairs what was lost (a delta dropped while a link was down):
 * a mismatch seen twice unchanged means divergence, not messages in flight.
 *
 * Retained messages. Every write carries a stamp (wall clock microseconds,
 * strictly increasing per node, and the node's name). Each node keeps the
 * stamp of every retained topic, clears included (tombstones), in a second
 * retain store keyed by topic, and applies a write only if its stamp is
 * newer: last writer wins, the same everywhere, so nodes converge. The
 * digest is the XOR of a hash per (topic, stamp); snapshots merge entry by
 * entry by the same rule, so they can be sent both ways and repeated. */
#include "apps/mqtt/cluster_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- base64 */

json_t *mqtt_cluster_b64_json(const uint8_t *data, size_t len)
{
    char *buf = hm_alloc(4 * ((len + 2) / 3) + 1);
    json_t *j;

    EVP_EncodeBlock((unsigned char *)buf, data, (int)len);
    j = json_string(buf);
    hm_free(buf);
    return j;
}

/* Decodes a base64 string into owned bytes. Errors: HM_EPROTO. */
hm_err mqtt_cluster_b64_decode(const char *s, size_t slen, uint8_t **out,
                               size_t *out_len)
{
    size_t pad = 0;
    int n;

    if (slen % 4 != 0)
        return HM_EPROTO;
    *out = hm_alloc(slen / 4 * 3 + 1);
    if (slen == 0) {
        *out_len = 0;
        return HM_OK;
    }
    n = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)slen);
    if (n < 0) {
        hm_free(*out);
        return HM_EPROTO;
    }
    pad = (s[slen - 1] == '=') + (s[slen - 2] == '=');
    *out_len = (size_t)n - pad;
    return HM_OK;
}

/* ------------------------------------------------------------- stamps */

/* A stamp as the stamps store keeps it: the "payload" of its topic. */
typedef struct stamp {
    uint64_t ts;
    bool cleared; /* a tombstone */
    char origin[HM_NODE_NAME_MAX + 1];
} stamp;

static size_t stamp_encode(const stamp *s, uint8_t *buf)
{
    size_t olen = strlen(s->origin);

    memcpy(buf, &s->ts, 8);
    buf[8] = s->cleared;
    memcpy(buf + 9, s->origin, olen);
    return 9 + olen;
}

static void stamp_decode(const mqtt_retained *r, stamp *s)
{
    size_t olen = r->payload_len - 9;

    memcpy(&s->ts, r->payload, 8);
    s->cleared = r->payload[8];
    memcpy(s->origin, r->payload + 9, olen);
    s->origin[olen] = '\0';
}

/* Whether (ts, origin) orders after `s`. */
static bool newer(uint64_t ts, const char *origin, const stamp *s)
{
    return ts > s->ts || (ts == s->ts && strcmp(origin, s->origin) > 0);
}

static uint64_t entry_hash(const char *topic, size_t len, const stamp *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint8_t buf[9 + HM_NODE_NAME_MAX];
    size_t n = stamp_encode(s, buf);

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)topic[i]) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ buf[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

/* Applies a retained write if it is newer than what is held; under the
 * broker's retain_lock (write side). Returns whether it was applied. */
bool mqtt_cluster_retain_apply(mqtt_cluster *cl, const char *topic, size_t len,
                               const uint8_t *payload, size_t plen, uint8_t qos,
                               uint64_t ts, const char *origin)
{
    mqtt_retained r;
    stamp old, s = {.ts = ts, .cleared = plen == 0};
    uint8_t buf[9 + HM_NODE_NAME_MAX];
    bool had = mqtt_retain_get(cl->stamps, topic, len, &r);

    if (had) {
        stamp_decode(&r, &old);
        if (!newer(ts, origin, &old))
            return false;
        cl->retain_digest ^= entry_hash(topic, len, &old);
    }
    snprintf(s.origin, sizeof s.origin, "%s", origin);
    mqtt_retain_set(cl->b->retained, topic, len, payload, plen, qos);
    mqtt_retain_set(cl->stamps, topic, len, buf, stamp_encode(&s, buf), 0);
    cl->retain_digest ^= entry_hash(topic, len, &s);
    return true;
}

/* ------------------------------------------------------ fanout: send */

void mqtt_cluster_send_json(hm_ctx *ctx, peer *p, json_t *j)
{
    hm_msg *m;

    if (!j)
        return;
    m = hm_msg_create(&hm_type_json, j, 0);
    if (hm_ctx_send(ctx, p->fanout, m) != HM_OK)
        hm_msg_destroy(m);
}

json_t *mqtt_cluster_head(mqtt_cluster *cl, const char *kind)
{
    return json_pack("{s:s, s:s, s:I, s:I}", "k", kind, "o", cl->self, "i",
                     (json_int_t)cl->inc, "v", (json_int_t)cl->ver);
}

typedef struct snap_builder {
    json_t *parts; /* array of arrays */
    json_t *cur;
    size_t bytes;
} snap_builder;

static void snap_add(snap_builder *sb, json_t *item, size_t bytes)
{
    if (!sb->cur ||
        (sb->bytes + bytes > PART_BYTES && json_array_size(sb->cur) > 0)) {
        sb->cur = json_array();
        json_array_append_new(sb->parts, sb->cur);
        sb->bytes = 0;
    }
    json_array_append_new(sb->cur, item);
    sb->bytes += bytes;
}

static void add_filter(void *arg, const char *filter, size_t len)
{
    json_t *s = json_stringn(filter, len);

    if (s)
        snap_add(arg, s, len * 6 + 4);
}

static void send_parts(mqtt_cluster *cl, hm_ctx *ctx, peer *p, const char *kind,
                       const char *field, snap_builder *sb)
{
    size_t n = json_array_size(sb->parts);

    if (n == 0) { /* an empty set is a snapshot too */
        json_array_append_new(sb->parts, json_array());
        n = 1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *j = mqtt_cluster_head(cl, kind);

        json_object_set_new(j, "part", json_integer((json_int_t)i));
        json_object_set_new(j, "parts", json_integer((json_int_t)n));
        json_object_set(j, field, json_array_get(sb->parts, i));
        mqtt_cluster_send_json(ctx, p, j);
    }
    json_decref(sb->parts);
}

static void send_filters(mqtt_cluster *cl, hm_ctx *ctx, peer *p)
{
    snap_builder sb = {.parts = json_array()};

    mqtt_interest_foreach(cl->mine, LOCAL_NODE, add_filter, &sb);
    send_parts(cl, ctx, p, "snap", "f", &sb);
}

typedef struct retain_walk {
    mqtt_cluster *cl;
    snap_builder sb;
} retain_walk;

static void add_retained(void *arg, const mqtt_retained *st)
{
    retain_walk *w = arg;
    mqtt_retained r = {0};
    stamp s;
    json_t *topic = json_stringn(st->topic, st->topic_len);

    if (!topic)
        return;
    stamp_decode(st, &s);
    if (!s.cleared &&
        !mqtt_retain_get(w->cl->b->retained, st->topic, st->topic_len, &r))
        s.cleared = true; /* cannot happen: both change together */
    if (!s.cleared &&
        r.payload_len / 3 * 4 + st->topic_len * 6 + 512 > MAX_BODY_BYTES) {
        json_decref(topic);
        return; /* too big to cross: stays on this node */
    }
    snap_add(&w->sb,
             json_pack("[o, o, i, I, s]", topic,
                       s.cleared
                           ? json_string("")
                           : mqtt_cluster_b64_json(r.payload, r.payload_len),
                       r.qos, (json_int_t)s.ts, s.origin),
             st->topic_len * 6 + (s.cleared ? 0 : r.payload_len / 3 * 4) + 64);
}

static void send_retained(mqtt_cluster *cl, hm_ctx *ctx, peer *p)
{
    retain_walk w = {.cl = cl, .sb = {.parts = json_array()}};

    pthread_rwlock_rdlock(&cl->b->retain_lock);
    mqtt_retain_match(cl->stamps, "#", 1, add_retained, &w);
    pthread_rwlock_unlock(&cl->b->retain_lock);
    send_parts(cl, ctx, p, "rsnap", "m", &w.sb);
}

void mqtt_cluster_greet(mqtt_cluster *cl, hm_ctx *ctx, peer *p)
{
    char where[HM_NODE_NAME_MAX + 1];
    char name[sizeof MQTT_FANOUT_PREFIX + HM_NODE_NAME_MAX];

    snprintf(name, sizeof name, MQTT_FANOUT_PREFIX "%s", p->name);
    /* Until presence knows its fanout here, a send would not reach it. */
    if (hm_node_lookup(cl->node, name, where) != HM_OK ||
        strcmp(where, p->name) != 0)
        return;
    p->greeted = true;
    send_filters(cl, ctx, p);
    send_retained(cl, ctx, p);
    mqtt_cluster_move_on_greet(ctx, cl, p);
}

static void ask(mqtt_cluster *cl, hm_ctx *ctx, peer *p, const char *kind,
                uint64_t *last_ms)
{
    uint64_t now = hm_ctx_now_ms(ctx);

    if (*last_ms && now - *last_ms < REQUEST_RETRY_MS)
        return;
    *last_ms = now;
    mqtt_cluster_send_json(ctx, p, mqtt_cluster_head(cl, kind));
}

/* --------------------------------------------------- fanout: peers */

peer *mqtt_cluster_peer_get(mqtt_cluster *cl, const char *name)
{
    char fname[sizeof MQTT_FANOUT_PREFIX + HM_NODE_NAME_MAX];
    peer *p;

    for (size_t i = 0; i < cl->peer_count; i++)
        if (strcmp(cl->peers[i].name, name) == 0)
            return &cl->peers[i];
    snprintf(fname, sizeof fname, MQTT_FANOUT_PREFIX "%s", name);
    pthread_rwlock_wrlock(&cl->lock);
    if (cl->peer_count == cl->peer_cap) {
        cl->peer_cap = cl->peer_cap ? cl->peer_cap * 2 : 8;
        cl->peers = hm_realloc(cl->peers, cl->peer_cap * sizeof *cl->peers);
    }
    p = &cl->peers[cl->peer_count++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->id = ++cl->next_id;
    if (hm_runtime_intern(cl->rt, fname, &p->fanout) != HM_OK)
        p->fanout = NULL;
    pthread_rwlock_unlock(&cl->lock);
    return p;
}

static void count_remote(mqtt_cluster *cl)
{
    uint64_t n = 0;

    for (size_t i = 0; i < cl->peer_count; i++)
        n += mqtt_interest_count(cl->interest, cl->peers[i].id);
    /* relaxed: a statistic. */
    atomic_store_explicit(&cl->filters_remote, n, memory_order_relaxed);
}

void mqtt_cluster_forget_filters(mqtt_cluster *cl, peer *p)
{
    pthread_rwlock_wrlock(&cl->lock);
    mqtt_interest_drop(cl->interest, p->id);
    pthread_rwlock_unlock(&cl->lock);
    p->inc = p->ver = 0;
    json_decref(p->stage);
    p->stage = NULL;
    count_remote(cl);
}

/* ---------------------------------------------- fanout: local filters */

void mqtt_cluster_local_filter(hm_ctx *ctx, mqtt_cluster *cl,
                               const cl_filter *f)
{
    bool changed =
        f->added
            ? mqtt_interest_add(cl->mine, LOCAL_NODE, f->filter, f->len)
            : mqtt_interest_remove(cl->mine, LOCAL_NODE, f->filter, f->len);

    if (!changed)
        return;
    cl->ver++;
    /* relaxed: a statistic. */
    atomic_store_explicit(&cl->filters_local,
                          mqtt_interest_count(cl->mine, LOCAL_NODE),
                          memory_order_relaxed);
    for (size_t i = 0; i < cl->peer_count; i++) {
        peer *p = &cl->peers[i];
        json_t *j;

        if (!p->up || !p->greeted)
            continue;
        j = mqtt_cluster_head(cl, f->added ? "add" : "del");
        json_object_set_new(j, "f", json_stringn(f->filter, f->len));
        mqtt_cluster_send_json(ctx, p, j);
    }
}

/* --------------------------------------------- fanout: remote messages */

static void apply_delta(hm_ctx *ctx, mqtt_cluster *cl, peer *p,
                        const char *kind, uint64_t inc, uint64_t ver,
                        const json_t *j)
{
    json_t *f = json_object_get(j, "f");

    if (inc == p->inc && ver <= p->ver)
        return; /* a duplicate */
    if (inc != p->inc || ver != p->ver + 1 || !json_is_string(f)) {
        ask(cl, ctx, p, "req", &p->filters_req_ms);
        return;
    }
    pthread_rwlock_wrlock(&cl->lock);
    if (kind[0] == 'a')
        mqtt_interest_add(cl->interest, p->id, json_string_value(f),
                          json_string_length(f));
    else
        mqtt_interest_remove(cl->interest, p->id, json_string_value(f),
                             json_string_length(f));
    pthread_rwlock_unlock(&cl->lock);
    p->ver = ver;
    count_remote(cl);
}

static void apply_snapshot(mqtt_cluster *cl, peer *p, uint64_t inc,
                           uint64_t ver, const json_t *j)
{
    json_int_t part = json_integer_value(json_object_get(j, "part"));
    json_int_t parts = json_integer_value(json_object_get(j, "parts"));
    json_t *f = json_object_get(j, "f");
    size_t i;
    json_t *v;

    if (!json_is_array(f) || parts < 1 || part < 0 || part >= parts)
        return;
    if (part == 0) {
        json_decref(p->stage);
        p->stage = json_array();
        p->stage_inc = inc;
        p->stage_ver = ver;
        p->stage_next = 0;
    }
    if (!p->stage || p->stage_inc != inc || p->stage_ver != ver ||
        p->stage_next != (uint32_t)part)
        return; /* a part went missing: the next digest repairs */
    json_array_extend(p->stage, f);
    if (++p->stage_next < (uint32_t)parts)
        return;
    pthread_rwlock_wrlock(&cl->lock);
    mqtt_interest_drop(cl->interest, p->id);
    json_array_foreach(p->stage, i, v) if (json_is_string(v)) mqtt_interest_add(
        cl->interest, p->id, json_string_value(v), json_string_length(v));
    pthread_rwlock_unlock(&cl->lock);
    json_decref(p->stage);
    p->stage = NULL;
    p->inc = inc;
    p->ver = ver;
    count_remote(cl);
}

static void merge_retained(mqtt_cluster *cl, const json_t *j)
{
    json_t *m = json_object_get(j, "m"), *e;
    size_t i;

    if (!json_is_array(m))
        return;
    pthread_rwlock_wrlock(&cl->b->retain_lock);
    json_array_foreach(m, i, e)
    {
        const char *topic, *b64, *origin;
        size_t tlen, blen;
        int qos;
        json_int_t ts;
        uint8_t *data;
        size_t dlen;

        if (json_unpack(e, "[s%, s%, i, I, s]", &topic, &tlen, &b64, &blen,
                        &qos, &ts, &origin) != 0 ||
            !mqtt_topic_name_is_valid(topic, tlen) || topic[0] == '$' ||
            qos < 0 || qos > 2 || ts < 0 || !hm_wire_name_is_valid(origin) ||
            mqtt_cluster_b64_decode(b64, blen, &data, &dlen) != HM_OK)
            continue;
        mqtt_cluster_retain_apply(cl, topic, tlen, data, dlen, (uint8_t)qos,
                                  (uint64_t)ts, origin);
        hm_free(data);
    }
    pthread_rwlock_unlock(&cl->b->retain_lock);
}

static uint64_t parse_u64(const json_t *j)
{
    const char *s = json_string_value(j);

    return s ? strtoull(s, NULL, 16) : 0;
}

static void on_digest(hm_ctx *ctx, mqtt_cluster *cl, peer *p, uint64_t inc,
                      uint64_t ver, const json_t *j)
{
    uint64_t rd = parse_u64(json_object_get(j, "rd")), mine_rd;

    /* Filters: theirs as they say, against what we hold of them. */
    if ((inc != p->inc || ver != p->ver) && inc == p->dig_inc &&
        ver == p->dig_ver && p->inc == p->dig_mine_inc &&
        p->ver == p->dig_mine_ver)
        ask(cl, ctx, p, "req", &p->filters_req_ms);
    p->dig_inc = inc;
    p->dig_ver = ver;
    p->dig_mine_inc = p->inc;
    p->dig_mine_ver = p->ver;
    /* Retained: their digest against ours. */
    pthread_rwlock_rdlock(&cl->b->retain_lock);
    mine_rd = cl->retain_digest;
    pthread_rwlock_unlock(&cl->b->retain_lock);
    if (rd != mine_rd && rd == p->dig_rd && mine_rd == p->dig_mine_rd)
        ask(cl, ctx, p, "rreq", &p->retain_req_ms);
    p->dig_rd = rd;
    p->dig_mine_rd = mine_rd;
}

void mqtt_cluster_on_json(hm_ctx *ctx, mqtt_cluster *cl, const json_t *j)
{
    const char *kind = json_string_value(json_object_get(j, "k"));
    const char *origin = json_string_value(json_object_get(j, "o"));
    json_int_t inc = json_integer_value(json_object_get(j, "i"));
    json_int_t ver = json_integer_value(json_object_get(j, "v"));
    peer *p;

    if (!kind || !origin || !hm_wire_name_is_valid(origin) ||
        strcmp(origin, cl->self) == 0 || inc <= 0 || ver < 0)
        return;
    p = mqtt_cluster_peer_get(cl, origin);
    if (!p->fanout)
        return;
    if (strcmp(kind, "add") == 0 || strcmp(kind, "del") == 0)
        apply_delta(ctx, cl, p, kind, (uint64_t)inc, (uint64_t)ver, j);
    else if (strcmp(kind, "snap") == 0)
        apply_snapshot(cl, p, (uint64_t)inc, (uint64_t)ver, j);
    else if (strcmp(kind, "rsnap") == 0)
        merge_retained(cl, j);
    else if (strcmp(kind, "req") == 0)
        send_filters(cl, ctx, p);
    else if (strcmp(kind, "rreq") == 0)
        send_retained(cl, ctx, p);
    else if (strcmp(kind, "digest") == 0)
        on_digest(ctx, cl, p, (uint64_t)inc, (uint64_t)ver, j);
    else if (strcmp(kind, "sync") == 0 || strcmp(kind, "cut") == 0)
        mqtt_cluster_move_on_json(ctx, cl, p, kind, j);
    if (cl->cut_count > 0) /* its filters may have caught up */
        mqtt_cluster_move_check(ctx, cl);
}

void mqtt_cluster_tick(hm_ctx *ctx, mqtt_cluster *cl)
{
    uint64_t rd;
    char buf[24];

    mqtt_cluster_move_check(ctx, cl);
    pthread_rwlock_rdlock(&cl->b->retain_lock);
    rd = cl->retain_digest;
    pthread_rwlock_unlock(&cl->b->retain_lock);
    snprintf(buf, sizeof buf, "%llx", (unsigned long long)rd);
    for (size_t i = 0; i < cl->peer_count; i++) {
        peer *p = &cl->peers[i];
        json_t *j;

        if (!p->up)
            continue;
        if (!p->greeted) {
            mqtt_cluster_greet(cl, ctx, p);
            continue;
        }
        j = mqtt_cluster_head(cl, "digest");
        json_object_set_new(j, "rd", json_string(buf));
        mqtt_cluster_send_json(ctx, p, j);
    }
}
