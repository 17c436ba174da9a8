/* apps/mqtt/cluster.c: the broker's cluster mode (cluster.h): the node's
 * life cycle, cross-node publishes, the aggregated filters and retained
 * messages, and the fanout receiver ("mqtt/fanout/<node name>").
 *
 * Filters. The subscription tree calls an observer when a filter gains its
 * first subscriber or loses its last (topic.h); the observer, under the
 * tree's write lock, sends the change to the fanout receiver, so its
 * mailbox sees the changes in the tree's order. The fanout keeps this
 * node's distinct filters with a version (one per change) and sends each
 * change as a delta {inc, ver} to every peer it has greeted; a peer applies
 * a delta only if it is the next version, and otherwise asks for a
 * snapshot. Snapshots go to a member when it comes up; a digest every
 * second repairs anything lost (a delta dropped while a link was down).
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
#include "apps/mqtt/cluster.h"

#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/interest.h"
#include "cluster/wire.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define STOP_WAIT_MS 1000u
#define TICK_MS 500u
#define TAG_TICK 1u
#define REQUEST_RETRY_MS 500u
/* A line on a cluster link carries at most HM_NET_MAX_LINE (1 MiB); keep
 * each JSON body well below, counting base64 (4/3) and JSON escapes (up to
 * 6 bytes for a control character in a topic). */
#define MAX_BODY_BYTES (768u * 1024u)
#define PART_BYTES (128u * 1024u)
#define LOCAL_NODE 1u
#define MAX_SYS_MEMBERS 256u /* our own filters' number in `mine` */

/* ------------------------------------------------------------- types */

typedef struct peer {
    char name[HM_NODE_NAME_MAX + 1];
    uint32_t id;     /* its number in `interest` */
    hm_addr *fanout; /* "mqtt/fanout/<name>" */
    bool up;         /* a live member (UP seen, no DEAD/LEFT since) */
    bool greeted;    /* our snapshots were sent since it came up */
    uint64_t inc, ver; /* the version of its filters we hold (0: none) */
    /* A filter snapshot being received, part by part. */
    uint64_t stage_inc, stage_ver;
    uint32_t stage_next;
    json_t *stage; /* array of filter strings, or NULL */
    uint64_t filters_req_ms, retain_req_ms;
    /* The last digest compared: a mismatch seen twice unchanged is a real
     * divergence, not messages in flight. */
    uint64_t dig_inc, dig_ver, dig_mine_inc, dig_mine_ver;
    uint64_t dig_rd, dig_mine_rd;
} peer;

struct mqtt_cluster {
    mqtt_broker *b;
    hm_node *node;
    hm_runtime *rt;
    hm_addr *fanout; /* ours */
    bool stopped;
    uint64_t inc;
    char self[HM_NODE_NAME_MAX + 1];
    char fanout_name[sizeof MQTT_FANOUT_PREFIX + HM_NODE_NAME_MAX];
    /* Shared with publishers: the remote filters and the peers that hold
     * them. Publishers read under the read side; the fanout writes. */
    pthread_rwlock_t lock;
    mqtt_interest *interest; /* guarded by: lock */
    peer *peers;             /* guarded by: lock (the array) */
    size_t peer_count, peer_cap;
    uint32_t next_id; /* fanout only */
    /* Fanout only: this node's distinct filters and their version. */
    mqtt_interest *mine;
    uint64_t ver;
    /* Retained stamps, guarded by the broker's retain_lock. */
    mqtt_retain_store *stamps;
    uint64_t last_ts;
    uint64_t retain_digest;
    /* Counters, relaxed: statistics for $SYS. */
    _Atomic uint64_t pubs_sent;     /* publishes sent to other nodes */
    _Atomic uint64_t pubs_received; /* publishes received from them */
    _Atomic uint64_t too_big;       /* publishes too large to cross */
    _Atomic uint64_t filters_remote;
    _Atomic uint64_t filters_local;
};

/* A publish crossing nodes; the payload of "mqtt.cl.pub". */
typedef struct cl_pub {
    mqtt_pub *pub;  /* one reference; pub->retain is false */
    bool deliver;   /* route into the receiving node's tree */
    bool retain;    /* also a retained set (or clear, if empty) */
    uint64_t ts;    /* retain: the stamp */
    char origin[HM_NODE_NAME_MAX + 1];
} cl_pub;

/* Local only: a filter change from the tree's observer. */
typedef struct cl_filter {
    bool added;
    size_t len;
    char filter[];
} cl_filter;

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

