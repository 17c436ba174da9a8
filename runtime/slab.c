/* runtime/slab.c: size classes carved from mapped chunks (see slab.h).
 *
 * Objects are rounded up to 8 bytes; each size class up to MAX_OBJ has a
 * free list threaded through the freed objects' first word, and larger
 * objects (long names) go to malloc. New objects are bumped from the
 * current chunk. Chunks are anonymous mappings, so pages the bump has not
 * reached cost nothing; they start at FIRST_CHUNK and double up to
 * HUGE_CHUNK, and once MIN_HUGE_TOTAL bytes are mapped every new chunk is
 * HUGE_CHUNK-aligned and advised MADV_HUGEPAGE: on the VMs this runs on, a
 * 4 KiB first-touch fault costs 10-30 us, so a million 100-byte entries
 * cost more in faults than in everything else (docs/adr/0140). Small
 * runtimes never reach huge chunks, so they pay no 2 MiB minimum. */
#include "runtime/slab.h"

#include "runtime/alloc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define ALIGN 8u
#define MAX_OBJ 512u
#define NCLASSES (MAX_OBJ / ALIGN)
#define FIRST_CHUNK ((size_t)64 << 10)
#define HUGE_CHUNK ((size_t)2 << 20)
#define MIN_HUGE_TOTAL ((size_t)2 << 20)

typedef struct chunk {
    struct chunk *next;
    size_t len; /* bytes mapped, this header included */
} chunk;

typedef struct free_obj {
    struct free_obj *next;
} free_obj;

struct hm_slab {
    pthread_mutex_t lock;
    free_obj *free[NCLASSES]; /* guarded by: lock; by (len / ALIGN) - 1 */
    char *bump, *end;         /* guarded by: lock; the current chunk */
    chunk *chunks;            /* guarded by: lock */
    size_t next_len;          /* guarded by: lock; the next chunk's size */
    size_t mapped;            /* guarded by: lock */
    size_t in_use;            /* guarded by: lock */
};

#define BYPASS HM_ALLOC_SANITIZED

hm_slab *hm_slab_create(void)
{
    hm_slab *s = hm_calloc(1, sizeof *s);

    pthread_mutex_init(&s->lock, NULL);
    s->next_len = FIRST_CHUNK;
    return s;
}

void hm_slab_destroy(hm_slab *s)
{
    if (!s)
        return;
    while (s->chunks) {
        chunk *c = s->chunks;
        s->chunks = c->next;
        munmap(c, c->len);
    }
    pthread_mutex_destroy(&s->lock);
    hm_free(s);
}

/* The current chunk is too short for `len`: maps the next one. The rest
 * of the current one (less than `len`, at most a cache's run) is abandoned;
 * pages of it never touched cost no memory. */
static void new_chunk(hm_slab *s, size_t len)
{
    size_t clen = s->next_len;
    bool huge = clen == HUGE_CHUNK && s->mapped >= MIN_HUGE_TOTAL;
    chunk *c = hm_map_aligned(clen, huge ? HUGE_CHUNK : 4096);

    if (huge)
        madvise(c, clen, MADV_HUGEPAGE); /* a hint: failure is harmless */
    c->len = clen;
    c->next = s->chunks;
    s->chunks = c;
    s->mapped += clen;
    s->bump = (char *)c + sizeof *c;
    s->end = (char *)c + clen;
    if (s->next_len < HUGE_CHUNK)
        s->next_len *= 2;
    HM_ASSERT((size_t)(s->end - s->bump) >= len);
}

static size_t round_len(size_t len)
{
    return (len + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

void *hm_slab_alloc(hm_slab *s, size_t len)
{
    void *p;
    free_obj **fl;

    len = round_len(len ? len : 1);
    if (BYPASS || len > MAX_OBJ)
        return hm_alloc(len);
    fl = &s->free[len / ALIGN - 1];
    pthread_mutex_lock(&s->lock);
    if (*fl) {
        p = *fl;
        *fl = (*fl)->next;
    } else {
        if ((size_t)(s->end - s->bump) < len)
            new_chunk(s, len);
        p = s->bump;
        s->bump += len;
    }
    s->in_use += len;
    pthread_mutex_unlock(&s->lock);
    return p;
}

void hm_slab_free(hm_slab *s, void *p, size_t len)
{
    free_obj *o = p, **fl;

    if (!p)
        return;
    len = round_len(len ? len : 1);
    if (BYPASS || len > MAX_OBJ) {
        hm_free(p);
        return;
    }
    fl = &s->free[len / ALIGN - 1];
    pthread_mutex_lock(&s->lock);
    o->next = *fl;
    *fl = o;
    s->in_use -= len;
    pthread_mutex_unlock(&s->lock);
}

size_t hm_slab_mapped(hm_slab *s)
{
    size_t n;

    pthread_mutex_lock(&s->lock);
    n = s->mapped;
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t hm_slab_in_use(hm_slab *s)
{
    size_t n;

    pthread_mutex_lock(&s->lock);
    n = s->in_use;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---------------------------------------------------------------- caches */

void *hm_slab_cache_alloc(hm_slab *s, hm_slab_cache *c, size_t len)
{
    void **fl;
    void *p;

    len = round_len(len ? len : 1);
    if (BYPASS || len > HM_SLAB_CLASSES * ALIGN)
        return hm_alloc(len);
    c->in_use += len;
    fl = &c->free[len / ALIGN - 1];
    if (*fl) {
        p = *fl;
        *fl = ((free_obj *)p)->next;
        return p;
    }
    if ((size_t)(c->end - c->bump) < len) {
        /* The tail of the old run (less than `len`) is abandoned. */
        pthread_mutex_lock(&s->lock);
        if ((size_t)(s->end - s->bump) < HM_SLAB_RUN)
            new_chunk(s, HM_SLAB_RUN);
        c->bump = s->bump;
        s->bump += HM_SLAB_RUN;
        pthread_mutex_unlock(&s->lock);
        c->end = c->bump + HM_SLAB_RUN;
    }
    p = c->bump;
    c->bump += len;
    return p;
}

void hm_slab_cache_free(hm_slab_cache *c, void *p, size_t len)
{
    free_obj *o = p, **fl;

    if (!p)
        return;
    len = round_len(len ? len : 1);
    if (BYPASS || len > HM_SLAB_CLASSES * ALIGN) {
        hm_free(p);
        return;
    }
    c->in_use -= len;
    fl = (free_obj **)&c->free[len / ALIGN - 1];
    o->next = *fl;
    *fl = o;
}
