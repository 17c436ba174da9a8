/* runtime/alloc.h: allocation that never returns NULL, and internal
 * assertions.
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

void hm_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

#define HM_ASSERT(expr)                                                       \
    ((expr) ? (void)0 : hm_assert_fail(#expr, __FILE__, __LINE__))

#endif
