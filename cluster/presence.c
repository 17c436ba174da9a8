/* cluster/presence.c: per-origin replicas, deltas, snapshots, digests.
 *
 * Each origin's names are a jansson object used as a string set (keys map
 * to json null): jansson is already linked for the wire, its objects are
 * hash tables with owned string keys, and a snapshot then needs no second
 * container. Origins are an array searched linearly; a full-mesh cluster
 * has tens of them at most.
 *
 * Versions: (inc, ver) pairs compare lexicographically. An origin's replica
 * only moves forward: to the next version by a delta, or to any later one by
 * a snapshot. Tombstones (the highest dead incarnation of an origin) stop a
 * delayed message from resurrecting a dead node's names. */
#include "cluster/presence.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <string.h>

typedef struct origin {
    char name[HM_NODE_NAME_MAX + 1];
    uint64_t inc, ver;     /* what we hold; inc 0 = nothing yet */
    uint64_t dead_inc;     /* incarnations up to this one are gone */
    json_t *names;         /* owned: a set, keys -> json null */
    uint64_t requested_ms; /* last snapshot request, for rate limiting */
    bool requested;
    /* A snapshot arriving in parts, applied when its last part is in. */
    json_t *staged; /* owned, or NULL */
    uint64_t staged_inc, staged_ver;
    uint32_t staged_next, staged_parts;
    char staged_from[HM_NODE_NAME_MAX + 1];
} origin;

struct hm_presence {
    hm_presence_config cfg;
    char self_name[HM_NODE_NAME_MAX + 1];
    origin **origins; /* origins[0] is ourselves */
    size_t count, cap;
    char (*peers)[HM_NODE_NAME_MAX + 1]; /* linked peers */
    size_t peer_count, peer_cap;
    uint64_t next_digest_ms;
    hm_presence_action *actions; /* FIFO: [head, head+len) of act_cap */
    size_t head, len, act_cap;
    uint64_t changes; /* name-set changes, what lookups read (see .h) */
};

/* ------------------------------------------------------------ helpers */

static hm_wire_msg *push_msg(hm_presence *p, const char *peer,
                             hm_wire_type type)
{
    if (p->len == p->act_cap) {
        size_t cap = p->act_cap ? 2 * p->act_cap : 16;
        hm_presence_action *a = hm_calloc(cap, sizeof *a);
        for (size_t i = 0; i < p->len; i++)
            a[i] = p->actions[(p->head + i) % p->act_cap];
        hm_free(p->actions);
        p->actions = a;
        p->act_cap = cap;
        p->head = 0;
    }
    hm_presence_action *a = &p->actions[(p->head + p->len++) % p->act_cap];
    memset(a, 0, sizeof *a);
    strcpy(a->peer, peer);
    a->msg.type = type;
    return &a->msg;
}

static origin *find(const hm_presence *p, const char *name)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->origins[i]->name, name) == 0)
            return p->origins[i];
    return NULL;
}

static origin *find_or_add(hm_presence *p, const char *name)
{
    origin *o = find(p, name);
    if (o)
        return o;
    if (p->count == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 8;
        p->origins = hm_realloc(p->origins, p->cap * sizeof *p->origins);
    }
    o = hm_calloc(1, sizeof *o);
    strcpy(o->name, name);
    o->names = json_object();
    p->origins[p->count++] = o;
    return o;
}

static origin *self(const hm_presence *p)
{
    return p->origins[0];
}

static void fill_version(const origin *o, hm_wire_version *at)
{
    strcpy(at->origin, o->name);
    at->inc = o->inc;
    at->version = o->ver;
}

/* Whether (inc, ver) is later than what `o` holds. */
static bool is_newer(const origin *o, uint64_t inc, uint64_t ver)
{
    return inc > o->inc || (inc == o->inc && ver > o->ver);
}

static void drop_staged(origin *o)
{
    json_decref(o->staged);
    o->staged = NULL;
}

static void reset_names(hm_presence *p, origin *o, uint64_t inc)
{
    drop_staged(o);
    if (json_object_size(o->names) > 0)
        p->changes++;
    json_object_clear(o->names);
    o->inc = inc;
    o->ver = 0;
}

/* ---------------------------------------------------------- lifecycle */

