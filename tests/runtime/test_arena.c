/* tests/runtime/test_arena.c: the directory tables' buddy arena: blocks
 * are zeroed, aligned and disjoint, a freed block merges with its buddy and
 * is reused (dirty blocks are zeroed again), the tables' doubling pattern
 * stays within a few chunks, and blocks above a chunk are mapped on their
 * own. Under the sanitizers the arena is bypassed (calloc), and these tests
 * then check zeroing and the counters' bypass values instead. */
#include "runtime/arena.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BYPASSED 1
#else
#define BYPASSED 0
#endif

static bool all_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

Test(arena, blocks_are_zeroed_aligned_and_disjoint)
{
    hm_arena *a = hm_arena_create();
    size_t lens[] = {HM_ARENA_MIN, 2 * HM_ARENA_MIN, HM_ARENA_MIN,
                     4 * HM_ARENA_MIN, HM_ARENA_CHUNK};
    enum { N = sizeof lens / sizeof lens[0] };
    unsigned char *p[N];

    for (int i = 0; i < N; i++) {
        p[i] = hm_arena_alloc(a, lens[i]);
        cr_assert(all_zero(p[i], lens[i]), "block %d is not zeroed", i);
        if (!BYPASSED)
            cr_assert_eq((uintptr_t)p[i] % lens[i], 0);
        memset(p[i], 0xa0 + i, lens[i]);
    }
    /* Each block still holds its own bytes: none overlapped another. */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(p[i][0], 0xa0 + i);
        cr_assert_eq(p[i][lens[i] - 1], 0xa0 + i);
    }
    if (!BYPASSED) {
        cr_assert_eq(hm_arena_in_use(a), 8 * HM_ARENA_MIN + HM_ARENA_CHUNK);
        cr_assert_eq(hm_arena_mapped(a), 2 * HM_ARENA_CHUNK);
    }
    for (int i = 0; i < N; i++)
        hm_arena_free(a, p[i], lens[i]);
    cr_assert_eq(hm_arena_in_use(a), 0);
    hm_arena_free(a, NULL, HM_ARENA_MIN);
    hm_arena_destroy(a);
    hm_arena_destroy(NULL);
}

Test(arena, freed_buddies_merge_and_dirty_blocks_come_back_zeroed)
{
    hm_arena *a = hm_arena_create();
    unsigned char *x = hm_arena_alloc(a, HM_ARENA_MIN);
    unsigned char *y = hm_arena_alloc(a, HM_ARENA_MIN);
    unsigned char *big;

    memset(x, 0xff, HM_ARENA_MIN);
    memset(y, 0xff, HM_ARENA_MIN);
    hm_arena_free(a, x, HM_ARENA_MIN);
    hm_arena_free(a, y, HM_ARENA_MIN);
    /* Everything merged back into one whole chunk: a chunk-sized block
     * fits without mapping a second one. */
    big = hm_arena_alloc(a, HM_ARENA_CHUNK);
    if (!BYPASSED) {
        cr_assert_eq(hm_arena_mapped(a), HM_ARENA_CHUNK);
        cr_assert_eq(big, x < y ? x : y);
    }
    cr_assert(all_zero(big, HM_ARENA_CHUNK));
    hm_arena_free(a, big, HM_ARENA_CHUNK);
    hm_arena_destroy(a);
}

/* The directory's pattern: 64 shards double their tables from 64 KiB to
 * 256 KiB one after the other, each freeing its old table as it grows. */
Test(arena, doubling_tables_reuse_the_blocks_they_outgrew)
{
    hm_arena *a = hm_arena_create();
    enum { SHARDS = 64 };
    unsigned char *t[SHARDS];
    size_t len = HM_ARENA_MIN;

    for (int s = 0; s < SHARDS; s++) {
        t[s] = hm_arena_alloc(a, len);
        t[s][len - 1] = (unsigned char)s;
    }
    for (; len < 4 * HM_ARENA_MIN; len *= 2)
        for (int s = 0; s < SHARDS; s++) {
            unsigned char *n = hm_arena_alloc(a, 2 * len);
            cr_assert(all_zero(n, 2 * len));
            cr_assert_eq(t[s][len - 1], (unsigned char)s);
            n[2 * len - 1] = (unsigned char)s;
            hm_arena_free(a, t[s], len);
            t[s] = n;
        }
    if (!BYPASSED) {
        /* 16 MiB in use; every outgrown block was merged and reused, so at
         * most a chunk or two beyond that is mapped (28 MiB without). */
        cr_assert_eq(hm_arena_in_use(a), (size_t)SHARDS * len);
        cr_assert_leq(hm_arena_mapped(a), (size_t)SHARDS * len +
                                              2 * HM_ARENA_CHUNK);
    }
    for (int s = 0; s < SHARDS; s++)
        hm_arena_free(a, t[s], len);
    hm_arena_destroy(a);
}

Test(arena, a_block_above_a_chunk_is_mapped_on_its_own)
{
    hm_arena *a = hm_arena_create();
    size_t len = 2 * HM_ARENA_CHUNK;
    unsigned char *p = hm_arena_alloc(a, len);

    cr_assert(all_zero(p, len));
    p[len - 1] = 1;
    if (!BYPASSED) {
        cr_assert_eq(hm_arena_in_use(a), len);
        cr_assert_eq(hm_arena_mapped(a), 0); /* not a chunk of the arena */
    }
    hm_arena_free(a, p, len);
    cr_assert_eq(hm_arena_in_use(a), 0);
    hm_arena_destroy(a);
}
