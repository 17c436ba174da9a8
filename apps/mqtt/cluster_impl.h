/* apps/mqtt/cluster_impl.h: what cluster.c (life cycle, publishing, the
 * fanout receiver) and cluster_sync.c (the filter and retained
 * replication between nodes) share. Private to apps/mqtt/.
 *
 * Ownership: `struct mqtt_cluster` belongs to the broker; `peers`,
 * `interest` and the peers' `up` flags are written by the fanout receiver
 * under `lock` (write side) and read by publishers under its read side;
 * everything else of a peer, `mine` and `ver` are the fanout's alone; the
 * retained stamps go with the broker's retain_lock. */
#ifndef HM_APPS_MQTT_CLUSTER_IMPL_H
#define HM_APPS_MQTT_CLUSTER_IMPL_H

#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/interest.h"
#include "cluster/wire.h"

#include <jansson.h>

#define TICK_MS 500u
#define TAG_TICK 1u
#define REQUEST_RETRY_MS 500u
/* A line on a cluster link carries at most HM_NET_MAX_LINE (1 MiB); keep
 * each JSON body well below, counting base64 (4/3) and JSON escapes (up to
 * 6 bytes for a control character in a topic). */
#define MAX_BODY_BYTES (768u * 1024u)
#define PART_BYTES (128u * 1024u)
#define LOCAL_NODE 1u /* our own filters' number in `mine` */

typedef struct peer {
    char name[HM_NODE_NAME_MAX + 1];
    uint32_t id;       /* its number in `interest` */
    hm_addr *fanout;   /* "mqtt/fanout/<name>" */
    bool up;           /* a live member (UP seen, no DEAD/LEFT since) */
    bool greeted;      /* our snapshots were sent since it came up */
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
    /* Publishes routed here are numbered (mqtt_pub.origin, seq). */
    uint64_t self_hash;
    _Atomic uint64_t next_seq; /* relaxed: numbers need only be unique */
    /* Fanout only: sessions moving away (cluster_move.c), and cuts this
     * node owes an old owner once it has the new owner's filters. */
    struct mv_rec *moves;
    size_t move_count, move_cap;
    struct mv_cut *cuts;
    size_t cut_count, cut_cap;
    struct mv_sync *syncs; /* sent as a new owner, for late greetings */
    size_t sync_count, sync_cap;
    _Atomic uint32_t moves_open; /* relaxed: read by a clean leave */
    /* Client ids whose state a relay here keeps (cluster_move.c). */
    pthread_mutex_t custody_lock;
    char **custody; /* guarded by: custody_lock; owned strings */
    size_t custody_count, custody_cap; /* guarded by: custody_lock */
    /* Counters, relaxed: statistics for $SYS. */
    _Atomic uint64_t pubs_sent;     /* publishes sent to other nodes */
    _Atomic uint64_t pubs_received; /* publishes received from them */
    _Atomic uint64_t too_big;       /* publishes too large to cross */
    _Atomic uint64_t filters_remote; /* filters other nodes hold (a gauge) */
    _Atomic uint64_t filters_local;  /* filters held here (a gauge) */
};

/* A publish crossing nodes; the payload of "mqtt.cl.pub". */
typedef struct cl_pub {
    mqtt_pub *pub; /* one reference; pub->retain is false */
    bool deliver;  /* route into the receiving node's tree */
    bool retain;   /* also a retained set (or clear, if empty) */
    uint64_t ts;   /* retain: the stamp */
    char origin[HM_NODE_NAME_MAX + 1];
} cl_pub;

/* Local only: a filter change from the tree's observer. */
typedef struct cl_filter {
    bool added;
    size_t len;
    char filter[];
} cl_filter;

/* Local only: mqtt_cluster_move_begin()'s and _sync()'s messages. */
extern const hm_type mqtt_mv_begin_type, mqtt_mv_sync_type,
    mqtt_mv_retarget_type;

/* ------------------------------------------------- cluster_move.c */

/* The identity hash of node name `name`. */
uint64_t mqtt_cluster_node_hash(const char *name);
/* The fanout's side of moves; each runs on the fanout receiver. */
void mqtt_cluster_move_on_begin(hm_ctx *ctx, mqtt_cluster *cl, hm_msg *msg);
/* A leaving session's new owner died: its move goes on to another. */
void mqtt_cluster_move_on_retarget(hm_ctx *ctx, mqtt_cluster *cl,
                                   const void *rt);
void mqtt_cluster_move_on_sync_req(hm_ctx *ctx, mqtt_cluster *cl,
                                   const mqtt_move *mv);
/* Peer `p` was just greeted: the syncs it missed. */
void mqtt_cluster_move_on_greet(hm_ctx *ctx, mqtt_cluster *cl, peer *p);
/* "sync" and "cut" from peer `p`. */
void mqtt_cluster_move_on_json(hm_ctx *ctx, mqtt_cluster *cl, peer *p,
                               const char *kind, const json_t *j);
/* Pending cuts and overdue moves; also after filters from a peer change. */
void mqtt_cluster_move_check(hm_ctx *ctx, mqtt_cluster *cl);
void mqtt_cluster_move_fini(mqtt_cluster *cl);
/* cluster_sync.c: the JSON head {"k", "o", "i", "v"} and sending it. */
json_t *mqtt_cluster_head(mqtt_cluster *cl, const char *kind);
void mqtt_cluster_send_json(hm_ctx *ctx, peer *p, json_t *j);

/* ------------------------------------------------- cluster_sync.c */

/* base64 for payloads in JSON: returns a new JSON string; decodes into
 * owned bytes (HM_EPROTO if it is not base64). */
json_t *mqtt_cluster_b64_json(const uint8_t *data, size_t len);
hm_err mqtt_cluster_b64_decode(const char *s, size_t slen, uint8_t **out,
                               size_t *out_len);
/* Applies a retained write (an empty payload clears) stamped (ts, origin)
 * if it is newer than the one held; under the broker's retain_lock, write
 * side. Returns whether it was applied. */
bool mqtt_cluster_retain_apply(mqtt_cluster *cl, const char *topic, size_t len,
                               const uint8_t *payload, size_t plen, uint8_t qos,
                               uint64_t ts, const char *origin);
/* The fanout's side; each runs on the fanout receiver. */
peer *mqtt_cluster_peer_get(mqtt_cluster *cl, const char *name);
void mqtt_cluster_greet(mqtt_cluster *cl, hm_ctx *ctx, peer *p);
void mqtt_cluster_forget_filters(mqtt_cluster *cl, peer *p);
void mqtt_cluster_local_filter(hm_ctx *ctx, mqtt_cluster *cl,
                               const cl_filter *f);
void mqtt_cluster_on_json(hm_ctx *ctx, mqtt_cluster *cl, const json_t *j);
void mqtt_cluster_tick(hm_ctx *ctx, mqtt_cluster *cl);

#endif
