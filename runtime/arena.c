/* runtime/arena.c: a buddy allocator over 2 MiB huge-page chunks (see
 * arena.h).
 *
 * A block of order k is HM_ARENA_MIN << k bytes (k = 0..MAX_ORDER, the
 * largest a whole chunk) and lies at an offset in its chunk that is a
 * multiple of its size, so its buddy is at offset ^ size. Free blocks sit
 * on one doubly linked list per order, threaded through their first bytes;
 * which blocks are free, and of what order, is kept outside them, in the
 * chunk's record (one byte per smallest block), since a block in use holds
 * arbitrary slots that could not be told from a free block's links. A
 * free merges its
 * block with its buddy for as long as the buddy is free and whole, so the
 * tables the shards outgrow come back as larger blocks for their next
 * growth. Each free block remembers whether it may hold old bytes (it was
 * handed out before, or merged with one that was); a clean one, still as
 * the kernel zeroed it, needs only its list links cleared when handed out,
 * a dirty one a memset. Chunk records live in an array searched by
 * address: chunks are few (8 for a million names) and searches happen only
 * when a table grows. */
#include "runtime/arena.h"

#include "runtime/alloc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels refuse it */
#endif

#define MAX_ORDER 5u /* HM_ARENA_MIN << 5 == HM_ARENA_CHUNK */
#define UNITS (HM_ARENA_CHUNK / HM_ARENA_MIN)
#define NOT_FREE 0u /* a unit's mark: no free block starts here */

typedef struct free_block {
    struct free_block *next, *prev;
    bool dirty; /* may hold bytes other than zero */
} free_block;

typedef struct chunk_rec {
    char *base;
    uint8_t mark[UNITS]; /* per unit: order + 1 if a free block starts here */
} chunk_rec;

struct hm_arena {
    pthread_mutex_t lock;
    free_block *free[MAX_ORDER + 1]; /* guarded by: lock; one list per order */
    chunk_rec *chunks;               /* guarded by: lock; nchunks of them */
    size_t nchunks, cap;             /* guarded by: lock */
    size_t in_use;                   /* guarded by: lock; bytes handed out */
};

#define BYPASS HM_ALLOC_SANITIZED

hm_arena *hm_arena_create(void)
{
    hm_arena *a = hm_calloc(1, sizeof *a);

    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void hm_arena_destroy(hm_arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nchunks; i++)
        munmap(a->chunks[i].base, HM_ARENA_CHUNK);
    hm_free(a->chunks);
    pthread_mutex_destroy(&a->lock);
    hm_free(a);
}

static unsigned order_of(size_t len)
{
    unsigned k = 0;

    HM_ASSERT(len >= HM_ARENA_MIN && (len & (len - 1)) == 0);
    while ((HM_ARENA_MIN << k) < len)
        k++;
    return k;
}

static chunk_rec *chunk_of(hm_arena *a, const void *p)
{
    char *base = (char *)((uintptr_t)p & ~(uintptr_t)(HM_ARENA_CHUNK - 1));

    for (size_t i = 0; i < a->nchunks; i++)
        if (a->chunks[i].base == base)
            return &a->chunks[i];
    HM_ASSERT(!"a block that is not the arena's");
    return NULL;
}

static size_t unit_of(const chunk_rec *c, const void *p)
{
    return (size_t)((const char *)p - c->base) / HM_ARENA_MIN;
}

/* Puts block `b` of order `k` on its list; caller holds the lock. */
static void push(hm_arena *a, chunk_rec *c, free_block *b, unsigned k,
                 bool dirty)
{
    b->dirty = dirty;
    b->prev = NULL;
    b->next = a->free[k];
    if (b->next)
        b->next->prev = b;
    a->free[k] = b;
    c->mark[unit_of(c, b)] = (uint8_t)(k + 1);
}

/* Takes block `b` of order `k` off its list; caller holds the lock. */
static void unlink_block(hm_arena *a, chunk_rec *c, free_block *b, unsigned k)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        a->free[k] = b->next;
    if (b->next)
        b->next->prev = b->prev;
    c->mark[unit_of(c, b)] = NOT_FREE;
}

