/* runtime/pool.c: per-thread caches and a depot of batches (see pool.h).
 *
 * A thread allocates from its own list; when it is empty it takes the batch
 * it held back, else one batch from the depot (or mallocs a fresh batch). A
 * thread frees into its own list; when that list is a whole batch it is held
 * back and the batch held before goes to the depot. The depot is
 * one mutex-guarded stack of batches, touched once per HM_POOL_BATCH
 * objects. Giving a batch never frees anything: a receiver draining
 * millions of messages from other threads (fan-in) would otherwise pay
 * libc's free() for each one on the one thread that limits throughput.
 * Instead hm_pool_trim(), called by each runtime's sweeper on its timer
 * thread, returns what lies beyond DEPOT_MAX batches to libc
 * (docs/adr/0141). A thread's list returns to the depot when the thread
 * exits.
 *
 * The depot is process-wide state, like malloc's own arenas: messages are
 * created without naming a runtime (hm_msg_create), so their allocator
 * cannot belong to one (docs/adr/0005). */
#include "runtime/pool.h"

#include "runtime/alloc.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define DEPOT_MAX 4096u

typedef struct pool_obj {
    struct pool_obj *next;       /* within a list or batch */
    struct pool_obj *next_batch; /* first object of a batch, in the depot */
    uint32_t batch_count;        /* first object of a batch: its length */
} pool_obj;

typedef struct pool_cache {
    pool_obj *cur;     /* objects to hand out, a partial batch */
    uint32_t cur_count;
    pool_obj *full;    /* a whole batch held back, or NULL */
    int registered;
} pool_cache;

static struct {
    pthread_mutex_t lock;
    pool_obj *batches; /* guarded by: lock */
    uint32_t count;    /* guarded by: lock */
} depot = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;
static _Thread_local pool_cache tl_cache;

static void free_batch(pool_obj *b)
{
    while (b) {
        pool_obj *next = b->next;
        free(b);
        b = next;
    }
}

/* Gives a batch of `n` objects (a list) to the depot. */
static void give_batch(pool_obj *first, uint32_t n)
{
    if (!first)
        return;
    pthread_mutex_lock(&depot.lock);
    first->batch_count = n;
    first->next_batch = depot.batches;
    depot.batches = first;
    depot.count++;
    pthread_mutex_unlock(&depot.lock);
}

void hm_pool_trim(void)
{
    pool_obj *excess = NULL, *b;

    pthread_mutex_lock(&depot.lock);
    /* The most recently given batches (the top of the stack) go: the
     * ones below stay, and no batch is walked that is not freed. */
    while (depot.count > DEPOT_MAX) {
        b = depot.batches;
        depot.batches = b->next_batch;
        depot.count--;
        b->next_batch = excess;
        excess = b;
    }
    pthread_mutex_unlock(&depot.lock);
    while (excess) {
        b = excess;
        excess = b->next_batch;
        free_batch(b);
    }
}

size_t hm_pool_depot_batches(void)
{
    size_t n;

    pthread_mutex_lock(&depot.lock);
    n = depot.count;
    pthread_mutex_unlock(&depot.lock);
    return n;
}

static void flush_on_exit(void *arg)
{
    pool_cache *c = arg;

    give_batch(c->cur, c->cur_count);
    give_batch(c->full, HM_POOL_BATCH);
    c->cur = c->full = NULL;
    c->cur_count = 0;
}

static void make_key(void)
{
    pthread_key_create(&cache_key, flush_on_exit);
}

static pool_cache *cache(void)
{
    pool_cache *c = &tl_cache;

    if (!c->registered) {
        pthread_once(&key_once, make_key);
        pthread_setspecific(cache_key, c);
        c->registered = 1;
    }
    return c;
}

/* `cur` is empty: take the held-back batch, a depot batch, or fresh
 * memory. */
static void refill(pool_cache *c)
{
    pool_obj *b;

    if (c->full) {
        c->cur = c->full;
        c->cur_count = HM_POOL_BATCH;
        c->full = NULL;
        return;
    }
    pthread_mutex_lock(&depot.lock);
    b = depot.batches;
    if (b) {
        depot.batches = b->next_batch;
        depot.count--;
    }
    pthread_mutex_unlock(&depot.lock);
    if (b) {
        c->cur = b;
        c->cur_count = b->batch_count;
        return;
    }
    for (uint32_t i = 0; i < HM_POOL_BATCH; i++) {
        pool_obj *o = hm_alloc(HM_POOL_OBJ_LEN);
        o->next = c->cur;
        c->cur = o;
    }
    c->cur_count = HM_POOL_BATCH;
}

void *hm_pool_alloc_cached(void)
{
    pool_cache *c = cache();
    pool_obj *o;

    if (!c->cur)
        refill(c);
    o = c->cur;
    c->cur = o->next;
    c->cur_count--;
    return o;
}

void hm_pool_free_cached(void *p)
{
    pool_cache *c;
    pool_obj *o = p;

    if (!p)
        return;
    c = cache();
    if (c->cur_count == HM_POOL_BATCH) {
        /* `cur` is a whole batch: hold it back, giving the one held before
         * to the depot, and start a new list. No list is ever walked. */
        give_batch(c->full, HM_POOL_BATCH);
        c->full = c->cur;
        c->cur = NULL;
        c->cur_count = 0;
    }
    o->next = c->cur;
    c->cur = o;
    c->cur_count++;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
void *hm_pool_alloc(void)
{
    return hm_alloc(HM_POOL_OBJ_LEN);
}

void hm_pool_free(void *p)
{
    hm_free(p);
}
#else
void *hm_pool_alloc(void)
{
    return hm_pool_alloc_cached();
}

void hm_pool_free(void *p)
{
    hm_pool_free_cached(p);
}
#endif
