/* runtime/pool.c: per-thread caches, a depot of batches, and the chunks
 * the objects are carved from (see pool.h).
 *
 * A thread allocates from its own list; when it is empty it takes the batch
 * it held back, else one batch from the depot, else one batch from the
 * chunks. A thread frees into its own list; when that list is a whole batch
 * it is held back and the batch held before goes to the depot. The depot is
 * one mutex-guarded stack of batches, touched once per HM_POOL_BATCH
 * objects. Giving a batch never frees anything: a receiver draining
 * millions of messages from other threads (fan-in) would otherwise pay for
 * each one on the one thread that limits throughput. hm_pool_trim(), called
 * by each runtime's sweeper on its timer thread, takes what lies beyond
 * DEPOT_MAX batches (docs/adr/0141). A thread's list returns to the depot
 * when the thread exits.
 *
 * Objects are carved from 2 MiB chunks (docs/adr/0185), not malloc'd: a
 * thread that only allocates (a plain thread sending into the runtime, the
 * timer thread) used to take a fresh malloc chunk per message whenever the
 * depot was empty, 80 bytes across two cache lines each, a 4 KiB page fault
 * every 51 objects. A chunk is 2 MiB-aligned, advised MADV_HUGEPAGE from the
 * second chunk on (so a small process maps no huge page), and holds a header
 * in its first 64 bytes and then 32,767 objects, each one cache line. A
 * batch is carved by linking 64 neighbours under the chunks' lock. Trimmed
 * objects are gathered onto their chunk's list (the header is found by
 * masking the address); a chunk whose every carved object is gathered goes
 * back to the system, and gathered objects of the other chunks serve
 * refills before anything new is carved.
 *
 * The depot and the chunks are process-wide state, like malloc's own
 * arenas: messages are created without naming a runtime (hm_msg_create), so
 * their allocator cannot belong to one (docs/adr/0005). */
#include "runtime/pool.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define DEPOT_MAX 4096u
#define CHUNK_LEN ((size_t)2 << 20)
#define CHUNK_OBJS ((uint32_t)(CHUNK_LEN / HM_POOL_OBJ_LEN) - 1u)

typedef struct pool_obj {
    struct pool_obj *next;       /* within a list or batch */
    struct pool_obj *next_batch; /* first object of a batch, in the depot */
    uint32_t batch_count;        /* first object of a batch: its length */
} pool_obj;

/* The first HM_POOL_OBJ_LEN bytes of a chunk. Guarded by: chunks.lock. */
typedef struct chunk_hdr {
    struct chunk_hdr *prev, *next; /* in chunks.partial, or NULL */
    pool_obj *gathered;            /* objects trimmed back to this chunk */
    uint32_t ngathered;
    uint32_t carved; /* objects ever handed out; only grows */
} chunk_hdr;

_Static_assert(sizeof(chunk_hdr) <= HM_POOL_OBJ_LEN, "a header is one slot");

typedef struct pool_cache {
    pool_obj *cur;     /* objects to hand out, a partial batch */
    uint32_t cur_count;
    pool_obj *full;    /* a whole batch held back, or NULL */
    int registered;
} pool_cache;

static struct {
    pthread_mutex_t lock;
    pool_obj *batches; /* guarded by: lock */
    size_t count;      /* guarded by: lock */
} depot = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static struct {
    pthread_mutex_t lock;
    chunk_hdr *carving; /* guarded by: lock; the chunk being carved */
    chunk_hdr *partial; /* guarded by: lock; chunks with gathered objects */
    size_t mapped;      /* guarded by: lock; bytes */
} chunks = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0};

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;
static _Thread_local pool_cache tl_cache;

/* ---------------------------------------------------------------- chunks */

static chunk_hdr *chunk_of(pool_obj *o)
{
    return (chunk_hdr *)((uintptr_t)o & ~(uintptr_t)(CHUNK_LEN - 1));
}