/* ------------------------------------------------------------- base64 */

static json_t *b64_json(const uint8_t *data, size_t len)
{
    char *buf = hm_alloc(4 * ((len + 2) / 3) + 1);
    json_t *j;

    EVP_EncodeBlock((unsigned char *)buf, data, (int)len);
    j = json_string(buf);
    hm_free(buf);
    return j;
}

/* Decodes a base64 string into owned bytes. Errors: HM_EPROTO. */
static hm_err b64_decode(const char *s, size_t slen, uint8_t **out,
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

/* ------------------------------------------------------- mqtt.cl.pub */

static json_t *cl_pub_to_json(const void *payload)
{
    const cl_pub *cp = payload;
    json_t *topic = json_stringn(cp->pub->topic, cp->pub->topic_len);

    if (!topic)
        return NULL;
    return json_pack("{s:s, s:o, s:o, s:i, s:b, s:b, s:I}", "o", cp->origin,
                     "t", topic, "p",
                     b64_json(cp->pub->payload, cp->pub->payload_len), "q",
                     cp->pub->qos, "d", cp->deliver, "r", cp->retain, "ts",
                     (json_int_t)cp->ts);
}

static hm_err cl_pub_from_json(const json_t *j, void **out)
{
    const char *origin, *b64;
    json_t *topic;
    size_t b64_len;
    int qos, deliver, retain;
    json_int_t ts;
    uint8_t *data;
    size_t data_len;
    cl_pub *cp;

    if (json_unpack((json_t *)j, "{s:s, s:o, s:s%, s:i, s:b, s:b, s:I}", "o",
                    &origin, "t", &topic, "p", &b64, &b64_len, "q", &qos, "d",
                    &deliver, "r", &retain, "ts", &ts) != 0 ||
        !json_is_string(topic) || !hm_wire_name_is_valid(origin) || qos < 0 ||
        qos > 2 || ts < 0 ||
        !mqtt_topic_name_is_valid(json_string_value(topic),
                                  json_string_length(topic)) ||
        b64_decode(b64, b64_len, &data, &data_len) != HM_OK)
        return HM_EPROTO;
    cp = hm_calloc(1, sizeof *cp);
    cp->pub = mqtt_pub_create(json_string_value(topic),
                              json_string_length(topic), data, data_len,
                              (uint8_t)qos, false);
    hm_free(data);
    cp->deliver = deliver;
    cp->retain = retain;
    cp->ts = (uint64_t)ts;
    snprintf(cp->origin, sizeof cp->origin, "%s", origin);
    *out = cp;
    return HM_OK;
}

static const hm_type cl_pub_type = {.name = "mqtt.cl.pub",
                                    .free = cl_pub_free,
                                    .to_json = cl_pub_to_json,
                                    .from_json = cl_pub_from_json};
static const hm_type cl_filter_type = {.name = "mqtt.cl.filter",
                                       .free = hm_free};
static const hm_type cl_member_type = {.name = "mqtt.cl.member",
                                       .free = hm_free};

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
static bool retain_apply(mqtt_cluster *cl, const char *topic, size_t len,
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
    m = hm_msg_create(&cl_pub_type, cp, 0);
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
    bool local_only = pub->topic[0] == '$';
    uint64_t ts = 0;

    retain = retain && !b->cfg.retain_unavailable;
    if (retain) {
        pthread_rwlock_wrlock(&b->retain_lock);
        if (local_only) {
            mqtt_retain_set(b->retained, pub->topic, pub->topic_len,
                            pub->payload, pub->payload_len, pub->qos);
        } else {
            ts = wall_us();
            ts = ts > cl->last_ts ? ts : cl->last_ts + 1;
            cl->last_ts = ts;
            retain_apply(cl, pub->topic, pub->topic_len, pub->payload,
                         pub->payload_len, pub->qos, ts, cl->self);
        }
        pthread_rwlock_unlock(&b->retain_lock);
    }
    mqtt_broker_route_local(b, ctx, d, pub);
    if (local_only)
        return;
    if (!fits_a_line(pub)) {
        /* relaxed: a statistic. */
        atomic_fetch_add_explicit(&cl->too_big, 1, memory_order_relaxed);
        HM_LOG_WARN("MQTT-CL-TOO-BIG",
                    "a %zu-byte publish on %s stays on this node",
                    pub->payload_len, pub->topic);
        return;
    }
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

    if (len > 0 && filter[0] == '$' && len >= 4 &&
        memcmp(filter, "$SYS", 4) == 0)
        return; /* $SYS is per node: nothing to learn from elsewhere */
    f = hm_alloc(sizeof *f + len + 1);
    f->added = added;
    f->len = len;
    memcpy(f->filter, filter, len);
    f->filter[len] = '\0';
    m = hm_msg_create(&cl_filter_type, f, 0);
    if (hm_runtime_send(cl->rt, cl->fanout, m) != HM_OK)
        hm_msg_destroy(m);
}

/* ------------------------------------------------------ fanout: send */

static void send_json(hm_ctx *ctx, peer *p, json_t *j)
{
    hm_msg *m;

    if (!j)
        return;
    m = hm_msg_create(&hm_type_json, j, 0);
    if (hm_ctx_send(ctx, p->fanout, m) != HM_OK)
        hm_msg_destroy(m);
}

static json_t *head(mqtt_cluster *cl, const char *kind)
{
    return json_pack("{s:s, s:s, s:I, s:I}", "k", kind, "o", cl->self, "i",
                     (json_int_t)cl->inc, "v", (json_int_t)cl->ver);
}

typedef struct snap_builder {
    json_t *parts;  /* array of arrays */
    json_t *cur;
    size_t bytes;
} snap_builder;

static void snap_add(snap_builder *sb, json_t *item, size_t bytes)
{
    if (!sb->cur || (sb->bytes + bytes > PART_BYTES &&
                     json_array_size(sb->cur) > 0)) {
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

static void send_parts(mqtt_cluster *cl, hm_ctx *ctx, peer *p,
                       const char *kind, const char *field, snap_builder *sb)
{
    size_t n = json_array_size(sb->parts);

    if (n == 0) { /* an empty set is a snapshot too */
        json_array_append_new(sb->parts, json_array());
        n = 1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *j = head(cl, kind);

        json_object_set_new(j, "part", json_integer((json_int_t)i));
        json_object_set_new(j, "parts", json_integer((json_int_t)n));
        json_object_set(j, field, json_array_get(sb->parts, i));
        send_json(ctx, p, j);
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
                       s.cleared ? json_string("")
                                 : b64_json(r.payload, r.payload_len),
                       r.qos, (json_int_t)s.ts, s.origin),
             st->topic_len * 6 + (s.cleared ? 0 : r.payload_len / 3 * 4) +
                 64);
}

static void send_retained(mqtt_cluster *cl, hm_ctx *ctx, peer *p)
{
    retain_walk w = {.cl = cl, .sb = {.parts = json_array()}};

    pthread_rwlock_rdlock(&cl->b->retain_lock);
    mqtt_retain_match(cl->stamps, "#", 1, add_retained, &w);
    pthread_rwlock_unlock(&cl->b->retain_lock);
    send_parts(cl, ctx, p, "rsnap", "m", &w.sb);
}

static void greet(mqtt_cluster *cl, hm_ctx *ctx, peer *p)
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
}

static void ask(mqtt_cluster *cl, hm_ctx *ctx, peer *p, const char *kind,
                uint64_t *last_ms)
{
    uint64_t now = hm_ctx_now_ms(ctx);

    if (*last_ms && now - *last_ms < REQUEST_RETRY_MS)
        return;
    *last_ms = now;
    send_json(ctx, p, head(cl, kind));
}

/* --------------------------------------------------- fanout: peers */

static peer *peer_get(mqtt_cluster *cl, const char *name)
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

static void forget_filters(mqtt_cluster *cl, peer *p)
{
    pthread_rwlock_wrlock(&cl->lock);
    mqtt_interest_drop(cl->interest, p->id);
    pthread_rwlock_unlock(&cl->lock);
    p->inc = p->ver = 0;
    json_decref(p->stage);
    p->stage = NULL;
    count_remote(cl);
}

static void on_member(hm_ctx *ctx, mqtt_cluster *cl, const cl_member *m)
{
    peer *p = peer_get(cl, m->name);

    if (!p->fanout)
        return;
    switch (m->event) {
    case HM_MEMBER_EV_UP:
        pthread_rwlock_wrlock(&cl->lock); /* publishers read `up` */
        p->up = true;
        pthread_rwlock_unlock(&cl->lock);
        p->greeted = false;
        greet(cl, ctx, p);
        break;
    case HM_MEMBER_EV_DEAD:
    case HM_MEMBER_EV_LEFT:
    case HM_MEMBER_EV_REPLACED:
        /* Its subscribers are gone with it: publish nothing its way. */
        pthread_rwlock_wrlock(&cl->lock);
        p->up = false;
        pthread_rwlock_unlock(&cl->lock);
        p->greeted = false;
        forget_filters(cl, p);
        break;
    default: /* SUSPECT, ALIVE: links buffer meanwhile; nothing moves */
        break;
    }
}

/* ---------------------------------------------- fanout: local filters */

static void on_local_filter(hm_ctx *ctx, mqtt_cluster *cl,
                            const cl_filter *f)
{
    bool changed = f->added ? mqtt_interest_add(cl->mine, LOCAL_NODE,
                                                f->filter, f->len)
                            : mqtt_interest_remove(cl->mine, LOCAL_NODE,
                                                   f->filter, f->len);

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
        j = head(cl, f->added ? "add" : "del");
        json_object_set_new(j, "f", json_stringn(f->filter, f->len));
        send_json(ctx, p, j);
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
    json_array_foreach(p->stage, i, v)
        if (json_is_string(v))
            mqtt_interest_add(cl->interest, p->id, json_string_value(v),
                              json_string_length(v));
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
    json_array_foreach(m, i, e) {
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
            b64_decode(b64, blen, &data, &dlen) != HM_OK)
            continue;
        retain_apply(cl, topic, tlen, data, dlen, (uint8_t)qos,
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

static void on_json(hm_ctx *ctx, mqtt_cluster *cl, const json_t *j)
{
    const char *kind = json_string_value(json_object_get(j, "k"));
    const char *origin = json_string_value(json_object_get(j, "o"));
    json_int_t inc = json_integer_value(json_object_get(j, "i"));
    json_int_t ver = json_integer_value(json_object_get(j, "v"));
    peer *p;

    if (!kind || !origin || !hm_wire_name_is_valid(origin) ||
        strcmp(origin, cl->self) == 0 || inc <= 0 || ver < 0)
        return;
    p = peer_get(cl, origin);
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
        pthread_rwlock_wrlock(&b->retain_lock);
        retain_apply(cl, cp->pub->topic, cp->pub->topic_len,
                     cp->pub->payload, cp->pub->payload_len, cp->pub->qos,
                     cp->ts, cp->origin);
        pthread_rwlock_unlock(&b->retain_lock);
    }
    if (cp->deliver) /* here only: never sent on (the one-hop rule) */
        mqtt_broker_route_local(b, ctx, d, cp->pub);
}

static void on_tick(hm_ctx *ctx, mqtt_cluster *cl)
{
    uint64_t rd;
    char buf[24];

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
            greet(cl, ctx, p);
            continue;
        }
        j = head(cl, "digest");
        json_object_set_new(j, "rd", json_string(buf));
        send_json(ctx, p, j);
    }
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

    if (t == &cl_pub_type)
        on_remote_pub(ctx, cl, &st->d, hm_msg_payload(msg));
    else if (t == &hm_type_json)
        on_json(ctx, cl, hm_msg_payload(msg));
    else if (t == &cl_filter_type)
        on_local_filter(ctx, cl, hm_msg_payload(msg));
    else if (t == &cl_member_type)
        on_member(ctx, cl, hm_msg_payload(msg));
    else if (t == &hm_type_tick)
        on_tick(ctx, cl);
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
    err = hm_node_create(&(hm_node_config){.name = cfg->node_name,
                                           .cluster = cfg->cluster_name,
                                           .listen = cfg->cluster_listen,
                                           .seeds = cfg->cluster_join,
                                           .seed_count =
                                               cfg->cluster_join_count,
                                           .secret_file =
                                               cfg->cluster_secret_file,
                                           .factory = factory,
                                           .factory_arg = factory_arg,
                                           /* sessions and connections
                                            * (session_cluster.c) */
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
    snprintf(cl->fanout_name, sizeof cl->fanout_name, MQTT_FANOUT_PREFIX "%s",
             cl->self);
    cl->inc = hm_node_inc(cl->node);
    pthread_rwlock_init(&cl->lock, NULL);
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
    if ((err = hm_runtime_register_type(rt, &cl_pub_type)) != HM_OK ||
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
    /* The addresses died with the runtime (runtime.h). */
    hm_free(cl->peers);
    mqtt_interest_destroy(cl->interest);
    mqtt_interest_destroy(cl->mine);
    mqtt_retain_destroy(cl->stamps);
    pthread_rwlock_destroy(&cl->lock);
    hm_node_destroy(cl->node);
    hm_free(cl);
}
