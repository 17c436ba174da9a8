/* cluster/route.h: where a send goes, and the one-hop rule.
 *
 * A send to an address is resolved in this order, the same on every node:
 *   1. a receiver with that address lives here (registered or active):
 *      deliver it here;
 *   2. presence knows the name on a node: that node;
 *   3. otherwise it is a virtual receiver: the node placement chooses over
 *      the live members (here included, in which case it is activated
 *      here).
 * A message that came *from another node* is delivered here or not at all:
 * it is never sent on (NATS's one-hop rule), so there are no forwarding
 * loops and no duplicates even while two nodes briefly disagree about
 * membership. Pure functions over a view the driver builds; thread-safe
 * if the view's parts are. */
#ifndef HM_CLUSTER_ROUTE_H
#define HM_CLUSTER_ROUTE_H

#include "cluster/placement.h"
#include "cluster/presence.h"
#include "cluster/wire.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>

/* Whether a receiver with address `addr` (borrowed) lives on this node. */
typedef bool (*hm_route_is_local_fn)(void *arg, const char *addr);

/* What routing looks at; every pointer borrowed for the call. */
typedef struct hm_route_view {
    const char *self;              /* this node's name */
    const hm_presence *presence;   /* the name registry (may be NULL) */
    hm_placement_set members;      /* live members, self included */
    hm_route_is_local_fn is_local; /* may be NULL: nothing is local */
    void *arg;                     /* for is_local */
} hm_route_view;

typedef enum {
    HM_ROUTE_LOCAL,  /* deliver here (activating the receiver if needed) */
    HM_ROUTE_REMOTE, /* send on the link to `node` */
} hm_route_kind;

typedef struct hm_route {
    hm_route_kind kind;
    char node[HM_NODE_NAME_MAX + 1]; /* REMOTE: the node to send to */
} hm_route;

/* Resolve `addr` (borrowed) for a send that starts on this node, into
 * `*out`. Never fails: with no other live member everything is local. */
void hm_route_resolve(const hm_route_view *v, const char *addr, hm_route *out);

/* For a message to `addr` (borrowed) that arrived from another node:
 * HM_OK to deliver it here; HM_ENOTFOUND if it belongs elsewhere now (a
 * name registered on another node, or an address placed on another
 * member). It is then undeliverable: count it, answer a request with an
 * error, and never forward it. */
hm_err hm_route_inbound(const hm_route_view *v, const char *addr);

#endif
