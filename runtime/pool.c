/* runtime/pool.c: per-thread caches and a depot of batches (see pool.h).
 *
 * A thread allocates from its own list; when it is empty it takes one batch
 * from the depot (or mallocs a fresh batch). A thread frees into its own
 * list; when that holds two batches it gives one to the depot. The depot is
 * one mutex-guarded stack of batches, touched once per HM_POOL_BATCH
 * objects, and holds at most DEPOT_MAX batches: beyond that, batches go back
 * to libc. A thread's list returns to the depot when the thread exits.
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
    pool_obj *head;
    uint32_t count;
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

/* Gives `n` objects from the head of `c` to the depot as one batch. */
static void give_batch(pool_cache *c, uint32_t n)
{
    pool_obj *first = c->head, *last = first;

    for (uint32_t i = 1; i < n; i++)
        last = last->next;
    c->head = last->next;
    c->count -= n;
    last->next = NULL;
    pthread_mutex_lock(&depot.lock);
    if (depot.count < DEPOT_MAX) {
        first->batch_count = n;
        first->next_batch = depot.batches;
        depot.batches = first;
        depot.count++;
        first = NULL;
    }
    pthread_mutex_unlock(&depot.lock);
    free_batch(first);
}

static void flush_on_exit(void *arg)
{
    pool_cache *c = arg;

    while (c->count > 0)
        give_batch(c, c->count < HM_POOL_BATCH ? c->count : HM_POOL_BATCH);
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

static void refill(pool_cache *c)
{
    pool_obj *b;

    pthread_mutex_lock(&depot.lock);
    b = depot.batches;
    if (b) {
        depot.batches = b->next_batch;
        depot.count--;
    }
    pthread_mutex_unlock(&depot.lock);
    if (b) {
        c->head = b;
        c->count = b->batch_count;
        return;
    }
    for (uint32_t i = 0; i < HM_POOL_BATCH; i++) {
        pool_obj *o = hm_alloc(HM_POOL_OBJ_LEN);
        o->next = c->head;
        c->head = o;
    }
    c->count = HM_POOL_BATCH;
}

void *hm_pool_alloc_cached(void)
{
    pool_cache *c = cache();
    pool_obj *o;

    if (!c->head)
        refill(c);
    o = c->head;
    c->head = o->next;
    c->count--;
    return o;
}

void hm_pool_free_cached(void *p)
{
    pool_cache *c;
    pool_obj *o = p;

    if (!p)
        return;
    c = cache();
    o->next = c->head;
    c->head = o;
    if (++c->count >= 2 * HM_POOL_BATCH)
        give_batch(c, HM_POOL_BATCH);
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