hm_err hm_presence_create(const hm_presence_config *cfg, hm_presence **out)
{
    if (!cfg->self_name || !hm_wire_name_is_valid(cfg->self_name) ||
        cfg->self_inc == 0 || cfg->self_inc > HM_WIRE_INT_MAX)
        return HM_EINVAL;
    hm_presence *p = hm_calloc(1, sizeof *p);
    p->cfg = *cfg;
    strcpy(p->self_name, cfg->self_name);
    p->cfg.self_name = p->self_name;
    if (!p->cfg.digest_interval_ms)
        p->cfg.digest_interval_ms = 1000;
    if (!p->cfg.request_retry_ms)
        p->cfg.request_retry_ms = 250;
    origin *me = find_or_add(p, p->self_name);
    me->inc = cfg->self_inc;
    *out = p;
    return HM_OK;
}

void hm_presence_destroy(hm_presence *p)
{
    if (!p)
        return;
    hm_presence_action a;
    while (hm_presence_next_action(p, &a))
        hm_wire_msg_fini(&a.msg);
    for (size_t i = 0; i < p->count; i++) {
        json_decref(p->origins[i]->names);
        json_decref(p->origins[i]->staged);
        hm_free(p->origins[i]);
    }
    hm_free(p->origins);
    hm_free(p->peers);
    hm_free(p->actions);
    hm_free(p);
}

bool hm_presence_next_action(hm_presence *p, hm_presence_action *out)
{
    if (p->len == 0)
        return false;
    *out = p->actions[p->head];
    p->head = (p->head + 1) % p->act_cap;
    p->len--;
    return true;
}

/* --------------------------------------------------------- sending */

/* Our replica of `o` to `peer`, in parts of HM_PRES_SNAPSHOT_CHUNK names so
 * that no line passes net's line limit. Always at least one part, so an
 * empty replica is sent too. */
static void send_snapshot(hm_presence *p, const char *peer, const origin *o)
{
    size_t n = json_object_size(o->names), k = 0;
    size_t parts =
        n ? (n + HM_PRES_SNAPSHOT_CHUNK - 1) / HM_PRES_SNAPSHOT_CHUNK : 1;
    const char **all = hm_calloc(n, sizeof *all);
    const char *key;
    json_t *v;
    json_object_foreach(o->names, key, v)
    {
        all[k++] = key;
    }
    for (size_t part = 0; part < parts; part++) {
        size_t first = part * HM_PRES_SNAPSHOT_CHUNK;
        size_t count = n - first < HM_PRES_SNAPSHOT_CHUNK
                           ? n - first
                           : HM_PRES_SNAPSHOT_CHUNK;
        hm_wire_msg *w = push_msg(p, peer, HM_WIRE_PRES_SNAPSHOT);
        fill_version(o, &w->u.pres_snapshot.at);
        w->u.pres_snapshot.part = (uint32_t)part;
        w->u.pres_snapshot.parts = (uint32_t)parts;
        w->u.pres_snapshot.names = hm_calloc(count, sizeof(char *));
        for (size_t i = 0; i < count; i++)
            w->u.pres_snapshot.names[i] = hm_strdup(all[first + i]);
        w->u.pres_snapshot.count = count;
    }
    hm_free(all);
}

static void send_delta(hm_presence *p, const char *name, bool add)
{
    for (size_t i = 0; i < p->peer_count; i++) {
        hm_wire_msg *w = push_msg(p, p->peers[i], HM_WIRE_PRES_DELTA);
        fill_version(self(p), &w->u.pres_delta.at);
        w->u.pres_delta.add = add;
        w->u.pres_delta.name = hm_strdup(name);
    }
}

/* Ask `peer` for its snapshot of `o`, unless we asked recently. */
static void request_snapshot(hm_presence *p, const char *peer, origin *o,
                             uint64_t now_ms)
{
    if (o->requested && now_ms - o->requested_ms < p->cfg.request_retry_ms)
        return;
    o->requested = true;
    o->requested_ms = now_ms;
    hm_wire_msg *w = push_msg(p, peer, HM_WIRE_PRES_REQUEST);
    strcpy(w->u.pres_request.origin, o->name);
}

static void send_digest(hm_presence *p, const char *peer)
{
    hm_wire_msg *w = push_msg(p, peer, HM_WIRE_PRES_DIGEST);
    hm_wire_version *e = hm_calloc(p->count, sizeof *e);
    size_t n = 0;
    for (size_t i = 0; i < p->count; i++)
        if (p->origins[i]->inc > p->origins[i]->dead_inc)
            fill_version(p->origins[i], &e[n++]);
    w->u.pres_digest.entries = e;
    w->u.pres_digest.count = n;
}

/* ------------------------------------------------ local registrations */

