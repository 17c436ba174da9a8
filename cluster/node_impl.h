/* cluster/node_impl.h: the layout shared by node.c, node_recv.c, link.c,
 * peer.c and proxy.c. No file outside cluster/ may include it (STYLE 2).
 *
 * Who touches what: the fields under "immutable" are written before
 * hm_node_start() returns and only read afterwards; those under "node
 * receiver" belong to the "cluster/node" receiver alone (one thread at a
 * time, no lock); those "guarded by: lock" are shared with the factory,
 * proxies and API callers on any thread (ADR 0060). */
#ifndef HM_CLUSTER_NODE_IMPL_H
#define HM_CLUSTER_NODE_IMPL_H

#include "cluster/auth.h"
#include "cluster/members.h"
#include "cluster/node.h"
#include "cluster/presence.h"
#include "cluster/wire.h"
#include "net/conn.h"
#include "net/hp.h"

#include <pthread.h>
#include <stdatomic.h>

#define CL_NAME_CAP (HM_NODE_NAME_MAX + 1)
#define CL_ADDR_CAP (HM_NODE_ADDR_MAX + 1)
#define CL_NODE_ADDR "cluster/node"
#define CL_LINK_PREFIX "cluster/link/"
#define CL_PEER_PREFIX "cluster/peer/"
#define CL_PROXY_MAILBOX 1024 /* a proxy's mailbox bound: then HM_EFULL */

/* The outbound half of one member: its "cluster/peer/<name>" receiver's
 * state. Allocated by the node receiver on the member's first link and
 * kept until hm_node_destroy() (the receiver is pinned); the atomics are
 * read by the snapshot. */
typedef struct cl_peer cl_peer;

/* What the node receiver knows of one member's current link. */
typedef struct cl_slot {
    char name[CL_NAME_CAP];
    uint64_t inc;       /* of the authenticated link */
    hm_conn *conn;      /* owned reference; NULL: no link */
    hm_addr *link;      /* owned: the link receiver of `conn` */
    bool dialled;       /* we dialled `conn` */
    cl_peer *peer;      /* borrowed from the node's peer list */
    hm_addr *peer_addr; /* owned: "cluster/peer/<name>" */
} cl_slot;

struct hm_node {
    /* immutable */
    char name[CL_NAME_CAP];
    char cluster[CL_NAME_CAP];
    char listen_host[CL_ADDR_CAP];
    int listen_port;
    char addr[CL_ADDR_CAP]; /* advertised */
    uint64_t inc;
    char **seeds;
    size_t seed_count;
    hm_auth_secret *secret;
    hm_members_config timers;
    uint32_t tick_ms, buffer_limit, request_timeout_ms;
    hm_factory_fn factory;
    void *factory_arg;
    hm_node_placed_fn placed;
    void *placed_arg;
    hm_node_home_fn home;
    void *home_arg;
    hm_node_event_fn on_event;
    void *event_arg;
    hm_runtime *rt;
    hm_net *net;
    hm_listener *listener;
    hm_addr *node_addr; /* owned: "cluster/node" */
    hm_timer_id tick;
    hm_framer lines;        /* cl_lines_framer_init: every link's framer */
    hm_conn_options link_opt; /* every link's connection options */

    /* release/acquire: set by hm_node_start() after everything above. */
    _Atomic bool started;
    /* acq_rel exchange in hm_node_stop() (one caller stops), release in a
     * failed start; acquire loads in the senders and accept. */
    _Atomic bool stopped;
    /* relaxed counters and id sources */
    _Atomic uint64_t next_req;  /* link-level request ids */
    _Atomic uint64_t next_dial; /* dialler receiver names */
    _Atomic uint64_t st_sent, st_received, st_undeliverable, st_refused,
        st_links_up;
    /* release/acquire: bumped by cl_unlock() when what routing reads
     * under the lock (the live list, presence's names) changed, so a
     * proxy resolves its name again only then: an idle tick or a
     * hm_node_members() call leaves it as it is. */
    _Atomic uint64_t route_epoch;

