/* tests/runtime/test_pool.c: the message object cache, including objects
 * that cross threads and caches flushed at thread exit. The cached entry
 * points are used directly, so the cache is exercised under the sanitizers
 * too. */
#include "runtime/pool.h"

#include <criterion/criterion.h>
#include <pthread.h>
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
