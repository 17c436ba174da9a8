/* runtime/timer.c: a wheel of 1 ms buckets that timers expire from, with a
 * 4-ary min-heap behind it for timers beyond the horizon (see timer.h).
 *
 * Cancellation is lazy, as in Go's runtime: cancel frees the record at once
 * (so its slot and id generation move on) and leaves the bucket or heap
 * entry behind; an entry whose sequence number no longer matches its
 * record's is dead and is skipped when it is reached. Finding and removing
 * the entry instead would need a back pointer kept up to date on every move.
 * When dead entries outnumber live ones the heap is rebuilt, or the buckets
 * compacted, in O(n), so timers that are almost always cancelled (request
 * timeouts) cannot bloat either.
 *
 * The cursor only moves forward, and never past the `now_ms` it is given,
 * so a bucket is never emptied before its millisecond. A bitmap of non-empty
 * buckets lets the cursor skip empty milliseconds 64 at a time. */
#include "runtime/timer.h"

#include "runtime/alloc.h"

#include <stddef.h>
#include <string.h>

#define FREE_IDX UINT32_MAX
#define ARITY 4u
#define REBUILD_MIN 1024u
#define SLOTS HM_TIMER_WHEEL_SLOTS
#define WORDS (SLOTS / 64u)
#define PREFETCH_AHEAD 32u
#define BLOCK_LEN HM_TIMER_BLOCK_LEN
#define SPARE_MAX 1024u /* emptied blocks kept for reuse (1 MiB) */

void hm_timers_init(hm_timers *t, uint64_t now_ms)
{
    memset(t, 0, sizeof *t);
    t->free_head = FREE_IDX;
    t->cursor_ms = now_ms;
}

static void free_blocks(hm_tblock *b)
{
    while (b) {
        hm_tblock *next = b->next;
        hm_free(b);
        b = next;
    }
}