hm_err hm_presence_register(hm_presence *p, const char *name, uint64_t now_ms)
{
    origin *me = self(p);
    size_t len = strlen(name);
    if (len == 0 || len > HM_PRES_NAME_MAX)
        return HM_EINVAL;
    if (json_object_get(me->names, name))
        return HM_EEXIST;
    if (json_object_set_new(me->names, name, json_null()) != 0)
        return HM_EINVAL; /* jansson refuses keys that are not UTF-8 */
    me->ver++;
    p->changes++;
    send_delta(p, name, true);
    return HM_OK;
}

hm_err hm_presence_unregister(hm_presence *p, const char *name, uint64_t now_ms)
{
    origin *me = self(p);
    if (json_object_del(me->names, name) != 0)
        return HM_ENOTFOUND;
    me->ver++;
    p->changes++;
    send_delta(p, name, false);
    return HM_OK;
}

/* ------------------------------------------------------------- inputs */

void hm_presence_on_link_up(hm_presence *p, const char *peer, uint64_t now_ms)
{
    for (size_t i = 0; i < p->peer_count; i++)
        if (strcmp(p->peers[i], peer) == 0)
            goto snapshot;
    if (p->peer_count == p->peer_cap) {
        p->peer_cap = p->peer_cap ? 2 * p->peer_cap : 8;
        p->peers = hm_realloc(p->peers, p->peer_cap * sizeof *p->peers);
    }
    strcpy(p->peers[p->peer_count++], peer);
snapshot:
    send_snapshot(p, peer, self(p));
}

void hm_presence_on_link_down(hm_presence *p, const char *peer)
{
    for (size_t i = 0; i < p->peer_count; i++)
        if (strcmp(p->peers[i], peer) == 0) {
            if (i != --p->peer_count)
                memcpy(p->peers[i], p->peers[p->peer_count],
                       sizeof p->peers[i]);
            return;
        }
}

void hm_presence_on_node_gone(hm_presence *p, const char *name, uint64_t inc)
{
    if (strcmp(name, p->self_name) == 0)
        return;
    origin *o = find_or_add(p, name);
    if (inc > o->dead_inc)
        o->dead_inc = inc;
    if (o->inc <= o->dead_inc) {
        if (json_object_size(o->names) > 0)
            HM_LOG_INFO("CL-PRES-DROP",
                        "%s: dropping %zu names of %s (inc %llu)", p->self_name,
                        json_object_size(o->names), name,
                        (unsigned long long)o->inc);
        reset_names(p, o, 0);
    }
}

void hm_presence_on_node_up(hm_presence *p, const char *name, uint64_t inc)
{
    origin *o = find(p, name);
    if (o && o != self(p) && o->dead_inc >= inc)
        o->dead_inc = inc - 1;
}

/* The origin record a message about `at` may update, or NULL if the
 * message is about ourselves or a dead incarnation. */
static origin *writable(hm_presence *p, const hm_wire_version *at)
{
    if (strcmp(at->origin, p->self_name) == 0)
        return NULL;
    origin *o = find_or_add(p, at->origin);
    return at->inc > o->dead_inc ? o : NULL;
}

static void on_delta(hm_presence *p, const char *from, const hm_wire_msg *w,
                     uint64_t now_ms)
{
    const hm_wire_version *at = &w->u.pres_delta.at;
    origin *o = writable(p, at);
    if (!o || at->inc < o->inc)
        return;
    if (at->inc > o->inc)
        reset_names(p, o, at->inc); /* a new incarnation starts empty */
    if (at->version <= o->ver)
        return; /* already applied */
    if (at->version != o->ver + 1) {
        request_snapshot(p, from, o, now_ms); /* a gap: resynchronise */
        return;
    }
    if (w->u.pres_delta.add)
        json_object_set_new(o->names, w->u.pres_delta.name, json_null());
    else
        json_object_del(o->names, w->u.pres_delta.name);
    o->ver = at->version;
    p->changes++;
}

/* Whether part `w` continues the snapshot staged in `o`. */
static bool continues_staged(const origin *o, const char *from,
                             const hm_wire_msg *w)
{
    const hm_wire_version *at = &w->u.pres_snapshot.at;
    return o->staged && o->staged_inc == at->inc &&
           o->staged_ver == at->version &&
           o->staged_next == w->u.pres_snapshot.part &&
           o->staged_parts == w->u.pres_snapshot.parts &&
           strcmp(o->staged_from, from) == 0;
}

