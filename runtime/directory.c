/* runtime/directory.c: the address directory: names interned into entries,
 * and the sweeper that deactivates idle receivers and reclaims unused
 * entries.
 *
 * The directory is a hash table split into HM_DIR_SHARDS shards, each with
 * its own mutex, so lookups by name on different shards never contend.
 * Lookups by name are the slow path (hot paths hold an interned handle and
 * never come here), but creating a million receivers by name is a
 * benchmark target, and there the cost is cache misses and page faults,
 * not instructions (docs/adr/0140). So each shard is an open-addressing
 * table with linear probing whose 64-bit slots hold the entry's address
 * (44 bits: x86-64 and AArch64 user addresses fit in 47, entries are
 * 8-byte aligned) and the low 20 bits of its name's hash: a lookup reads
 * one run of slots, usually within one cache line, and dereferences an
 * entry only when the 20 bits match; growing a shard moves slots without
 * touching a single entry (the home slot is the hash's low bits, which the
 * slot holds for tables up to 2^20 slots; beyond that the name is hashed
 * again). Removal shifts the following run back (no tombstones). Entries
 * come from the runtime's slab (runtime/slab.h): no malloc header, and
 * contiguous, huge-page-backed memory when there are many of them.
 *
 * The sweeper needs no per-message bookkeeping: each delivery stamps the
 * entry with the current sweep epoch (a relaxed store), and a pass every
 * idle_timeout/8 bumps the epoch and visits every entry, one shard at a
 * time spread over the pass, so that the timer thread (which runs it) is
 * never held for a walk of the whole directory. An active, parked,
 * unpinned receiver whose stamp is 9 epochs old has been idle at least the
 * idle timeout (and at most 9/8 of it): the sweeper queues it a system
 * message, and the receiver deactivates itself on its own worker, where no
 * message can race it (docs/adr/0003). An entry with no activation, no
 * references and a parked (so empty) mailbox is unreachable: nobody can
 * push to it without a reference or this shard's lock, which the sweeper
 * holds, so it is removed and freed. The three facts are not read at one
 * instant, though: the last holder of a reference may push (unparking and
 * scheduling the entry) and release between the sweeper's look at the
 * mailbox and its look at `refs`. So the sweeper first claims the parked
 * mailbox as its consumer (no turn can run the entry then), reads `refs`
 * and the flags again, and frees the entry only if it can park the mailbox
 * again, empty (claim_unreachable). */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/arena.h"
#include "runtime/log.h"
#include "runtime/pool.h"
#include "runtime/slab.h"

#include <stdlib.h>
#include <string.h>

#define IDLE_EPOCHS 9u
#define BIG_TABLE ((size_t)64 << 10)
#define INITIAL_SLOTS 16u
#define TAG_BITS 20u
#define TAG_MASK ((1u << TAG_BITS) - 1)
#define ADDR_BITS 44u /* bits 3..46 of an entry's address */

#define FNV_BASIS 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

/* The final avalanche of the name's FNV-1a, so shard and slot bits both
 * mix. */
static inline uint32_t hash_finish(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

uint32_t hm_dir_hash(const char *name, size_t len)
{
    uint64_t h = FNV_BASIS;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= FNV_PRIME;
    }
    return hash_finish(h);
}

bool hm_dir_hash_name(const char *name, size_t *len_out, uint32_t *hash_out)
{
    uint64_t h = FNV_BASIS;
    size_t i = 0;

    if (!name)
        return false;
    /* One pass measures and hashes (a strnlen first cost a call and a
     * second walk on every send by name). */
    for (; name[i] != '\0'; i++) {
        if (i == HM_ADDR_MAX_LEN)
            return false;
        h ^= (unsigned char)name[i];
        h *= FNV_PRIME;
    }
    if (i == 0)
        return false;
    *len_out = i;
    *hash_out = hash_finish(h);
    return true;
}

hm_shard *hm_dir_shard(hm_runtime *rt, uint32_t hash)
{
    return &rt->shards[hash >> 26]; /* top 6 bits: 64 shards */
}

/* ---------------------------------------------------------------- slots */

static uint64_t slot_make(hm_addr *e, uint32_t hash)
{
    uintptr_t p = (uintptr_t)e;

    HM_ASSERT((p & 7u) == 0 && (p >> (ADDR_BITS + 3)) == 0);
    return (uint64_t)(hash & TAG_MASK) << ADDR_BITS | (uint64_t)(p >> 3);
}

static hm_addr *slot_entry(uint64_t s)
{
    return (hm_addr *)(uintptr_t)((s & ((1ull << ADDR_BITS) - 1)) << 3);
}

static uint32_t slot_tag(uint64_t s)
{
    return (uint32_t)(s >> ADDR_BITS);
}

