/* runtime/arena.h: a buddy allocator of zeroed power-of-two blocks, from
 * 64 KiB to 2 MiB, carved from 2 MiB huge-page chunks, for the directory's
 * shard tables.
 *
 * A runtime that learns a million names grows each of its 64 shard tables
 * by doubling, up to 256 KiB each (16 MiB in all). Mapping each table on
 * its own and unmapping the old one cost a TLB shootdown per growth, 4 KiB
 * pages (so a TLB miss on top of the cache miss of every new name's slot),
 * and a kernel fault per page; a table in its own 2 MiB page wasted most
 * of it. The arena instead maps 2 MiB chunks, aligned and advised
 * MADV_HUGEPAGE, populated in one call, and never gives them back while it
 * lives: a freed table becomes a free block that merges with its buddy and
 * is reused by the next growth of any shard (docs/adr/0245). Blocks it
 * hands out are zeroed (fresh pages by the kernel, reused ones by memset).
 * Requests above 2 MiB (a shard of more than 196k names) are mapped on
 * their own and unmapped when freed.
 *
 * Thread safety: every call may come from any thread (one internal mutex,
 * held for a split or a merge; growths are rare). Under AddressSanitizer
 * or ThreadSanitizer the arena is bypassed (calloc and free), so that the
 * sanitizers see each table's real bounds. */
#ifndef HM_RUNTIME_ARENA_H
#define HM_RUNTIME_ARENA_H

#include <stddef.h>

typedef struct hm_arena hm_arena;

#define HM_ARENA_MIN ((size_t)64 << 10)  /* the smallest block */
#define HM_ARENA_CHUNK ((size_t)2 << 20) /* the largest block, one chunk */

/* Returns an owned, empty arena (no chunk mapped yet). */
hm_arena *hm_arena_create(void);

/* Unmaps every chunk, so every block still allocated. Accepts NULL. */
void hm_arena_destroy(hm_arena *a);

/* Returns owned, zeroed `len` bytes, `len` a power of two of at least
 * HM_ARENA_MIN, aligned to `len` up to HM_ARENA_CHUNK (never NULL: aborts
 * when memory runs out, as the rest of the runtime does). */
void *hm_arena_alloc(hm_arena *a, size_t len);

/* Takes back `p`, allocated with the same `len`. Accepts NULL. */
void hm_arena_free(hm_arena *a, void *p, size_t len);

/* Bytes mapped for chunks (free blocks included) and bytes in blocks
 * handed out now (both 0 when bypassed under a sanitizer). */
size_t hm_arena_mapped(hm_arena *a);
size_t hm_arena_in_use(hm_arena *a);

#endif
