/* tests/runtime/test_pool.c: the message object cache, including objects
 * that cross threads and caches flushed at thread exit. The cached entry
 * points are used directly, so the cache is exercised under the sanitizers
 * too. */
#include "runtime/pool.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Frees objs[0..count) on a new thread and waits for it; the thread's
 * exit gives its partial list to the depot. */
typedef struct freeing {
    void **objs;
    int count;
} freeing;

static void *free_them(void *arg)
{
    freeing *f = arg;
    for (int i = 0; i < f->count; i++)
        hm_pool_free_cached(f->objs[i]);
    return NULL;
}

static void free_on_thread(void **objs, int count)
{
    pthread_t t;
    freeing f = {objs, count};

    cr_assert_eq(pthread_create(&t, NULL, free_them, &f), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

/* Allocates objs[0..count), writing each one's index into it. */
static void fill_numbered(void **objs, int count)
{
    for (int i = 0; i < count; i++) {
        objs[i] = hm_pool_alloc_cached();
        memcpy(objs[i], &i, sizeof i);
    }
}

/* Checks that no object of objs[0..count) was handed out twice. */
static void check_numbered(void **objs, int count)
{
    for (int i = 0; i < count; i++) {
        int v;
        memcpy(&v, objs[i], sizeof v);
        cr_assert_eq(v, i, "object %d was handed out twice", i);
    }
}

Test(pool, an_object_is_usable_for_its_whole_length)
{
    unsigned char *p = hm_pool_alloc_cached();
    memset(p, 0xab, HM_POOL_OBJ_LEN);
    cr_assert_eq(p[HM_POOL_OBJ_LEN - 1], 0xab);
    hm_pool_free_cached(p);
}

Test(pool, a_freed_object_is_reused_by_the_same_thread)
{
    void *p = hm_pool_alloc_cached(), *q;
    hm_pool_free_cached(p);
    q = hm_pool_alloc_cached();
    cr_assert_eq(q, p);
    hm_pool_free_cached(q);
}

Test(pool, live_objects_are_distinct)
{
    enum { N = 1000 };
    void *p[N];

    for (int i = 0; i < N; i++) {
        p[i] = hm_pool_alloc_cached();
        memset(p[i], i & 0xff, HM_POOL_OBJ_LEN);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(((unsigned char *)p[i])[7], (unsigned char)(i & 0xff));
    for (int i = 0; i < N; i++)
        hm_pool_free_cached(p[i]);
}

#define HANDOFF 100000
static void *objs[HANDOFF];

Test(pool, objects_freed_on_another_thread_come_back_in_batches, .timeout = 30)
{
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < HANDOFF - round; i++) /* odd counts too */
            objs[i] = hm_pool_alloc_cached();
        for (int i = HANDOFF - round; i < HANDOFF; i++)
            objs[i] = hm_pool_alloc_cached();
        free_on_thread(objs, HANDOFF);
    }
    /* The batches that crossed threads hold distinct, usable objects. */
    fill_numbered(objs, HANDOFF);
    check_numbered(objs, HANDOFF);
    for (int i = 0; i < HANDOFF; i++)
        hm_pool_free_cached(objs[i]);
}

/* Frees never give memory back; the depot keeps every batch until a trim
 * takes what lies beyond its bound (docs/adr/0141, 0185). */
#define MANY (5000 * 64) /* more than the depot's 4,096 batches */
static void *many[MANY];

Test(pool, the_depot_keeps_every_batch_until_a_trim, .timeout = 30)
{
    for (int i = 0; i < MANY; i++)
        many[i] = hm_pool_alloc_cached();
    free_on_thread(many, MANY);
    cr_assert_geq(hm_pool_depot_batches(), MANY / 64);
    hm_pool_trim();
    cr_assert_eq(hm_pool_depot_batches(), 4096);
    hm_pool_trim(); /* nothing beyond the bound: a no-op */
    cr_assert_eq(hm_pool_depot_batches(), 4096);
    for (int i = 0; i < MANY; i++) /* the kept batches still serve */
        many[i] = hm_pool_alloc_cached();
    for (int i = 0; i < MANY; i++)
        hm_pool_free_cached(many[i]);
}

/* Objects are carved from 2 MiB chunks, each one cache line (ADR 0185). */
Test(pool, objects_are_cache_line_aligned)
{
    void *p = hm_pool_alloc_cached();
    cr_assert_eq((uintptr_t)p % HM_POOL_OBJ_LEN, 0);
    cr_assert_geq(hm_pool_mapped(), (size_t)2 << 20);
    hm_pool_free_cached(p);
}

/* A thread that only allocates (a plain thread sending into a runtime)
 * takes the batches that another thread's frees gave the depot, and maps
 * nothing new. */
#define ONLY 6400
static void *only[ONLY];

static void *alloc_only(void *arg)
{
    (void)arg;
    fill_numbered(only, ONLY);
    return NULL; /* exiting gives back its partial list */
}

Test(pool, a_thread_that_only_allocates_reuses_what_others_freed,
     .timeout = 30)
{
    pthread_t t;
    size_t mapped;

    for (int i = 0; i < ONLY; i++)
        only[i] = hm_pool_alloc_cached();
    free_on_thread(only, ONLY);
    cr_assert_geq(hm_pool_depot_batches(), ONLY / 64 - 2);
    mapped = hm_pool_mapped();
    cr_assert_eq(pthread_create(&t, NULL, alloc_only, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(hm_pool_mapped(), mapped);
    check_numbered(only, ONLY);
    free_on_thread(only, ONLY);
}

/* A trim takes the batches beyond the depot's bound back onto their
 * chunks; a chunk whose every object came back is unmapped, and the
 * gathered objects of the others serve later allocations. */
#define CHUNK_OBJECTS 32767
#define LOTS (4096 * 64 + 5 * CHUNK_OBJECTS)
static void *lots[LOTS];

Test(pool, a_trim_unmaps_the_chunks_that_came_back_whole, .timeout = 60)
{
    size_t before, after;

    for (int i = 0; i < LOTS; i++)
        lots[i] = hm_pool_alloc_cached();
    free_on_thread(lots, LOTS);
    before = hm_pool_mapped();
    hm_pool_trim();
    after = hm_pool_mapped();
    cr_assert_eq(hm_pool_depot_batches(), 4096);
    /* The last ~5 chunks' objects were freed last, so they are the
     * excess; the chunk still being carved stays mapped. */
    cr_assert_geq(before - after, (size_t)3 * (2 << 20),
                  "mapped %zu before the trim, %zu after", before, after);
    /* Everything still allocates, distinct and usable. */
    fill_numbered(lots, LOTS);
    check_numbered(lots, LOTS);
    for (int i = 0; i < LOTS; i++)
        hm_pool_free_cached(lots[i]);
}