void hm_timers_fini(hm_timers *t)
{
    hm_free(t->slots);
    hm_free(t->heap);
    for (uint32_t i = 0; i < SLOTS; i++)
        free_blocks(t->wheel[i].first);
    free_blocks(t->spare);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------ far heap */

static bool before(const hm_theap_entry *x, const hm_theap_entry *y)
{
    if (x->deadline_ms != y->deadline_ms)
        return x->deadline_ms < y->deadline_ms;
    return x->seq < y->seq;
}

static void sift_up(hm_timers *t, uint32_t pos)
{
    hm_theap_entry e = t->heap[pos];

    while (pos > 0) {
        uint32_t parent = (pos - 1) / ARITY;
        if (!before(&e, &t->heap[parent]))
            break;
        t->heap[pos] = t->heap[parent];
        pos = parent;
    }
    t->heap[pos] = e;
}

static void sift_down(hm_timers *t, uint32_t pos)
{
    hm_theap_entry e = t->heap[pos];

    for (;;) {
        uint32_t first = ARITY * pos + 1, best, end;
        if (first >= t->heap_len)
            break;
        end = first + ARITY < t->heap_len ? first + ARITY : t->heap_len;
        best = first;
        for (uint32_t c = first + 1; c < end; c++)
            if (before(&t->heap[c], &t->heap[best]))
                best = c;
        if (!before(&t->heap[best], &e))
            break;
        t->heap[pos] = t->heap[best];
        pos = best;
    }
    t->heap[pos] = e;
}

static void pop_top(hm_timers *t)
{
    t->heap[0] = t->heap[--t->heap_len];
    if (t->heap_len > 0)
        sift_down(t, 0);
}

static void heap_push(hm_timers *t, const hm_theap_entry *e)
{
    if (t->heap_len == t->heap_cap) {
        t->heap_cap = t->heap_cap ? 2 * t->heap_cap : 64;
        t->heap = hm_realloc(t->heap, t->heap_cap * sizeof *t->heap);
    }
    t->heap[t->heap_len] = *e;
    sift_up(t, t->heap_len++);
}

static bool heap_live(const hm_timers *t, const hm_theap_entry *e)
{
    const hm_tslot *s = &t->slots[e->slot];
    return s->armed && s->seq == e->seq;
}

/* An anonymous entry cannot be cancelled, so it is always live. */
static bool wheel_live(const hm_timers *t, const hm_twheel_entry *e)
{
    const hm_tslot *s;

    if (e->msg)
        return true;
    s = &t->slots[e->u.rec.slot];
    return s->armed && (uint32_t)s->seq == e->u.rec.seq32;
}

static hm_twheel_entry rec_entry(uint32_t slot, uint64_t seq)
{
    hm_twheel_entry e = {.msg = NULL};

    e.u.rec.slot = slot;
    e.u.rec.seq32 = (uint32_t)seq;
    return e;
}

/* Drops dead entries from the heap's top. */
static void heap_prune(hm_timers *t)
{
    while (t->heap_len > 0 && !heap_live(t, &t->heap[0])) {
        pop_top(t);
        t->heap_dead--;
    }
}

/* ---------------------------------------------------------------- wheel */

static uint32_t bucket_of(uint64_t ms)
{
    return (uint32_t)(ms % SLOTS);
}

static void mark_used(hm_timers *t, uint32_t b)
{
    t->used[b / 64] |= 1ull << (b % 64);
}

/* A block from the spares, or a new one; its `next` is NULL. */
static hm_tblock *block_get(hm_timers *t)
{
    hm_tblock *blk = t->spare;

    if (blk) {
        t->spare = blk->next;
        t->nspare--;
    } else {
        blk = hm_alloc(sizeof *blk);
    }
    blk->next = NULL;
    return blk;
}

/* Keeps an emptied block for the next arms, up to SPARE_MAX of them (a
 * burst's blocks beyond that go back to malloc). */
static void block_put(hm_timers *t, hm_tblock *blk)
{
    if (t->nspare >= SPARE_MAX) {
        hm_free(blk);
        return;
    }
    blk->next = t->spare;
    t->spare = blk;
    t->nspare++;
}

/* Empties bucket `b`, giving its blocks back. */
static void reset_bucket(hm_timers *t, uint32_t b)
{
    hm_tbucket *k = &t->wheel[b];

    while (k->first) {
        hm_tblock *next = k->first == k->last ? NULL : k->first->next;
        block_put(t, k->first);
        k->first = next;
    }
    k->last = NULL;
    k->rd = k->wr = NULL;
    t->used[b / 64] &= ~(1ull << (b % 64));
}

static void bucket_append(hm_timers *t, uint32_t b, hm_twheel_entry e)
{
    hm_tbucket *k = &t->wheel[b];

    if (!k->first) {
        k->first = k->last = block_get(t);
        k->rd = k->wr = k->first->items;
        mark_used(t, b);
    } else if (k->wr == k->last->items + BLOCK_LEN) {
        k->last->next = block_get(t);
        k->last = k->last->next;
        k->wr = k->last->items;
    }
    *k->wr++ = e;
    t->wheel_len++;
}

/* The entry at the front of bucket `k` (moving past an exhausted block,
 * which goes back to the spares), or NULL if none is left. */
static hm_twheel_entry *bucket_front(hm_timers *t, hm_tbucket *k)
{
    if (k->rd == k->wr)
        return NULL; /* empty, or never filled (both NULL) */
    if (k->rd == k->first->items + BLOCK_LEN) {
        hm_tblock *done = k->first;
        k->first = done->next;
        k->rd = k->first->items;
        block_put(t, done);
    }
    return k->rd;
}

/* How many milliseconds after the cursor the first non-empty bucket is
 * (0 = the cursor's own), or SLOTS if every bucket is empty. */
static uint32_t first_used(const hm_timers *t)
{
    uint32_t start = bucket_of(t->cursor_ms);

    if (t->wheel_len == 0)
        return SLOTS;
    for (uint32_t i = 0; i <= WORDS; i++) {
        uint32_t w = (start / 64 + i) % WORDS;
        uint64_t bits = t->used[w];
        if (i == 0)
            bits &= ~0ull << (start % 64);          /* from start on */
        else if (i == WORDS)
            bits &= (1ull << (start % 64)) - 1;     /* wrapped: below start */
        if (bits) {
            uint32_t b = w * 64 + (uint32_t)__builtin_ctzll(bits);
            return (b + SLOTS - start) % SLOTS;
        }
    }
    return SLOTS;
}

/* Skips the cancelled entries at the front of bucket `b`; true if a live
 * one remains (the bucket is reset otherwise). */
static bool bucket_front_live(hm_timers *t, uint32_t b)
{
    hm_tbucket *k = &t->wheel[b];
    const hm_twheel_entry *e;

    while ((e = bucket_front(t, k)) && !wheel_live(t, e)) {
        k->rd++;
        t->wheel_len--;
        t->wheel_dead--;
    }
    if (e)
        return true;
    reset_bucket(t, b);
    return false;
}

/* Files entry (slot, seq) due at `deadline_ms`: in its bucket if within the
 * horizon (a deadline behind the cursor in the cursor's bucket), else in
 * the heap. */
static void file_entry(hm_timers *t, uint32_t slot, uint64_t deadline_ms,
                       uint64_t seq)
{
    hm_tslot *s = &t->slots[slot];

    if (deadline_ms >= t->cursor_ms + SLOTS) {
        s->in_heap = true;
        heap_push(t, &(hm_theap_entry){deadline_ms, seq, slot});
        return;
    }
    s->in_heap = false;
    bucket_append(t, bucket_of(deadline_ms < t->cursor_ms ? t->cursor_ms
                                                          : deadline_ms),
                  rec_entry(slot, seq));
}

/* Moves the heap's timers that the horizon now reaches into their buckets,
 * in heap order, so each bucket receives them in (deadline, seq) order. */
static void migrate(hm_timers *t)
{
    for (;;) {
        heap_prune(t);
        if (t->heap_len == 0 || t->heap[0].deadline_ms >= t->cursor_ms + SLOTS)
            return;
        hm_theap_entry e = t->heap[0];
        pop_top(t);
        t->slots[e.slot].in_heap = false;
        bucket_append(t, bucket_of(e.deadline_ms), rec_entry(e.slot, e.seq));
    }
}

/* The cursor's bucket is empty: moves the cursor to the next millisecond
 * that holds a timer (a bucket, or the heap's top when the wheel is empty),
 * but never past `now_ms`. False if it cannot move. */
static bool advance(hm_timers *t, uint64_t now_ms)
{
    uint64_t to;
    uint32_t gap;

    if (t->cursor_ms >= now_ms)
        return false;
    gap = first_used(t);
    if (gap < SLOTS) {
        to = t->cursor_ms + gap;
    } else {
        heap_prune(t);
        to = t->heap_len > 0 ? t->heap[0].deadline_ms : now_ms;
    }
    if (to <= t->cursor_ms)
        to = t->cursor_ms + 1;
    t->cursor_ms = to < now_ms ? to : now_ms;
    migrate(t);
    return true;
}

/* Moves bucket `b`'s live entries to its front, in order, and gives back
 * the blocks this empties. */
static void compact_bucket(hm_timers *t, uint32_t b)
{
    hm_tbucket *k = &t->wheel[b];
    hm_tblock *rd, *wr;
    uint32_t ri, wi = 0, dropped = 0;

    if (!k->first)
        return;
    rd = wr = k->first;
    ri = (uint32_t)(k->rd - rd->items);
    for (;;) {
        if (ri == BLOCK_LEN && rd != k->last) {
            rd = rd->next;
            ri = 0;
        }
        if (&rd->items[ri] == k->wr)
            break;
        if (!wheel_live(t, &rd->items[ri])) {
            dropped++;
        } else {
            if (wi == BLOCK_LEN) {
                wr = wr->next; /* never past rd: wr trails it */
                wi = 0;
            }
            wr->items[wi++] = rd->items[ri];
        }
        ri++;
    }
    t->wheel_dead -= dropped;
    t->wheel_len -= dropped;
    if (wr == k->first && wi == 0) {
        reset_bucket(t, b);
        return;
    }
    while (wr != k->last) {
        hm_tblock *spare = wr->next;
        wr->next = spare == k->last ? NULL : spare->next;
        if (spare == k->last)
            k->last = wr;
        block_put(t, spare);
    }
    k->rd = k->first->items;
    k->wr = &wr->items[wi];
}

/* Compacts the buckets or rebuilds the heap when most of either is dead. */
static void compact_if_needed(hm_timers *t)
{
    if (t->heap_dead > REBUILD_MIN && t->heap_dead > t->heap_len / 2) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < t->heap_len; i++)
            if (heap_live(t, &t->heap[i]))
                t->heap[n++] = t->heap[i];
        t->heap_dead -= t->heap_len - n;
        t->heap_len = n;
        for (uint32_t i = t->heap_len / ARITY + 1; i-- > 0;)
            if (i < t->heap_len)
                sift_down(t, i);
    }
    if (t->wheel_dead > REBUILD_MIN && t->wheel_dead > t->wheel_len / 2)
        for (uint32_t b = 0; b < SLOTS; b++)
            compact_bucket(t, b);
}

