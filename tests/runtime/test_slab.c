/* tests/runtime/test_slab.c: the directory entries' slab allocator: sizes,
 * reuse by size class, objects above the largest class, and growth past
 * the huge-chunk threshold. Under the sanitizers the slab is bypassed
 * (plain malloc), and these tests then check that path instead. */
#include "runtime/slab.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

Test(slab, objects_are_aligned_distinct_and_usable_for_their_length)
{
    hm_slab *s = hm_slab_create();
    enum { N = 5000 };
    unsigned char *p[N];

    for (int i = 0; i < N; i++) {
        size_t len = 1 + (size_t)(i * 7) % 700; /* small and large */
        p[i] = hm_slab_alloc(s, len);
        cr_assert_eq((uintptr_t)p[i] % 8, 0);
        memset(p[i], i & 0xff, len);
    }
    for (int i = 0; i < N; i++) {
        size_t len = 1 + (size_t)(i * 7) % 700;
        cr_assert_eq(p[i][0], (unsigned char)(i & 0xff));
        cr_assert_eq(p[i][len - 1], (unsigned char)(i & 0xff));
    }
    for (int i = 0; i < N; i++)
        hm_slab_free(s, p[i], 1 + (size_t)(i * 7) % 700);
    cr_assert_eq(hm_slab_in_use(s), 0);
    hm_slab_destroy(s);
}

Test(slab, a_freed_object_is_reused_by_the_next_of_its_class)
{
    hm_slab *s = hm_slab_create();
    void *a = hm_slab_alloc(s, 90), *b;

    hm_slab_free(s, a, 90);
    b = hm_slab_alloc(s, 92); /* rounds to the same 96-byte class */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    cr_assert_eq(b, a);
    cr_assert_eq(hm_slab_in_use(s), 96);
#endif
    hm_slab_free(s, b, 92);
    hm_slab_free(s, NULL, 10);
    hm_slab_destroy(s);
    hm_slab_destroy(NULL);
}

Test(slab, grows_past_the_huge_chunk_threshold, .timeout = 30)
{
    hm_slab *s = hm_slab_create();
    enum { N = 200000, LEN = 88 }; /* 17.6 MB: several 2 MiB chunks */
    unsigned char **p = calloc(N, sizeof *p);

    for (int i = 0; i < N; i++) {
        p[i] = hm_slab_alloc(s, LEN);
        p[i][0] = (unsigned char)i;
        p[i][LEN - 1] = (unsigned char)(i >> 8);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(p[i][0], (unsigned char)i);
        cr_assert_eq(p[i][LEN - 1], (unsigned char)(i >> 8));
    }
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    cr_assert_eq(hm_slab_in_use(s), (size_t)N * LEN);
    cr_assert_geq(hm_slab_mapped(s), (size_t)N * LEN);
    cr_assert_lt(hm_slab_mapped(s), (size_t)N * LEN + (4u << 20));
#endif
    for (int i = 0; i < N; i++)
        hm_slab_free(s, p[i], LEN);
    hm_slab_destroy(s);
    free(p);
}

Test(slab, a_cache_reuses_its_own_objects_and_counts_its_bytes)
{
    hm_slab *s = hm_slab_create();
    hm_slab_cache c = {0};
    enum { N = 3000 }; /* several runs */
    unsigned char *p[N];

    for (int i = 0; i < N; i++) {
        size_t len = 80 + (size_t)(i % 3) * 100; /* 80, 180, 280 (malloc) */
        p[i] = hm_slab_cache_alloc(s, &c, len);
        cr_assert_eq((uintptr_t)p[i] % 8, 0);
        memset(p[i], i & 0xff, len);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(p[i][79], (unsigned char)(i & 0xff));
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    cr_assert_eq(c.in_use, (size_t)(N / 3) * (80 + 184));
    {
        void *q = p[0], *r;
        hm_slab_cache_free(&c, q, 80);
        r = hm_slab_cache_alloc(s, &c, 75); /* same 80-byte class */
        cr_assert_eq(r, q);
    }
#endif
    for (int i = 0; i < N; i++)
        hm_slab_cache_free(&c, p[i], 80 + (size_t)(i % 3) * 100);
    cr_assert_eq(c.in_use, 0);
    hm_slab_destroy(s);
}