/* The index at which the slot's entry would sit in a table of `mask`. */
static uint32_t slot_home(uint64_t s, uint32_t mask)
{
    hm_addr *e;

    if (mask <= TAG_MASK)
        return slot_tag(s) & mask;
    e = slot_entry(s); /* a table of over a million slots: rehash */
    return hm_dir_hash(e->name, strlen(e->name)) & mask;
}

static size_t entry_len(size_t name_len)
{
    return offsetof(hm_addr, name) + name_len + 1;
}

static void free_entry(hm_shard *sh, hm_addr *e)
{
    hm_slab_cache_free(&sh->cache, e, entry_len(strlen(e->name)));
}

/* A zeroed table of `count` slots. Tables of 64 KiB and more come from the
 * runtime's arena of 2 MiB huge-page chunks (runtime/arena.h): populated
 * once, never unmapped, so a growth costs no page faults, no TLB shootdown
 * for the old table, and the slots of a large directory sit in a few huge
 * pages rather than thousands of 4 KiB ones (docs/adr/0245). */
static uint64_t *table_alloc(hm_runtime *rt, size_t count)
{
    size_t len = count * sizeof(uint64_t);

    if (len < BIG_TABLE)
        return hm_calloc(count, sizeof(uint64_t));
    return hm_arena_alloc(rt->tables, len);
}

static void table_free(hm_runtime *rt, uint64_t *t, size_t count)
{
    size_t len = count * sizeof(uint64_t);

    if (len < BIG_TABLE)
        hm_free(t);
    else
        hm_arena_free(rt->tables, t, len);
}

/* Places `s` in its home run of `slots` (which has room). */
static void place(uint64_t *slots, uint32_t mask, uint64_t s)
{
    uint32_t i = slot_home(s, mask);

    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Doubles the table. Only slots are read, never entries (below 2^20). */
static void grow(hm_runtime *rt, hm_shard *sh)
{
    uint32_t nmask = sh->mask * 2 + 1;
    uint64_t *ns = table_alloc(rt, (size_t)nmask + 1);

    for (uint32_t i = 0; i <= sh->mask; i++)
        if (sh->slots[i])
            place(ns, nmask, sh->slots[i]);
    table_free(rt, sh->slots, (size_t)sh->mask + 1);
    sh->slots = ns;
    sh->mask = nmask;
}

/* Empties slot `i`, shifting back the rest of its run so that every entry
 * stays reachable from its home (linear probing without tombstones). */
static void remove_at(hm_shard *sh, uint32_t i)
{
    uint32_t mask = sh->mask, j = i;

    for (;;) {
        uint64_t s;
        j = (j + 1) & mask;
        if (!(s = sh->slots[j]))
            break;
        /* The entry at j may fill the hole at i unless its home lies
         * cyclically in (i, j]. */
        if (((j - slot_home(s, mask)) & mask) >= ((j - i) & mask)) {
            sh->slots[i] = s;
            i = j;
        }
    }
    sh->slots[i] = 0;
    sh->count--;
}

void hm_dir_init(hm_runtime *rt)
{
    rt->entries = hm_slab_create();
    rt->tables = hm_arena_create();
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        hm_rt_mutex_init(&sh->lock);
        sh->mask = INITIAL_SLOTS - 1;
        sh->slots = table_alloc(rt, INITIAL_SLOTS);
        sh->count = 0;
        memset(&sh->cache, 0, sizeof sh->cache);
    }
}

void hm_dir_fini(hm_runtime *rt)
{
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        for (uint32_t k = 0; k <= sh->mask; k++)
            if (sh->slots[k])
                free_entry(sh, slot_entry(sh->slots[k]));
        table_free(rt, sh->slots, (size_t)sh->mask + 1);
        pthread_mutex_destroy(&sh->lock);
    }
    hm_slab_destroy(rt->entries);
    hm_arena_destroy(rt->tables);
}

hm_addr *hm_dir_get_locked(hm_runtime *rt, hm_shard *sh, const char *name,
                           size_t len, uint32_t hash)
{
    uint32_t tag = hash & TAG_MASK, i = hash & sh->mask;
    uint64_t s;
    hm_addr *e;

    while ((s = sh->slots[i])) {
        if (slot_tag(s) == tag) {
            e = slot_entry(s);
            /* strncmp, not memcmp: the entry's name may be shorter. */
            if (strncmp(e->name, name, len) == 0 && e->name[len] == '\0')
                return e;
        }
        i = (i + 1) & sh->mask;
    }
    e = hm_slab_cache_alloc(rt->entries, &sh->cache, entry_len(len));
    hm_mailbox_init(&e->mb);
    e->handler = NULL;
    e->state = NULL;
    e->hooks = NULL;
    e->pending = NULL;
    atomic_init(&e->queued, 0);
    atomic_init(&e->refs, 0);
    atomic_init(&e->sflags, 0);
    atomic_init(&e->last_epoch, 0);
    atomic_init(&e->limit, rt->cfg.mailbox_limit);
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    /* At most 3/4 full, so probe runs stay short. */
    if ((sh->count + 1) * 4 > (sh->mask + 1) * 3) {
        grow(rt, sh);
        place(sh->slots, sh->mask, slot_make(e, hash));
    } else {
        sh->slots[i] = slot_make(e, hash);
    }
    sh->count++;
    return e;
}

