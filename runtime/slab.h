/* runtime/slab.h: a size-class allocator for the directory's entries.
 *
 * A runtime keeps one entry per name it has seen (docs/adr/0002), up to
 * millions of small objects of a few sizes that live as long as the name
 * is used. The slab carves them from large mapped chunks instead of
 * malloc: no per-object header, 8-byte rather than 16-byte rounding, the
 * entries of one burst contiguous in memory, and, once the slab is large,
 * chunks of 2 MiB that the kernel may back with transparent huge pages, so
 * that a million new entries take tens of page faults rather than tens of
 * thousands (docs/adr/0140). Freed objects go to a free list of their size
 * class and are reused by the next object of that class; memory goes back
 * to the system only when the slab is destroyed.
 *
 * Thread safety: every call may come from any thread (one internal mutex,
 * held for a bump or a list operation). Under AddressSanitizer or
 * ThreadSanitizer the slab is bypassed (plain malloc and free), so that
 * the sanitizers see each entry's real lifetime. */
#ifndef HM_RUNTIME_SLAB_H
#define HM_RUNTIME_SLAB_H

#include <stddef.h>

typedef struct hm_slab hm_slab;

/* Returns an owned, empty slab. */
hm_slab *hm_slab_create(void);

/* Frees every chunk, so every object still allocated. Accepts NULL. */
void hm_slab_destroy(hm_slab *s);

/* Returns owned `len` bytes (uninitialised, 8-byte aligned; never NULL). */
void *hm_slab_alloc(hm_slab *s, size_t len);

/* Takes back `p`, allocated with the same `len`. Accepts NULL. */
void hm_slab_free(hm_slab *s, void *p, size_t len);

/* A cache in front of the slab for one user that holds its own lock (a
 * directory shard): objects are bumped from runs of HM_SLAB_RUN bytes taken
 * from the slab, and freed objects stay on the cache's own lists, so the
 * slab's mutex is taken once per run rather than once per object. Fields
 * private; zero-initialise it. Guarded by: the user's lock. */
#define HM_SLAB_CLASSES 32u /* objects up to 256 bytes; longer ones: malloc */
#define HM_SLAB_RUN ((size_t)2 << 10)
typedef struct hm_slab_cache {
    char *bump, *end;
    void *free[HM_SLAB_CLASSES];
    size_t in_use; /* bytes in objects from this cache */
} hm_slab_cache;

/* As hm_slab_alloc / hm_slab_free, through `c`. An object must be freed
 * through the cache it came from. */
void *hm_slab_cache_alloc(hm_slab *s, hm_slab_cache *c, size_t len);
void hm_slab_cache_free(hm_slab_cache *c, void *p, size_t len);

/* Bytes of memory mapped for the slab, and bytes of it in objects now
 * (both 0 when bypassed under a sanitizer: malloc holds the objects). */
size_t hm_slab_mapped(hm_slab *s);
size_t hm_slab_in_use(hm_slab *s);

#endif
