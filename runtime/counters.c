/* runtime/counters.c: the statistics counters of threads that are not
 * workers (rt->ext, read by hm_runtime_stats_get in lifecycle.c).
 *
 * A worker counts in its own hm_worker.st with owner stores. Any other
 * thread that sends into a runtime (a server's own threads, net's I/O
 * threads, the timer thread) counts here: it claims a shard of rt->ext for
 * its lifetime, so a send costs it no locked instruction (ADR 0185). A
 * guest of hm_runtime_send_here counts in its stack worker struct like a
 * worker and adds it here when the call ends, so the hot paths never test
 * for guests. Ownership: a shard i > 0 is written by the one thread that
 * holds bit i of ext_taken; shard 0 by atomic adds from anyone. */
#include "runtime/rt_impl.h"

#include <pthread.h>
#include <stdint.h>

/* Non-worker threads count in rt->ext[]. A thread claims a shard of its
 * own (1 .. HM_EXT_SHARDS-1, the same index in every runtime) on its first
 * count and gives it back when it exits; while it holds it, it alone
 * writes that shard, so it counts with owner stores like a worker, not
 * with an RMW per send (a plain thread sending into the runtime paid a
 * locked instruction per message for it). Threads that find every shard
 * taken, and the timer thread's batch counts, use shard 0 with RMWs. */
static _Atomic uint32_t ext_taken; /* bit i: shard i has an owner */
static pthread_once_t ext_once = PTHREAD_ONCE_INIT;
static pthread_key_t ext_key;
_Thread_local unsigned hm_rt_ext_index; /* 0: none yet or shared */
static _Thread_local bool ext_tried;

static void ext_release(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg - 1;

    /* release: the next owner's claim (acquire) sees this thread's last
     * stores to the shard. */
    atomic_fetch_and_explicit(&ext_taken, ~(1u << i), memory_order_release);
}

static void ext_make_key(void)
{
    pthread_key_create(&ext_key, ext_release);
}

static unsigned ext_claim(void)
{
    /* relaxed: the CAS below decides. */
    uint32_t t = atomic_load_explicit(&ext_taken, memory_order_relaxed);

    ext_tried = true;
    for (;;) {
        uint32_t free_bits = ~t & ~1u & ((1u << HM_EXT_SHARDS) - 1);
        unsigned i;
        if (!free_bits)
            return 0;
        i = (unsigned)__builtin_ctz(free_bits);
        /* acquire: pairs with the release in ext_release(). */
        if (atomic_compare_exchange_weak_explicit(&ext_taken, &t, t | 1u << i,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            pthread_once(&ext_once, ext_make_key);
            pthread_setspecific(ext_key, (void *)(uintptr_t)(i + 1));
            hm_rt_ext_index = i;
            return i;
        }
    }
}

void hm_rt_count_ext_slow(hm_runtime *rt, size_t field, uint64_t n)
{
    unsigned i = hm_rt_ext_index ? hm_rt_ext_index
                 : ext_tried     ? 0
                                 : ext_claim();
    if (i)
        counter_add((_Atomic uint64_t *)((char *)&rt->ext[i] + field), n);
    else
        /* relaxed: a statistic; several threads may add at once. */
        atomic_fetch_add_explicit(
            (_Atomic uint64_t *)((char *)&rt->ext[0] + field), n,
            memory_order_relaxed);
}

void hm_rt_fold_counters(hm_runtime *rt, const hm_counters *c)
{
    static const size_t sums[] = {offsetof(hm_counters, sent),
                                  offsetof(hm_counters, delivered),
                                  offsetof(hm_counters, activations),
                                  offsetof(hm_counters, deactivations),
                                  offsetof(hm_counters, dead_letters),
                                  offsetof(hm_counters, timers_fired),
                                  offsetof(hm_counters, handler_errors)};
    unsigned i;
    uint64_t hwm;

    for (size_t k = 0; k < sizeof sums / sizeof sums[0]; k++) {
        /* relaxed: the guest's struct is this thread's own. */
        uint64_t n = atomic_load_explicit(
            (_Atomic uint64_t *)((char *)c + sums[k]), memory_order_relaxed);
        if (n)
            hm_rt_count_ext(rt, sums[k], n);
    }
    /* relaxed: as above. */
    hwm = atomic_load_explicit(&c->hwm, memory_order_relaxed);
    i = hm_rt_ext_index; /* set by the counts above if the guest ran a turn */
    /* relaxed: a statistic; shard i is this thread's alone. Shard 0 is
     * shared, where a high-water mark is left out rather than raced. */
    if (i && hwm > atomic_load_explicit(&rt->ext[i].hwm, memory_order_relaxed))
        atomic_store_explicit(&rt->ext[i].hwm, hwm, memory_order_relaxed);
}
