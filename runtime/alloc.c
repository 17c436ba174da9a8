/* runtime/alloc.c: the abort-on-OOM wrappers around the C allocator.
 *
 * Key decision (STYLE 4): running out of memory is not an error code. Each
 * wrapper logs the size it wanted and aborts, so a constructor that can
 * fail only for lack of memory returns a pointer that is never NULL, and no
 * caller carries a cleanup path it could never test. A request for zero
 * bytes asks for one, so a NULL from the C allocator always means OOM. */
#include "runtime/alloc.h"

#include "runtime/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void out_of_memory(size_t len)
{
    HM_LOG_ERROR("RT-OOM", "out of memory allocating %zu bytes", len);
    abort();
}

void *hm_alloc(size_t len)
{
    void *p = malloc(len ? len : 1);
    if (!p)
        out_of_memory(len);
    return p;
}

void *hm_calloc(size_t count, size_t len)
{
    void *p = calloc(count ? count : 1, len ? len : 1);
    if (!p)
        out_of_memory(count * len);
    return p;
}

void *hm_realloc(void *p, size_t len)
{
    void *q = realloc(p, len ? len : 1);
    if (!q)
        out_of_memory(len);
    return q;
}

char *hm_strdup(const char *s)
{
    return hm_strndup(s, strlen(s));
}

char *hm_strndup(const char *s, size_t len)
{
    char *d = hm_alloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void hm_free(void *p)
{
    free(p);
}

void *hm_map_aligned(size_t len, size_t align)
{
    size_t over = align > 4096 ? len + align : len;
    char *p = mmap(NULL, over, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *start;

    if (p == MAP_FAILED)
        out_of_memory(len);
    /* Trim the slack on both sides of the aligned span. */
    start = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
    if (start > p)
        munmap(p, (size_t)(start - p));
    if (start + len < p + over)
        munmap(start + len, (size_t)(p + over - (start + len)));
    return start;
}

void hm_assert_fail(const char *expr, const char *file, int line)
{
    HM_LOG_ERROR("RT-ASSERT", "assertion failed: %s at %s:%d", expr, file,
                 line);
    abort();
}