    /* node receiver */
    hm_members *members;
    cl_slot *slots;
    size_t slot_count, slot_cap;
    char (*dialing)[CL_ADDR_CAP]; /* addresses with a dial in progress */
    size_t dialing_count, dialing_cap;
    bool leaving;

    pthread_mutex_t lock;
    hm_presence *pres;        /* guarded by: lock (written by the node
                                 receiver only) */
    char (*live)[CL_NAME_CAP]; /* guarded by: lock; self included */
    size_t live_count;         /* guarded by: lock */
    bool live_changed;         /* guarded by: lock; cl_unlock() clears */
    uint64_t pres_seen;        /* guarded by: lock; the presence change
                                  count route_epoch last covered */
    hm_node_member *snap;      /* guarded by: lock */
    size_t snap_count;         /* guarded by: lock */
    cl_peer **peers;           /* guarded by: lock; owned */
    size_t peer_count, peer_cap; /* guarded by: lock */
};

/* ------------------------------------------- messages between receivers */

/* One control event for the node or a peer receiver. Every pointer field is
 * owned by the event (freed with it). */
typedef struct cl_ev {
    char peer[CL_NAME_CAP];
    char addr[CL_ADDR_CAP];
    uint64_t inc;   /* incarnation */
    uint64_t id;    /* inbound cl.msg: the link-level request id (0: none) */
    hm_err err;     /* inbound cl.msg: why `msg` could not be decoded */
    bool flag;      /* link_up: we dialled; dial_failed: refused;
                       inbound cl.msg: it is a reply */
    hm_conn *conn;  /* a reference */
    hm_addr *link;  /* a reference */
    hm_msg *msg;    /* inbound cl.msg: the decoded message */
    char *str;      /* a presence name; link_up: the address dialled;
                       inbound cl.msg: the target address */
    bool has_wire;
    hm_wire_msg wire;
} cl_ev;

extern const hm_type cl_link_up_type;     /* link -> node */
extern const hm_type cl_link_down_type;   /* link -> node */
extern const hm_type cl_dial_failed_type; /* link -> node */
extern const hm_type cl_ctl_type;         /* link -> node: a cl.* line */
extern const hm_type cl_heard_type;       /* link -> node */
extern const hm_type cl_register_type;    /* API -> node */
extern const hm_type cl_unregister_type;  /* API -> node */
extern const hm_type cl_leave_type;       /* API -> node (a request) */
extern const hm_type cl_peer_up_type;     /* node -> peer */
extern const hm_type cl_peer_down_type;   /* node -> peer */
extern const hm_type cl_peer_gone_type;   /* node -> peer */
extern const hm_type cl_in_batch_type;    /* link -> peer: cl.msg, cl.ack */
extern const hm_type cl_flush_type;       /* peer -> itself: write now */

/* Returns owned: a zeroed event of `type`. */
hm_msg *cl_ev_msg(const hm_type *type, cl_ev **ev_out);

/* One cl.msg or cl.ack line, decoded by a link receiver for its member's
 * peer receiver. Pointers are owned. */
typedef struct cl_in {
    bool ack;       /* a cl.ack: only `seq` */
    bool reply;     /* it answers our request `id` */
    uint64_t seq;
    uint64_t id;    /* the link-level request id (0: none) */
    hm_err err;     /* why `msg` could not be decoded */
    hm_msg *msg;    /* the decoded message */
    hm_addr *to;    /* a reference: the target (NULL: none) */
    hm_addr *from;  /* a reference: the original sender (NULL: none) */
} cl_in;

/* Every routed line of one frame (one read), in order, for one peer. */
typedef struct cl_in_batch {
    uint64_t inc; /* the sender's incarnation */
    size_t count, cap;
    cl_in *items; /* owned */
} cl_in_batch;

/* A message for a peer, encoded by a proxy as one HP "msg" object (the
 * inner message of a cl.msg). */
typedef struct cl_out {
    const char *line; /* borrowed (cl_peer_queue copies it), no newline */
    size_t len;
    uint64_t req; /* link-level request id; 0: not a request */
    hm_msg *request; /* owned: the moved request the reply answers */
} cl_out;

/* ---------------------------------------------------------- shared code */