/* ---------------------------------------------------------------- slots */

static uint32_t slot_alloc(hm_timers *t)
{
    uint32_t i;

    if (t->free_head != FREE_IDX) {
        i = t->free_head;
        t->free_head = t->slots[i].next_free;
        /* Freed records come back in firing order, scattered over the
         * slab: fetch the next one now, for the next arm. */
        if (t->free_head != FREE_IDX)
            __builtin_prefetch(&t->slots[t->free_head], 1);
        return i;
    }
    if (t->nslots == t->slots_cap) {
        t->slots_cap = t->slots_cap ? 2 * t->slots_cap : 64;
        t->slots = hm_realloc(t->slots, t->slots_cap * sizeof *t->slots);
    }
    i = t->nslots++;
    t->slots[i].gen = 1;
    return i;
}

static void slot_free(hm_timers *t, uint32_t i)
{
    hm_tslot *s = &t->slots[i];

    s->gen++;
    s->armed = false;
    s->to = NULL;
    s->msg = NULL;
    s->next_free = t->free_head;
    t->free_head = i;
}

/* ------------------------------------------------------------------ API */

hm_timer_id hm_timers_arm(hm_timers *t, uint64_t deadline_ms,
                          uint32_t period_ms, hm_addr *to, hm_msg *msg,
                          uint64_t tag)
{
    uint32_t i = slot_alloc(t);
    hm_tslot *s = &t->slots[i];

    s->deadline_ms = deadline_ms;
    s->seq = ++t->seq;
    s->tag = tag;
    s->to = to;
    s->msg = msg;
    s->period_ms = period_ms;
    s->armed = true;
    file_entry(t, i, deadline_ms, s->seq);
    t->armed++;
    return ((hm_timer_id)s->gen << 32) | (i + 1);
}

