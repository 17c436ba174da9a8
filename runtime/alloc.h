/* runtime/alloc.h: allocation that never returns NULL (heap and aligned
 * mappings), and internal assertions.
 *
 * Out of memory is not an error code in Hermes: these wrappers log and
 * abort(), so constructors that can fail only for lack of memory return
 * pointers that are never NULL. HM_ASSERT checks internal invariants only;
 * bytes from the network are never asserted on (they get HM_EPROTO). */
#ifndef HM_RUNTIME_ALLOC_H
#define HM_RUNTIME_ALLOC_H

#include <stddef.h>

void *hm_alloc(size_t len);
void *hm_calloc(size_t count, size_t len);
void *hm_realloc(void *p, size_t len);
char *hm_strdup(const char *s);
char *hm_strndup(const char *s, size_t len);
void hm_free(void *p);

/* Maps `len` zeroed bytes of private anonymous memory aligned to `align` (a
 * power of two, at least a page): the slab's and the arena's chunks, 2 MiB
 * aligned so that the kernel may back them with huge pages. Undo with
 * munmap(p, len). */
void *hm_map_aligned(size_t len, size_t align);

/* 1 under AddressSanitizer or ThreadSanitizer: the runtime's own
 * allocators (slab, arena) then hand each object to malloc, so that the
 * sanitizers see its real bounds and lifetime. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HM_ALLOC_SANITIZED 1
#else
#define HM_ALLOC_SANITIZED 0
#endif

void hm_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

#define HM_ASSERT(expr)                                                       \
    ((expr) ? (void)0 : hm_assert_fail(#expr, __FILE__, __LINE__))

#endif
