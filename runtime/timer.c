/* runtime/timer.c: the 4-ary min-heap over a slab (see timer.h).
 *
 * Cancellation is lazy, as in Go's runtime: cancel frees the record at once
 * (so its slot and id generation move on) and leaves the heap entry behind;
 * an entry whose sequence number no longer matches its record's is dead and
 * is dropped when it reaches the top. Keeping each record's heap position
 * up to date instead cost one more cache miss per level on every sift, which
 * at 1,000,000 armed timers made the timer thread the bottleneck. When dead
 * entries outnumber live ones the heap is rebuilt in O(n), so timers that
 * are almost always cancelled (request timeouts) cannot bloat it. */
#include "runtime/timer.h"

#include "runtime/alloc.h"

#include <string.h>

#define FREE_IDX UINT32_MAX
#define ARITY 4u
#define REBUILD_MIN 1024u

void hm_timers_init(hm_timers *t)
{
    memset(t, 0, sizeof *t);
    t->free_head = FREE_IDX;
}

void hm_timers_fini(hm_timers *t)
{
    hm_free(t->slots);
    hm_free(t->heap);
    memset(t, 0, sizeof *t);
}

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

static bool entry_live(const hm_timers *t, const hm_theap_entry *e)
{
    const hm_tslot *s = &t->slots[e->slot];
    return s->armed && s->seq == e->seq;
}

/* Drops dead entries from the top, and rebuilds when most are dead. */
static void prune(hm_timers *t)
{
    uint32_t live = t->heap_len - t->dead;

    if (t->dead > REBUILD_MIN && t->dead > live) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < t->heap_len; i++)
            if (entry_live(t, &t->heap[i]))
                t->heap[n++] = t->heap[i];
        t->heap_len = n;
        t->dead = 0;
        for (uint32_t i = n / ARITY + 1; i-- > 0;)
            if (i < n)
                sift_down(t, i);
    }
    while (t->heap_len > 0 && !entry_live(t, &t->heap[0])) {
        pop_top(t);
        t->dead--;
    }
}

static uint32_t slot_alloc(hm_timers *t)
{
    uint32_t i;

    if (t->free_head != FREE_IDX) {
        i = t->free_head;
        t->free_head = t->slots[i].next_free;
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

static void heap_push(hm_timers *t, uint64_t deadline_ms, uint64_t seq,
                      uint32_t slot)
{
    if (t->heap_len == t->heap_cap) {
        t->heap_cap = t->heap_cap ? 2 * t->heap_cap : 64;
        t->heap = hm_realloc(t->heap, t->heap_cap * sizeof *t->heap);
    }
    t->heap[t->heap_len] = (hm_theap_entry){deadline_ms, seq, slot};
    sift_up(t, t->heap_len++);
}

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
    heap_push(t, deadline_ms, s->seq, i);
    t->armed++;
    return ((hm_timer_id)s->gen << 32) | (i + 1);
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
    slot_free(t, i);
    t->armed--;
    t->dead++;
    prune(t);
    return true;
}

bool hm_timers_next(hm_timers *t, uint64_t *deadline_out)
{
    prune(t);
    if (t->heap_len == 0)
        return false;
    *deadline_out = t->heap[0].deadline_ms;
    return true;
}

bool hm_timers_pop_due(hm_timers *t, uint64_t now_ms, hm_timer_fire *out)
{
    uint32_t i;
    hm_tslot *s;

    prune(t);
    if (t->heap_len == 0 || t->heap[0].deadline_ms > now_ms)
        return false;
    i = t->heap[0].slot;
    s = &t->slots[i];
    out->to = s->to;
    out->msg = s->msg;
    out->tag = s->tag;
    out->deadline_ms = s->deadline_ms;
    if (s->period_ms == 0 || now_ms == UINT64_MAX) {
        pop_top(t);
        slot_free(t, i);
        t->armed--;
        return true;
    }
    /* Periodic: the next deadline after `now`, on the original grid. */
    hm_addr_ref(s->to);
    s->deadline_ms += ((now_ms - s->deadline_ms) / s->period_ms + 1) *
                      s->period_ms;
    s->seq = ++t->seq;
    t->heap[0].deadline_ms = s->deadline_ms;
    t->heap[0].seq = s->seq;
    sift_down(t, 0);
    return true;
}

uint32_t hm_timers_count(const hm_timers *t)
{
    return t->armed;
}