void hm_timers_arm_anon(hm_timers *t, uint64_t deadline_ms, hm_addr *to,
                        hm_msg *msg)
{
    hm_twheel_entry e = {.msg = msg};

    if (deadline_ms >= t->cursor_ms + SLOTS) {
        hm_timers_arm(t, deadline_ms, 0, to, msg, 0);
        return;
    }
    /* No record, but a place in the arming order all the same. */
    t->seq++;
    e.u.to = to;
    bucket_append(t, bucket_of(deadline_ms < t->cursor_ms ? t->cursor_ms
                                                          : deadline_ms),
                  e);
    t->armed++;
}

bool hm_timers_cancel(hm_timers *t, hm_timer_id id, hm_addr **to_out,
                      hm_msg **msg_out)
{
    uint32_t i = (uint32_t)(id & 0xffffffffu);
    hm_tslot *s;

    if (i == 0 || i > t->nslots)
        return false;
    s = &t->slots[--i];
    if (s->gen != (uint32_t)(id >> 32) || !s->armed)
        return false;
    *to_out = s->to;
    *msg_out = s->msg;
    if (s->in_heap)
        t->heap_dead++;
    else
        t->wheel_dead++;
    slot_free(t, i);
    t->armed--;
    compact_if_needed(t); /* dead entries are otherwise skipped when met */
    return true;
}