hm_addr *hm_addr_ref(hm_addr *a)
{
    /* relaxed: taking a reference requires already holding one (or the
     * shard lock), so no ordering is needed to keep the entry alive. */
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

void hm_addr_release(hm_addr *a)
{
    if (!a)
        return;
    /* release: pairs with the acquire load in sweep_shard(), so everything
     * this holder did with the entry (pushes) happens before it is
     * reclaimed. */
    atomic_fetch_sub_explicit(&a->refs, 1, memory_order_release);
}

void hm_dir_release_n(hm_addr *a, uint32_t n)
{
    /* release: as in hm_addr_release(), which this is n times over. */
    atomic_fetch_sub_explicit(&a->refs, n, memory_order_release);
}

const char *hm_addr_name(const hm_addr *a)
{
    return a->name;
}

static void send_idle_check(hm_runtime *rt, hm_addr *e)
{
    hm_msg *m = hm_msg_alloc();

    m->type = &hm_type_timeout; /* never seen by a handler */
    m->flags = MSG_SYSTEM;
    m->sys = SYS_IDLE_CHECK;
    /* relaxed: the flag only avoids duplicate checks; the owner clears it
     * with an RMW when it handles the check. */
    atomic_fetch_or_explicit(&e->sflags, ENT_IDLECHK, memory_order_relaxed);
    hm_rt_push(rt, e, m, false);
}

/* Whether `e`, which looked parked, inactive and unreferenced, is
 * unreachable; caller holds e's shard lock. Those looks were not one
 * snapshot: a holder of the last reference may have pushed to the parked
 * mailbox (and scheduled the entry) after the sweeper saw it parked, and
 * released the reference before the sweeper read `refs`; freeing then
 * left a freed entry on a run queue. So the mailbox is claimed first, as
 * by its consumer: from then on no turn runs the entry, nobody can take a
 * new reference (that needs one, or this lock), and a push only queues
 * (it finds the mailbox not parked, so it schedules nothing). `refs` read
 * after the claim is then final once it is 0, and parking the mailbox
 * again succeeds only if nothing was pushed since the claim. True: the
 * mailbox is parked, empty, unreferenced and inactive, and nobody can
 * reach it; the caller frees it. False: it is handed back, parked, or, if
 * a push came after the claim, scheduled as the pusher would have. */
static bool claim_unreachable(hm_runtime *rt, hm_addr *e)
{
    uint32_t refs, fl;

    /* acquire (in claim): pairs with the release CAS of the last park, so
     * the last turn's writes (flags, tail) are visible; fails if a push
     * unparked the mailbox since the sweeper looked. */
    if (!hm_mailbox_claim(&e->mb))
        return false;
    /* acquire: pairs with the release in hm_addr_release() and
     * hm_dir_release_n(), so a holder's push happens before this load and
     * the park below sees it. */
    refs = atomic_load_explicit(&e->refs, memory_order_acquire);
    /* relaxed: no turn can run the entry while we hold the mailbox, and the
     * claim's acquire ordered this after the last turn's writes; only the
     * sweeper itself (IDLECHK) and hm_runtime_wake() (HELD, WOKEN) write the
     * flags now, neither of them ENT_ACTIVE. */
    fl = atomic_load_explicit(&e->sflags, memory_order_relaxed);
    /* The park's release CAS fails if anything was pushed since the
     * claim. */
    if (hm_mailbox_park(&e->mb))
        return refs == 0 && !(fl & ENT_ACTIVE);
    /* A push came while we held the mailbox: its sender found it not
     * parked and scheduled nothing, so we are the one who must (counted
     * in rt->busy, as a waking push would). */
    hm_sched_wake(rt, hm_sched_self(rt), e);
    return false;
}

/* Visits one shard: queues idle checks, frees unreachable entries. */
static void sweep_shard(hm_runtime *rt, hm_shard *sh, uint32_t epoch)
{
    pthread_mutex_lock(&sh->lock);
    for (uint32_t i = 0; i <= sh->mask;) {
        hm_addr *e;
        bool parked;
        uint32_t fl, last, refs;

        if (!sh->slots[i]) {
            i++;
            continue;
        }
        e = slot_entry(sh->slots[i]);
        parked = hm_mailbox_is_parked(&e->mb);
        /* relaxed: hints, all three (with `parked`): the loads are not one
         * snapshot, so claim_unreachable() decides reclamation; the idle
         * check below only queues a message, which is always safe. */
        fl = atomic_load_explicit(&e->sflags, memory_order_relaxed);
        last = atomic_load_explicit(&e->last_epoch, memory_order_relaxed);
        /* relaxed: a filter only; claim_unreachable() reads it again,
         * with acquire, once it holds the mailbox. */
        refs = atomic_load_explicit(&e->refs, memory_order_relaxed);
        if (parked && !(fl & ENT_ACTIVE) && refs == 0 &&
            claim_unreachable(rt, e)) {
            /* The run shifts back into slot i: look at it again. An entry
             * that wraps from the table's start may be visited twice,
             * which is harmless. */
            remove_at(sh, i);
            free_entry(sh, e);
            continue;
        }
        if (parked && (fl & ENT_ACTIVE) &&
            !(fl & (ENT_PINNED | ENT_PENDING | ENT_IDLECHK)) &&
            rt->idle_timeout_ms != UINT32_MAX && epoch - last >= IDLE_EPOCHS)
            send_idle_check(rt, e);
        i++;
    }
    pthread_mutex_unlock(&sh->lock);
}

uint64_t hm_dir_sweep_step(hm_runtime *rt, uint64_t now_ms)
{
    uint64_t period = rt->sweep_period_ms, target;

    /* The message cache's depot keeps what freeing threads give it; its
     * excess goes back to libc here, off the workers (docs/adr/0141). */
    hm_pool_trim();

    if (rt->sweep_cursor == HM_DIR_SHARDS) {
        if (now_ms < rt->pass_start_ms + period)
            return rt->pass_start_ms + period;
        /* A new pass; if we fell a whole pass behind, restart the grid. */
        rt->pass_start_ms += period;
        if (rt->pass_start_ms + period <= now_ms)
            rt->pass_start_ms = now_ms;
        rt->sweep_cursor = 0;
        /* relaxed: the epoch is a coarse clock; deliveries read it
         * relaxed. */
        atomic_fetch_add_explicit(&rt->epoch, 1, memory_order_relaxed);
    }
    target = (now_ms - rt->pass_start_ms) * HM_DIR_SHARDS / period + 1;
    if (target > HM_DIR_SHARDS)
        target = HM_DIR_SHARDS;
    while (rt->sweep_cursor < target)
        sweep_shard(rt, &rt->shards[rt->sweep_cursor++],
                    atomic_load_explicit(&rt->epoch, memory_order_relaxed));
    if (rt->sweep_cursor == HM_DIR_SHARDS)
        return rt->pass_start_ms + period;
    return rt->pass_start_ms +
           (rt->sweep_cursor * period + HM_DIR_SHARDS - 1) / HM_DIR_SHARDS;
}

bool hm_rt_idle_expired(hm_runtime *rt, hm_addr *e)
{
    uint32_t epoch = atomic_load_explicit(&rt->epoch, memory_order_relaxed);
    uint32_t last = atomic_load_explicit(&e->last_epoch, memory_order_relaxed);
    return epoch - last >= IDLE_EPOCHS;
}

void hm_dir_each(hm_runtime *rt, void (*fn)(hm_runtime *, hm_addr *))
{
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        for (uint32_t k = 0; k <= sh->mask; k++)
            if (sh->slots[k])
                fn(rt, slot_entry(sh->slots[k]));
    }
}

