/* runtime/directory.c: the address directory: names interned into entries,
 * and the sweeper that deactivates idle receivers and reclaims unused
 * entries.
 *
 * The directory is a hash table split into HM_DIR_SHARDS shards, each with
 * its own mutex and chained buckets, so lookups by name on different shards
 * never contend. Lookups by name are the slow path (hot paths hold an
 * interned handle and never come here).
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
 * holds, so it is unlinked and freed. */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"

#include <string.h>

#define IDLE_EPOCHS 9u
#define INITIAL_BUCKETS 16u

uint32_t hm_dir_hash(const char *name, size_t len)
{
    /* FNV-1a, then a final avalanche so shard and bucket bits both mix. */
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

hm_shard *hm_dir_shard(hm_runtime *rt, uint32_t hash)
{
    return &rt->shards[hash >> 26]; /* top 6 bits: 64 shards */
}

void hm_dir_init(hm_runtime *rt)
{
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        hm_rt_mutex_init(&sh->lock);
        sh->mask = INITIAL_BUCKETS - 1;
        sh->buckets = hm_calloc(INITIAL_BUCKETS, sizeof *sh->buckets);
        sh->count = 0;
    }
}

void hm_dir_fini(hm_runtime *rt)
{
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        for (uint32_t b = 0; b <= sh->mask; b++) {
            hm_addr *e = sh->buckets[b];
            while (e) {
                hm_addr *next = e->chain;
                hm_free(e);
                e = next;
            }
        }
        hm_free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
}

static void grow(hm_shard *sh)
{
    uint32_t nmask = sh->mask * 2 + 1;
    hm_addr **nb = hm_calloc(nmask + 1, sizeof *nb);

    for (uint32_t b = 0; b <= sh->mask; b++) {
        hm_addr *e = sh->buckets[b];
        while (e) {
            hm_addr *next = e->chain;
            e->chain = nb[e->hash & nmask];
            nb[e->hash & nmask] = e;
            e = next;
        }
    }
    hm_free(sh->buckets);
    sh->buckets = nb;
    sh->mask = nmask;
}

hm_addr *hm_dir_get_locked(hm_runtime *rt, hm_shard *sh, const char *name,
                           size_t len, uint32_t hash)
{
    hm_addr *e;

    for (e = sh->buckets[hash & sh->mask]; e; e = e->chain)
        if (e->hash == hash && memcmp(e->name, name, len) == 0 &&
            e->name[len] == '\0')
            return e;
    e = hm_alloc(sizeof *e + len + 1);
    hm_mailbox_init(&e->mb);
    atomic_init(&e->queued, 0);
    atomic_init(&e->refs, 0);
    atomic_init(&e->sflags, 0);
    atomic_init(&e->last_epoch, 0);
    atomic_init(&e->limit, rt->cfg.mailbox_limit);
    atomic_init(&e->hold, HOLD_NONE);
    e->held = NULL;
    e->hash = hash;
    e->handler = NULL;
    e->state = NULL;
    e->hooks = NULL;
    e->pending = NULL;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    if (sh->count >= sh->mask + 1)
        grow(sh);
    e->chain = sh->buckets[hash & sh->mask];
    sh->buckets[hash & sh->mask] = e;
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

/* Visits one shard; returns nothing, frees unreachable entries. */
static void sweep_shard(hm_runtime *rt, hm_shard *sh, uint32_t epoch)
{
    pthread_mutex_lock(&sh->lock);
    for (uint32_t b = 0; b <= sh->mask; b++) {
        hm_addr **link = &sh->buckets[b];
        while (*link) {
            hm_addr *e = *link;
            bool parked = hm_mailbox_is_parked(&e->mb);
            /* relaxed: the acquire in is_parked() orders these reads after
             * the owner's last writes when parked; when not parked the
             * values are only hints. */
            uint32_t fl = atomic_load_explicit(&e->sflags,
                                               memory_order_relaxed);
            uint32_t last = atomic_load_explicit(&e->last_epoch,
                                                 memory_order_relaxed);
            /* acquire: pairs with the release in hm_addr_release(). */
            uint32_t refs = atomic_load_explicit(&e->refs,
                                                 memory_order_acquire);

            if (parked && !(fl & ENT_ACTIVE) && refs == 0) {
                *link = e->chain;
                sh->count--;
                hm_free(e);
                continue;
            }
            if (parked && (fl & ENT_ACTIVE) &&
                !(fl & (ENT_PINNED | ENT_PENDING | ENT_IDLECHK)) &&
                rt->idle_timeout_ms != UINT32_MAX &&
                epoch - last >= IDLE_EPOCHS)
                send_idle_check(rt, e);
            link = &e->chain;
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

uint64_t hm_dir_sweep_step(hm_runtime *rt, uint64_t now_ms)
{
    uint64_t period = rt->sweep_period_ms, target;

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
        for (uint32_t b = 0; b <= sh->mask; b++)
            for (hm_addr *e = sh->buckets[b]; e; e = e->chain)
                fn(rt, e);
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

void hm_runtime_foreach_active(hm_runtime *rt,
                               void (*fn)(void *arg, const char *name),
                               void *arg)
{
    for (uint32_t i = 0; i < HM_DIR_SHARDS; i++) {
        hm_shard *sh = &rt->shards[i];
        pthread_mutex_lock(&sh->lock);
        for (uint32_t b = 0; b <= sh->mask; b++)
            for (hm_addr *e = sh->buckets[b]; e; e = e->chain)
                /* relaxed: a snapshot is all this promises. */
                if ((atomic_load_explicit(&e->sflags, memory_order_relaxed) &
                     ENT_ACTIVE) &&
                    e->name[0] != '$')
                    fn(arg, e->name);
        pthread_mutex_unlock(&sh->lock);
    }
}