bool hm_timers_next(hm_timers *t, uint64_t *deadline_out)
{
    for (;;) {
        uint32_t gap = first_used(t);
        if (gap == SLOTS)
            break;
        if (bucket_front_live(t, bucket_of(t->cursor_ms + gap))) {
            *deadline_out = t->cursor_ms + gap;
            return true;
        }
    }
    heap_prune(t);
    if (t->heap_len == 0)
        return false;
    *deadline_out = t->heap[0].deadline_ms;
    return true;
}

/* Fills `out` from slot `i`, then frees or re-arms it. */
static void take(hm_timers *t, uint32_t i, uint64_t now_ms,
                 hm_timer_fire *out)
{
    hm_tslot *s = &t->slots[i];

    out->to = s->to;
    out->msg = s->msg;
    out->tag = s->tag;
    out->deadline_ms = s->deadline_ms;
    out->periodic = s->period_ms != 0;
    if (s->period_ms == 0 || now_ms == UINT64_MAX) {
        slot_free(t, i);
        t->armed--;
        return;
    }
    /* Periodic: the next deadline after `now`, on the original grid
     * (a popped timer's deadline is never after `now`). */
    hm_addr_ref(s->to);
    s->deadline_ms += ((now_ms - s->deadline_ms) / s->period_ms + 1) *
                      s->period_ms;
    s->seq = ++t->seq;
    file_entry(t, i, s->deadline_ms, s->seq);
}

/* Fills `out` from bucket entry `e` (taken from its bucket, due at
 * `due_ms`): an anonymous timer is all there; a record is taken. */
static void take_entry(hm_timers *t, const hm_twheel_entry *e, uint64_t due_ms,
                       uint64_t now_ms, hm_timer_fire *out)
{
    t->wheel_len--;
    if (!e->msg) {
        take(t, e->u.rec.slot, now_ms, out);
        return;
    }
    out->to = e->u.to;
    out->msg = e->msg;
    out->tag = 0;
    out->deadline_ms = due_ms;
    out->periodic = false;
    t->armed--;
}

/* Fetches what popping entry `e` a few pops from now will touch: an
 * anonymous timer's message, or a record (and, once the record is in
 * cache, its message). Written as a macro: GCC deletes a call to a function
 * that only prefetches, as free of side effects. */
#define PREFETCH_ENTRY(t, e, far)                                            \
    do {                                                                     \
        if (far) {                                                           \
            if (!(e)->msg)                                                   \
                __builtin_prefetch(&(t)->slots[(e)->u.rec.slot]);            \
        } else if ((e)->msg) {                                               \
            __builtin_prefetch((e)->msg, 1);                                 \
        } else if ((t)->slots[(e)->u.rec.slot].msg) {                        \
            __builtin_prefetch((t)->slots[(e)->u.rec.slot].msg, 1);          \
        }                                                                    \
    } while (0)

/* Fetches (PREFETCH_ENTRY) the entries PREFETCH_AHEAD and PREFETCH_AHEAD
 * / 2 places behind the front of a non-empty bucket, where they exist: in
 * the front block, or in the one after it. */
#define PREFETCH_AHEAD_OF(t, k)                                              \
    do {                                                                     \
        const hm_twheel_entry *end_ = (k)->first == (k)->last                \
                                          ? (k)->wr                          \
                                          : (k)->first->items + BLOCK_LEN;   \
        ptrdiff_t rem_ = end_ - (k)->rd;                                     \
        const hm_tblock *nx_ = (k)->first == (k)->last ? NULL                \
                                                       : (k)->first->next;   \
        ptrdiff_t nlen_ = !nx_ ? 0                                           \
                          : nx_ == (k)->last ? (k)->wr - nx_->items          \
                                             : (ptrdiff_t)BLOCK_LEN;         \
        for (ptrdiff_t d_ = PREFETCH_AHEAD; d_ > 0;                          \
             d_ -= PREFETCH_AHEAD / 2) {                                     \
            if (d_ < rem_)                                                   \
                PREFETCH_ENTRY(t, (k)->rd + d_, d_ == PREFETCH_AHEAD);       \
            else if (d_ - rem_ < nlen_)                                      \
                PREFETCH_ENTRY(t, &nx_->items[d_ - rem_],                    \
                               d_ == PREFETCH_AHEAD);                        \
        }                                                                    \
    } while (0)

