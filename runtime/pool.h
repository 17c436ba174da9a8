/* runtime/pool.h: a fixed-size object cache for runtime messages.
 *
 * Messages are allocated on one thread and freed on another (the sender's
 * and the receiver's). glibc then returns every chunk to its owner arena
 * with an atomic operation that producers contend on; this cache instead
 * keeps freed objects in a per-thread list and moves them between threads
 * in batches of HM_POOL_BATCH through a depot (docs/adr/0005, 0141).
 * Objects are cache-line-sized slots carved from 2 MiB chunks (huge-page
 * advised), never malloc chunks, so a thread that only allocates takes a
 * fresh batch for the cost of a lock and 64 links; a chunk whose every
 * object has been trimmed back goes back to the system (docs/adr/0185).
 *
 * Under AddressSanitizer or ThreadSanitizer the cache is bypassed (plain
 * malloc and free), so the sanitizers see every allocation. */
#ifndef HM_RUNTIME_POOL_H
#define HM_RUNTIME_POOL_H

#include <stddef.h>

#define HM_POOL_OBJ_LEN 64u /* bytes per object, and their alignment */
#define HM_POOL_BATCH 64u   /* objects moved between threads at once */

/* Returns owned an uninitialised HM_POOL_OBJ_LEN-byte object (never NULL).
 * Any thread. */
void *hm_pool_alloc(void);
/* Returns `p` (from hm_pool_alloc) to the calling thread's cache. Accepts
 * NULL. Any thread. */
void hm_pool_free(void *p);

/* Takes the batches the depot holds beyond its bound (4,096 batches,
 * 16 MiB) back onto their chunks and unmaps the chunks that are whole
 * again. Frees never do this themselves; each runtime's sweeper calls it
 * (docs/adr/0141, 0185). Any thread. */
void hm_pool_trim(void);

/* Bytes mapped for objects now (for tests and statistics). */
size_t hm_pool_mapped(void);

/* Batches in the depot now (for tests and statistics). */
size_t hm_pool_depot_batches(void);

/* The same operations without the sanitizer bypass, for the pool's own
 * tests. */
void *hm_pool_alloc_cached(void);
void hm_pool_free_cached(void *p);

#endif
