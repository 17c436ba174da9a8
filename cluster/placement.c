/* cluster/placement.c: rendezvous hashing.
 *
 * O(members) per lookup: for the tens of members of a full-mesh cluster a
 * loop of a few hashes is cheaper than keeping a ring or a table in sync. */
#include "cluster/placement.h"

#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* MurmurHash3's fmix64: FNV alone mixes the last bytes poorly, and the
 * address is last. */
static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

uint64_t hm_placement_weight(const char *member, const char *addr)
{
    uint64_t h = fnv1a(FNV_OFFSET, member, strlen(member) + 1); /* + NUL */
    return fmix64(fnv1a(h, addr, strlen(addr)));
}

hm_err hm_placement_owner(const char *addr, const hm_placement_set *members,
                          size_t *out)
{
    if (members->count == 0)
        return HM_ENOTFOUND;
    const char *const *names = members->names;
    size_t best = 0;
    uint64_t best_w = hm_placement_weight(names[0], addr);
    for (size_t i = 1; i < members->count; i++) {
        uint64_t w = hm_placement_weight(names[i], addr);
        if (w > best_w || (w == best_w && strcmp(names[i], names[best]) < 0)) {
            best = i;
            best_w = w;
        }
    }
    *out = best;
    return HM_OK;
}

size_t hm_placement_moves(const char *self, const hm_placement_set *members,
                          const hm_placement_set *local, size_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < local->count; i++) {
        size_t owner;
        if (hm_placement_owner(local->names[i], members, &owner) != HM_OK ||
            strcmp(members->names[owner], self) != 0)
            out[n++] = i;
    }
    return n;
}
