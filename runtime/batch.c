/* runtime/batch.c: fired timers' messages pushed to a receiver as one
 * mailbox node, and the arrays that carry them, recycled.
 *
 * A batch is the messages fired for one receiver in one pass of the timer
 * thread, pushed as one node: a system message (SYS_BATCH) whose payload
 * is an hm_batch. The timer thread never writes into the messages
 * themselves, and the turn that unpacks them fetches them all at once, so
 * the receiving worker takes no cache miss per message (docs/adr/0180).
 *
 * The arrays are recycled (docs/adr/0280): the worker that unpacks a batch
 * pushes its array onto the runtime's spare stack (a Treiber stack, one
 * CAS), and the firing thread takes the whole stack at once (one exchange)
 * into a private list that it uses up before it looks again. Taking the
 * whole stack is free of ABA whatever the number of takers, and a pusher's
 * CAS only ever compares the head it read. A malloc per batch on the timer
 * thread, freed on a worker, made glibc's arena of the timer thread grow
 * and shrink (page faults, `mprotect`) and its lock contended; the stack
 * keeps at most BATCH_SPARE_MAX arrays, beyond which they go back to
 * malloc. */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"

#include <string.h>

#define BATCH_SPARE_MAX 256u /* arrays kept for reuse (128 KiB) */

struct hm_batch {
    struct hm_batch *next; /* on the spare stack or a private list */
    uint32_t n;
    hm_msg *items[HM_RT_BATCH_MAX];
};

/* Only if a batch is destroyed unopened (never on the normal paths). */
static void batch_free(void *payload)
{
    hm_batch *b = payload;

    for (uint32_t i = 0; i < b->n; i++)
        hm_msg_destroy(b->items[i]);
    hm_free(b);
}

const hm_type hm_rt_batch_type = {.name = "hm.batch", .free = batch_free};

/* An array from the caller's private list, refilled from the spare stack,
 * or a new one. */
static hm_batch *batch_get(hm_runtime *rt, hm_batch **cache)
{
    hm_batch *b = *cache;

    if (!b)
        /* acquire: pairs with the release CAS of each push (a CAS extends
         * the release sequence of the pushes before it), so the pushers'
         * links and their reads of the arrays come before our use. */
        b = atomic_exchange_explicit(&rt->batch_spare, NULL,
                                     memory_order_acquire);
    if (!b)
        return hm_alloc(sizeof *b);
    *cache = b->next;
    /* relaxed: a bound on the arrays kept, not a synchronisation. */
    atomic_fetch_sub_explicit(&rt->batch_nspare, 1, memory_order_relaxed);
    return b;
}

/* Gives an emptied array back to the spare stack (any thread). */
static void batch_put(hm_runtime *rt, hm_batch *b)
{
    /* relaxed: as in batch_get(); a race may keep a few more. */
    if (atomic_load_explicit(&rt->batch_nspare, memory_order_relaxed) >=
        BATCH_SPARE_MAX) {
        hm_free(b);
        return;
    }
    atomic_fetch_add_explicit(&rt->batch_nspare, 1, memory_order_relaxed);
    /* relaxed: a first guess, checked by the CAS. */
    b->next = atomic_load_explicit(&rt->batch_spare, memory_order_relaxed);
    /* release: publishes b->next and orders our reads of b before the
     * taker's reuse of it; on failure b->next is reloaded. */
    while (!atomic_compare_exchange_weak_explicit(&rt->batch_spare, &b->next,
                                                  b, memory_order_release,
                                                  memory_order_relaxed))
        ;
}

void hm_rt_batch_cache_drop(hm_runtime *rt, hm_batch **cache)
{
    while (*cache) {
        hm_batch *b = *cache;
        *cache = b->next;
        /* relaxed: as in batch_get(). */
        atomic_fetch_sub_explicit(&rt->batch_nspare, 1, memory_order_relaxed);
        hm_free(b);
    }
}

void hm_rt_batch_spares_fini(hm_runtime *rt)
{
    /* relaxed: every thread that pushed has been joined. */
    hm_batch *list = atomic_exchange_explicit(&rt->batch_spare, NULL,
                                              memory_order_relaxed);

    hm_rt_batch_cache_drop(rt, &list);
}

void hm_rt_push_batch(hm_runtime *rt, hm_addr *e, hm_msg *const *ms,
                      uint32_t n, hm_batch **cache)
{
    hm_batch *b;
    hm_msg *m;

    HM_ASSERT(n <= HM_RT_BATCH_MAX);
    if (n == 1) {
        hm_rt_push(rt, e, ms[0], false);
        return;
    }
    b = batch_get(rt, cache);
    b->n = n;
    memcpy(b->items, ms, n * sizeof b->items[0]);
    m = hm_msg_create(&hm_rt_batch_type, b, 0);
    m->flags = MSG_SYSTEM;
    m->sys = SYS_BATCH;
    /* relaxed: as in hm_rt_push(); `queued` counts the messages, not the
     * node, and the turn subtracts each one it handles. */
    atomic_fetch_add_explicit(&e->queued, n, memory_order_relaxed);
    if (hm_mailbox_push(&e->mb, &m->node)) {
        /* seq_cst: counted before the receiver can run and park. */
        atomic_fetch_add(&rt->busy, 1);
        hm_sched_schedule(rt, e);
    }
}

void hm_rt_unbatch_open(hm_runtime *rt, hm_node **tail, hm_msg *m)
{
    hm_batch *b = m->payload;

    /* Fetch every message now: they come from the arming threads' caches
     * (or memory), and the pops that follow would otherwise miss one at a
     * time. (A loop of prefetches is kept: it is not a call.) */
    for (uint32_t i = 0; i < b->n; i++)
        /* One line: a message is a 64-byte, 64-aligned slot of the pool's
         * chunks (ADR 0185; sanitizer builds use malloc, unprefetched). */
        __builtin_prefetch(b->items[i], 1);
    for (uint32_t i = b->n; i-- > 0;)
        hm_mailbox_unpop_at(tail, &b->items[i]->node);
    m->payload = NULL;
    batch_put(rt, b);
    hm_msg_destroy(m);
}