/* Maps a zeroed, CHUNK_LEN-aligned chunk; caller holds chunks.lock. */
static chunk_hdr *chunk_map(void)
{
    size_t over = 2 * CHUNK_LEN;
    char *p = mmap(NULL, over, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *start;

    if (p == MAP_FAILED) {
        HM_LOG_ERROR("RT-OOM", "cannot map a message chunk");
        abort();
    }
    start = (char *)(((uintptr_t)p + CHUNK_LEN - 1) &
                     ~(uintptr_t)(CHUNK_LEN - 1));
    if (start > p)
        munmap(p, (size_t)(start - p));
    if (start + CHUNK_LEN < p + over)
        munmap(start + CHUNK_LEN, (size_t)(p + over - (start + CHUNK_LEN)));
    if (chunks.mapped >= CHUNK_LEN)
        madvise(start, CHUNK_LEN, MADV_HUGEPAGE); /* a hint */
    chunks.mapped += CHUNK_LEN;
    return (chunk_hdr *)start; /* zeroed: no links, nothing carved */
}

static void partial_unlink(chunk_hdr *ch)
{
    if (ch->prev)
        ch->prev->next = ch->next;
    else
        chunks.partial = ch->next;
    if (ch->next)
        ch->next->prev = ch->prev;
    ch->prev = ch->next = NULL;
}

/* Takes up to HM_POOL_BATCH objects: gathered ones first, else carved. */
static pool_obj *chunk_take(uint32_t *count_out)
{
    pool_obj *list = NULL;
    uint32_t n = 0;
    chunk_hdr *ch;

    pthread_mutex_lock(&chunks.lock);
    if ((ch = chunks.partial)) {
        while (n < HM_POOL_BATCH && ch->gathered) {
            pool_obj *o = ch->gathered;
            ch->gathered = o->next;
            o->next = list;
            list = o;
            n++;
        }
        ch->ngathered -= n;
        if (ch->ngathered == 0)
            partial_unlink(ch);
    } else {
        if (!chunks.carving || chunks.carving->carved == CHUNK_OBJS)
            chunks.carving = chunk_map();
        ch = chunks.carving;
        /* Object k (1-based) sits at k * HM_POOL_OBJ_LEN; link them in
         * address order, so a batch is handed out front to back. */
        for (uint32_t k = ch->carved + HM_POOL_BATCH; k > ch->carved; k--) {
            if (k > CHUNK_OBJS)
                continue;
            pool_obj *o = (pool_obj *)((char *)ch + (size_t)k * HM_POOL_OBJ_LEN);
            o->next = list;
            list = o;
            n++;
        }
        ch->carved += n;
    }
    pthread_mutex_unlock(&chunks.lock);
    *count_out = n;
    return list;
}

/* Gathers the objects of `batches` (a depot stack) onto their chunks and
 * unmaps the chunks that are whole again. The lock is let go every
 * GATHER_SLICE batches, so that a thread carving a batch never waits for
 * the walk of a whole burst. */
#define GATHER_SLICE 64u
static void chunk_gather(pool_obj *batches)
{
    chunk_hdr *release = NULL;

    while (batches) {
        pthread_mutex_lock(&chunks.lock);
        for (uint32_t k = 0; batches && k < GATHER_SLICE; k++) {
            pool_obj *o = batches;
            batches = o->next_batch;
            while (o) {
                pool_obj *next = o->next;
                chunk_hdr *ch = chunk_of(o);
                o->next = ch->gathered;
                ch->gathered = o;
                if (ch->ngathered++ == 0) {
                    ch->prev = NULL;
                    ch->next = chunks.partial;
                    if (chunks.partial)
                        chunks.partial->prev = ch;
                    chunks.partial = ch;
                }
                if (ch->ngathered == ch->carved && ch != chunks.carving) {
                    /* Every object it ever handed out is here: no one
                     * else can hold one of them. */
                    partial_unlink(ch);
                    ch->next = release;
                    release = ch;
                    chunks.mapped -= CHUNK_LEN;
                }
                o = next;
            }
        }
        pthread_mutex_unlock(&chunks.lock);
    }
    while (release) {
        chunk_hdr *ch = release;
        release = ch->next;
        munmap(ch, CHUNK_LEN);
    }
}

/* Reads `*value` under `lock` (for the statistics below). */
static size_t read_locked(pthread_mutex_t *lock, const size_t *value)
{
    size_t n;

    pthread_mutex_lock(lock);
    n = *value;
    pthread_mutex_unlock(lock);
    return n;
}

size_t hm_pool_mapped(void)
{
    return read_locked(&chunks.lock, &chunks.mapped);
}

/* ----------------------------------------------------------------- depot */

/* Gives a batch of `n` objects (a list) to the depot. Out of line, as
 * refill(). */
__attribute__((noinline)) static void give_batch(pool_obj *first, uint32_t n)
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
     * ones below stay, and no batch is walked that is not trimmed. */
    while (depot.count > DEPOT_MAX) {
        b = depot.batches;
        depot.batches = b->next_batch;
        depot.count--;
        b->next_batch = excess;
        excess = b;
    }
    pthread_mutex_unlock(&depot.lock);
    if (excess)
        chunk_gather(excess);
}

size_t hm_pool_depot_batches(void)
{
    return read_locked(&depot.lock, &depot.count);
}

/* ---------------------------------------------------------------- caches */

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

/* `cur` is empty: take the held-back batch, a depot batch, or objects from
 * the chunks. Out of line, so the allocation fast path saves no
 * registers. */
__attribute__((noinline)) static void refill(pool_cache *c)
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
    c->cur = chunk_take(&c->cur_count);
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
/* The same functions under a second name: one call, not two. */
void *hm_pool_alloc(void) __attribute__((alias("hm_pool_alloc_cached")));
void hm_pool_free(void *p) __attribute__((alias("hm_pool_free_cached")));
#endif