uint64_t hm_dir_count(hm_runtime *rt)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        pthread_mutex_lock(&rt->shards[i].lock);
        n += rt->shards[i].count;
        pthread_mutex_unlock(&rt->shards[i].lock);
    }
    return n;
}

void hm_dir_bytes(hm_runtime *rt, uint64_t *entries, uint64_t *tables)
{
    *entries = hm_slab_in_use(rt->entries);
    *tables = 0;
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        size_t len;
        pthread_mutex_lock(&sh->lock);
        *entries += sh->cache.in_use;
        len = ((size_t)sh->mask + 1) * sizeof(uint64_t);
        if (len >= BIG_TABLE)
            *tables += len;
        pthread_mutex_unlock(&sh->lock);
    }
}

void hm_runtime_foreach_active(hm_runtime *rt,
                               void (*fn)(void *arg, const char *name),
                               void *arg)
{
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (uint32_t k = 0; k <= sh->mask; k++) {
            hm_addr *e = sh->slots[k] ? slot_entry(sh->slots[k]) : NULL;
            /* relaxed: a snapshot is all this promises. */
            if (e &&
                (atomic_load_explicit(&e->sflags, memory_order_relaxed) &
                 ENT_ACTIVE) &&
                e->name[0] != '$')
                fn(arg, e->name);
        }
        pthread_mutex_unlock(&sh->lock);
    }
}