/* Maps, advises and populates a chunk as one clean free block of the
 * largest order; caller holds the lock. One populate call takes the
 * kernel's faults (a 2 MiB page, or 512 small ones when no huge page is
 * free) up front rather than on the table's first stores. */
static void add_chunk(hm_arena *a)
{
    char *base = hm_map_aligned(HM_ARENA_CHUNK, HM_ARENA_CHUNK);
    chunk_rec *c;

    madvise(base, HM_ARENA_CHUNK, MADV_HUGEPAGE);       /* hints: failure */
    madvise(base, HM_ARENA_CHUNK, MADV_POPULATE_WRITE); /* is harmless */
    if (a->nchunks == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->chunks = hm_realloc(a->chunks, a->cap * sizeof *a->chunks);
    }
    c = &a->chunks[a->nchunks++];
    c->base = base;
    memset(c->mark, NOT_FREE, sizeof c->mark);
    push(a, c, (free_block *)base, MAX_ORDER, false);
}

/* A block of more than a chunk: mapped on its own. */
static void *alloc_large(size_t len)
{
    void *p = hm_map_aligned(len, HM_ARENA_CHUNK);

    madvise(p, len, MADV_HUGEPAGE);       /* hints: failure */
    madvise(p, len, MADV_POPULATE_WRITE); /* is harmless */
    return p;
}

void *hm_arena_alloc(hm_arena *a, size_t len)
{
    unsigned want, k;
    free_block *b;
    chunk_rec *c;
    bool dirty;

    if (BYPASS)
        return hm_calloc(1, len);
    if (len > HM_ARENA_CHUNK) {
        pthread_mutex_lock(&a->lock);
        a->in_use += len;
        pthread_mutex_unlock(&a->lock);
        return alloc_large(len);
    }
    want = order_of(len);
    pthread_mutex_lock(&a->lock);
    for (k = want; k <= MAX_ORDER && !a->free[k]; k++)
        ;
    if (k > MAX_ORDER) {
        add_chunk(a);
        k = MAX_ORDER;
    }
    b = a->free[k];
    c = chunk_of(a, b);
    dirty = b->dirty;
    unlink_block(a, c, b, k);
    /* Split down to the wanted order; the upper halves go back free. */
    while (k > want) {
        k--;
        push(a, c, (free_block *)((char *)b + (HM_ARENA_MIN << k)), k, dirty);
    }
    a->in_use += len;
    pthread_mutex_unlock(&a->lock);
    /* The block is ours now: zero it outside the lock. */
    if (dirty)
        memset(b, 0, len);
    else
        memset(b, 0, sizeof *b);
    return b;
}

void hm_arena_free(hm_arena *a, void *p, size_t len)
{
    unsigned k;
    chunk_rec *c;
    char *blk = p;

    if (!p)
        return;
    if (BYPASS) {
        hm_free(p);
        return;
    }
    pthread_mutex_lock(&a->lock);
    a->in_use -= len;
    if (len > HM_ARENA_CHUNK) {
        pthread_mutex_unlock(&a->lock);
        munmap(p, len);
        return;
    }
    k = order_of(len);
    c = chunk_of(a, blk);
    /* Merge with the buddy while it is free and of the same order. */
    while (k < MAX_ORDER) {
        size_t off = (size_t)(blk - c->base), size = HM_ARENA_MIN << k;
        char *buddy = c->base + (off ^ size);
        if (c->mark[unit_of(c, buddy)] != k + 1)
            break;
        unlink_block(a, c, (free_block *)buddy, k);
        if (buddy < blk)
            blk = buddy;
        k++;
    }
    push(a, c, (free_block *)blk, k, true);
    pthread_mutex_unlock(&a->lock);
}

size_t hm_arena_mapped(hm_arena *a)
{
    size_t n;

    pthread_mutex_lock(&a->lock);
    n = a->nchunks * HM_ARENA_CHUNK;
    pthread_mutex_unlock(&a->lock);
    return n;
}

size_t hm_arena_in_use(hm_arena *a)
{
    size_t n;

    pthread_mutex_lock(&a->lock);
    n = a->in_use; /* 0 when bypassed: nothing counts it */
    pthread_mutex_unlock(&a->lock);
    return n;
}
