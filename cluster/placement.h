/* cluster/placement.h: which node an unregistered address lives on.
 *
 * A virtual receiver (an MQTT session keyed by its client id) is not
 * registered anywhere: it lives where rendezvous hashing (highest random
 * weight) puts it. Every node computes, for each live member, a weight
 * hash(member, address) and picks the member with the highest one. All
 * nodes with the same member list agree without talking, and when a member
 * joins or leaves only the addresses it wins or held move (about 1/N of
 * them), never the others.
 *
 * Key decision: the hash is FNV-1a 64 over "member NUL address" followed by
 * the MurmurHash3 64-bit finaliser. It is fixed here and must never change
 * between versions that share a cluster, since two nodes hashing differently
 * would each place an address at home and activate it twice. Pure
 * functions; thread-safe. */
#ifndef HM_CLUSTER_PLACEMENT_H
#define HM_CLUSTER_PLACEMENT_H

#include "runtime/err.h"

#include <stddef.h>
#include <stdint.h>

/* The live members to place over: `count` borrowed names, in any order
 * (hm_members_live fills one). */
typedef struct hm_placement_set {
    const char *const *names;
    size_t count;
} hm_placement_set;

/* The weight of `member` for `addr` (both borrowed). */
uint64_t hm_placement_weight(const char *member, const char *addr);

/* The index in `members` (borrowed) of the member that owns `addr`
 * (borrowed). Ties, which need a 64-bit hash collision, go to the smaller
 * name, so the answer never depends on order.
 * Errors: HM_ENOTFOUND if the set is empty. */
hm_err hm_placement_owner(const char *addr, const hm_placement_set *members,
                          size_t *out);

/* After a membership change: which of this node's activations must move.
 * `members` (borrowed) are the live members now, `self` (borrowed) among
 * them; `local` (borrowed) are the addresses activated on `self`. Writes
 * the indices (into `local->names`) of those now owned by another member to
 * `out` (borrowed, room for `local->count`) and returns how many. The
 * caller deactivates them (hm_runtime_deactivate: their hooks run); the
 * next message for each activates it on its owner. */
size_t hm_placement_moves(const char *self, const hm_placement_set *members,
                          const hm_placement_set *local, size_t *out);

#endif
