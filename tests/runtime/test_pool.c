/* tests/runtime/test_pool.c: the message object cache, including objects
 * that cross threads and caches flushed at thread exit. The cached entry
 * points are used directly, so the cache is exercised under the sanitizers
 * too. */
#include "runtime/pool.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

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

static void *free_all(void *arg)
{
    (void)arg;
    for (int i = 0; i < HANDOFF; i++)
        hm_pool_free_cached(objs[i]);
    return NULL; /* exiting flushes a partial batch to the depot */
}

Test(pool, objects_freed_on_another_thread_come_back_in_batches, .timeout = 30)
{
    pthread_t t;

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < HANDOFF - round; i++) /* odd counts too */
            objs[i] = hm_pool_alloc_cached();
        for (int i = HANDOFF - round; i < HANDOFF; i++)
            objs[i] = hm_pool_alloc_cached();
        pthread_create(&t, NULL, free_all, NULL);
        pthread_join(t, NULL);
    }
    /* The batches that crossed threads hold distinct, usable objects. */
    for (int i = 0; i < HANDOFF; i++) {
        objs[i] = hm_pool_alloc_cached();
        memcpy(objs[i], &i, sizeof i);
    }
    for (int i = 0; i < HANDOFF; i++) {
        int v;
        memcpy(&v, objs[i], sizeof v);
        cr_assert_eq(v, i);
    }
    for (int i = 0; i < HANDOFF; i++)
        hm_pool_free_cached(objs[i]);
}

/* Frees never give memory back to libc; the depot keeps every batch until
 * a trim returns what lies beyond its bound (docs/adr/0141). */
#define MANY (5000 * 64) /* more than the depot's 4,096 batches */
static void *many[MANY];

static void *free_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < MANY; i++)
        hm_pool_free_cached(many[i]);
    return NULL;
}

Test(pool, the_depot_keeps_every_batch_until_a_trim, .timeout = 30)
{
    pthread_t t;

    for (int i = 0; i < MANY; i++)
        many[i] = hm_pool_alloc_cached();
    cr_assert_eq(pthread_create(&t, NULL, free_many, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
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

static void *free_only(void *arg)
{
    (void)arg;
    for (int i = 0; i < ONLY; i++)
        hm_pool_free_cached(only[i]);
    return NULL;
}

static void *alloc_only(void *arg)
{
    (void)arg;
    for (int i = 0; i < ONLY; i++) {
        only[i] = hm_pool_alloc_cached();
        memcpy(only[i], &i, sizeof i);
    }
    return NULL; /* exiting gives back its partial list */
}

Test(pool, a_thread_that_only_allocates_reuses_what_others_freed,
     .timeout = 30)
{
    pthread_t t;
    size_t mapped;

    for (int i = 0; i < ONLY; i++)
        only[i] = hm_pool_alloc_cached();
    cr_assert_eq(pthread_create(&t, NULL, free_only, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_geq(hm_pool_depot_batches(), ONLY / 64 - 2);
    mapped = hm_pool_mapped();
    cr_assert_eq(pthread_create(&t, NULL, alloc_only, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(hm_pool_mapped(), mapped);
    for (int i = 0; i < ONLY; i++) {
        int v;
        memcpy(&v, only[i], sizeof v);
        cr_assert_eq(v, i, "object %d was handed out twice", i);
    }
    cr_assert_eq(pthread_create(&t, NULL, free_only, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

/* A trim takes the batches beyond the depot's bound back onto their
 * chunks; a chunk whose every object came back is unmapped, and the
 * gathered objects of the others serve later allocations. */
#define CHUNK_OBJECTS 32767
#define LOTS (4096 * 64 + 5 * CHUNK_OBJECTS)
static void *lots[LOTS];

static void *free_lots(void *arg)
{
    (void)arg;
    for (int i = 0; i < LOTS; i++)
        hm_pool_free_cached(lots[i]);
    return NULL;
}

Test(pool, a_trim_unmaps_the_chunks_that_came_back_whole, .timeout = 60)
{
    pthread_t t;
    size_t before, after;

    for (int i = 0; i < LOTS; i++)
        lots[i] = hm_pool_alloc_cached();
    cr_assert_eq(pthread_create(&t, NULL, free_lots, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    before = hm_pool_mapped();
    hm_pool_trim();
    after = hm_pool_mapped();
    cr_assert_eq(hm_pool_depot_batches(), 4096);
    /* The last ~5 chunks' objects were freed last, so they are the
     * excess; the chunk still being carved stays mapped. */
    cr_assert_geq(before - after, (size_t)3 * (2 << 20),
                  "mapped %zu before the trim, %zu after", before, after);
    /* Everything still allocates, distinct and usable. */
    for (int i = 0; i < LOTS; i++) {
        lots[i] = hm_pool_alloc_cached();
        memcpy(lots[i], &i, sizeof i);
    }
    for (int i = 0; i < LOTS; i++) {
        int v;
        memcpy(&v, lots[i], sizeof v);
        cr_assert_eq(v, i, "object %d was handed out twice", i);
    }
    for (int i = 0; i < LOTS; i++)
        hm_pool_free_cached(lots[i]);
}