static void on_snapshot(hm_presence *p, const char *from, const hm_wire_msg *w)
{
    const hm_wire_version *at = &w->u.pres_snapshot.at;
    origin *o = writable(p, at);
    if (!o || !is_newer(o, at->inc, at->version))
        return;
    if (w->u.pres_snapshot.part == 0) {
        drop_staged(o);
        o->staged = json_object();
        o->staged_inc = at->inc;
        o->staged_ver = at->version;
        o->staged_next = 0;
        o->staged_parts = w->u.pres_snapshot.parts;
        strcpy(o->staged_from, from);
    } else if (!continues_staged(o, from, w)) {
        drop_staged(o); /* a part went missing: the next digest repairs */
        return;
    }
    for (size_t i = 0; i < w->u.pres_snapshot.count; i++)
        json_object_set_new(o->staged, w->u.pres_snapshot.names[i],
                            json_null());
    if (++o->staged_next < o->staged_parts)
        return;
    /* Complete: it replaces the replica wholesale. */
    json_decref(o->names);
    o->names = o->staged;
    o->staged = NULL;
    o->inc = o->staged_inc;
    o->ver = o->staged_ver;
    o->requested = false;
    p->changes++;
}

static void on_request(hm_presence *p, const char *from, const hm_wire_msg *w)
{
    origin *o = find(p, w->u.pres_request.origin);
    /* Any holder may answer, not only the origin: versions make a relayed
     * snapshot as good as the origin's own. */
    if (o && o->inc > o->dead_inc)
        send_snapshot(p, from, o);
}

static void on_digest(hm_presence *p, const char *from, const hm_wire_msg *w,
                      uint64_t now_ms)
{
    for (size_t i = 0; i < w->u.pres_digest.count; i++) {
        const hm_wire_version *at = &w->u.pres_digest.entries[i];
        origin *o = writable(p, at);
        if (o && is_newer(o, at->inc, at->version))
            request_snapshot(p, from, o, now_ms);
    }
}

hm_err hm_presence_on_message(hm_presence *p, const char *from,
                              const hm_wire_msg *w, uint64_t now_ms)
{
    switch (w->type) {
    case HM_WIRE_PRES_DELTA:
        on_delta(p, from, w, now_ms);
        return HM_OK;
    case HM_WIRE_PRES_SNAPSHOT:
        on_snapshot(p, from, w);
        return HM_OK;
    case HM_WIRE_PRES_REQUEST:
        on_request(p, from, w);
        return HM_OK;
    case HM_WIRE_PRES_DIGEST:
        on_digest(p, from, w, now_ms);
        return HM_OK;
    default:
        return HM_EINVAL;
    }
}

void hm_presence_tick(hm_presence *p, uint64_t now_ms)
{
    if (now_ms < p->next_digest_ms)
        return;
    p->next_digest_ms = now_ms + p->cfg.digest_interval_ms;
    for (size_t i = 0; i < p->peer_count; i++)
        send_digest(p, p->peers[i]);
}

/* ------------------------------------------------------------ queries */

hm_err hm_presence_lookup(const hm_presence *p, const char *name,
                          char *origin_out)
{
    const origin *best = NULL;
    for (size_t i = 0; i < p->count; i++) {
        const origin *o = p->origins[i];
        if (!json_object_get(o->names, name))
            continue;
        if (i == 0) { /* ourselves: a local receiver always wins */
            best = o;
            break;
        }
        if (!best || strcmp(o->name, best->name) < 0)
            best = o;
    }
    if (!best)
        return HM_ENOTFOUND;
    strcpy(origin_out, best->name);
    return HM_OK;
}

uint64_t hm_presence_changes(const hm_presence *p)
{
    return p->changes;
}

size_t hm_presence_count(const hm_presence *p, const char *name)
{
    const origin *o = find(p, name);
    return o ? json_object_size(o->names) : 0;
}

hm_err hm_presence_version(const hm_presence *p, const char *name,
                           uint64_t *inc, uint64_t *version)
{
    const origin *o = find(p, name);
    if (!o || o->inc == 0)
        return HM_ENOTFOUND;
    *inc = o->inc;
    *version = o->ver;
    return HM_OK;
}

void hm_presence_foreach(const hm_presence *p, const char *name,
                         void (*fn)(void *arg, const char *name), void *arg)
{
    const origin *o = find(p, name);
    const char *key;
    json_t *v;
    if (!o)
        return;
    json_object_foreach(o->names, key, v)
    {
        fn(arg, key);
    }
}