/* Closing: every timer goes, buckets first, then the heap. */
static bool pop_any(hm_timers *t, hm_timer_fire *out)
{
    uint32_t gap;

    while ((gap = first_used(t)) < SLOTS) {
        uint32_t b = bucket_of(t->cursor_ms + gap);
        if (bucket_front_live(t, b)) {
            hm_tbucket *k = &t->wheel[b];
            take_entry(t, k->rd++, t->cursor_ms + gap,
                       UINT64_MAX, out);
            return true;
        }
    }
    heap_prune(t);
    if (t->heap_len == 0)
        return false;
    uint32_t i = t->heap[0].slot;
    pop_top(t);
    take(t, i, UINT64_MAX, out);
    return true;
}

bool hm_timers_pop_due(hm_timers *t, uint64_t now_ms, hm_timer_fire *out)
{
    if (now_ms == UINT64_MAX)
        return pop_any(t, out);
    for (;;) {
        uint32_t b = bucket_of(t->cursor_ms);
        hm_tbucket *k = &t->wheel[b];
        const hm_twheel_entry *e = k->rd;

        /* The usual case inline: the front is an anonymous timer (always
         * live) inside the front block; else the full check. */
        if (t->cursor_ms <= now_ms &&
            ((e != k->wr && e != k->first->items + BLOCK_LEN && e->msg) ||
             bucket_front_live(t, b))) {
            e = k->rd++;
            /* Messages and records are scattered (a bucket is in arming
             * order) and the caller touches each message, so they are
             * fetched a few pops ahead: a record PREFETCH_AHEAD entries
             * on, a message (an anonymous timer's, or the record's fetched
             * PREFETCH_AHEAD / 2 pops ago) PREFETCH_AHEAD / 2 on. */
            PREFETCH_AHEAD_OF(t, k);
            take_entry(t, e, t->cursor_ms, now_ms, out);
            return true;
        }
        if (!advance(t, now_ms))
            return false;
    }
}

uint32_t hm_timers_pop_due_n(hm_timers *t, uint64_t now_ms,
                             hm_timer_fire *out, uint32_t max)
{
    uint32_t n = 0;

    while (n < max) {
        hm_tbucket *k = &t->wheel[bucket_of(t->cursor_ms)];
        hm_twheel_entry *e = k->rd, *end;
        uint32_t run = n;

        if (now_ms != UINT64_MAX && t->cursor_ms <= now_ms && e != k->wr) {
            /* A run of anonymous timers in the front block: each is all
             * in its entry, always live, due at the cursor. Nothing here
             * touches their messages (the receiving turn fetches them,
             * runtime/batch.c), so none is prefetched onto this core. */
            end = k->first == k->last ? k->wr : k->first->items + BLOCK_LEN;
            for (; e < end && run < max && e->msg; e++, run++) {
                out[run].to = e->u.to;
                out[run].msg = e->msg;
                out[run].tag = 0;
                out[run].deadline_ms = t->cursor_ms;
                out[run].periodic = false;
            }
            if (run > n) {
                k->rd = e;
                t->wheel_len -= run - n;
                t->armed -= run - n;
                n = run;
                continue;
            }
        }
        /* A record, a block or bucket boundary, the cursor's move, or
         * the close: the general path. */
        if (!hm_timers_pop_due(t, now_ms, &out[n]))
            break;
        n++;
    }
    return n;
}

uint32_t hm_timers_count(const hm_timers *t)
{
    return t->armed;
}