/* Encodes an application message as an HP "msg" line: `m` borrowed, `to`,
 * `from` borrowed (from may be NULL), `id` the link-level request id (0:
 * none), `reply` whether it answers request `id`. Returns owned memory in
 * *line_out. Errors: HM_ECODEC, HM_EINVAL, HM_ETOOBIG. */
hm_err cl_encode_app(const hm_msg *m, const char *to, const char *from,
                     uint64_t id, bool reply, char **line_out,
                     size_t *len_out);

/* Encodes a cluster message as an HP "msg" line whose body type is the
 * wire type name and whose data is the wire object. */
hm_err cl_encode_wire(const hm_wire_msg *w, char **line_out,
                      size_t *len_out);

/* The receivers. */
hm_err cl_node_handle(hm_ctx *ctx, void *state, hm_msg *msg);
hm_err cl_link_handle(hm_ctx *ctx, void *state, hm_msg *msg);
hm_err cl_peer_handle(hm_ctx *ctx, void *state, hm_msg *msg);
extern const hm_hooks cl_link_hooks;
extern const hm_hooks cl_peer_hooks;

/* Link receivers: the state of a new one, for a connection we accept
 * (`dial_target` NULL) or dial (`dial_target` the member's name, "" for a
 * seed, and `dial_addr` the address dialled; both borrowed). Returns owned
 * (the activation takes it). */
void *cl_link_state_create(hm_node *n, const char *dial_target,
                           const char *dial_addr);

/* Peer receivers: a new peer named `name` (borrowed). Returns owned. */
cl_peer *cl_peer_create(hm_node *n, const char *name);
/* The peer named `name` (borrowed), created and spawned on first use
 * (owned by the node's list). Writes an owned reference to its receiver's
 * address to `*addr_out`. NULL if the runtime is closing. Thread-safe. */
cl_peer *cl_peer_ensure(hm_node *n, const char *name, hm_addr **addr_out);
void cl_peer_destroy(cl_peer *p);
/* Queues a proxy's encoded message `o` (its line copied, its request
 * taken; `*o` is zeroed) for the peer receiver, which numbers and writes it; called on
 * the proxy's worker (`ctx`). Thread-safe. */
hm_err cl_peer_queue(hm_ctx *ctx, cl_peer *p, cl_out *o);
/* Backpressure: true if the peer holds its bound (buffer_limit messages
 * or 8 MiB, queued and unacknowledged); the proxy running `ctx` is then
 * registered to be woken (hm_runtime_wake) when there is room again, and
 * should hold its message (hm_ctx_hold). Thread-safe. */
bool cl_peer_full(hm_ctx *ctx, cl_peer *p);
uint32_t cl_peer_buffered(const cl_peer *p);
uint64_t cl_peer_undeliverable(const cl_peer *p);

/* Routing: where `name` lives. Writes the member's name to `node_out` and
 * returns true if it is another node; false if it is here (or nowhere). */
bool cl_route(hm_node *n, const char *name, char *node_out);

/* The proxy's receiver for `name` routed to `peer`. */
hm_err cl_proxy_make(hm_node *n, const char *name, const char *peer,
                     hm_receiver *out);

/* Releases n->lock after a call that may have changed what routing reads
 * under it: bumps route_epoch if the live list changed (live_changed) or
 * presence's names did (hm_presence_changes()); else only unlocks. */
static inline void cl_unlock(hm_node *n)
{
    uint64_t pres = n->pres ? hm_presence_changes(n->pres) : 0;

    if (n->live_changed || pres != n->pres_seen) {
        n->live_changed = false;
        n->pres_seen = pres;
        /* release: a proxy that acquires the new epoch resolves again and
         * sees the change (it takes the lock to resolve anyway). */
        atomic_fetch_add_explicit(&n->route_epoch, 1, memory_order_release);
    }
    pthread_mutex_unlock(&n->lock);
}

/* TCP_USER_TIMEOUT for links, from the failure detector's timers. */
uint32_t cl_user_timeout_ms(const hm_node *n);

/* True if `a` (may be NULL) is one of the cluster's receivers: a message
 * from it came from another node. */
bool cl_is_link_addr(const hm_addr *a);

#endif
