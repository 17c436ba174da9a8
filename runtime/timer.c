/* runtime/timer.c: the binary min-heap over a slab (see timer.h).
 *
 * The heap stores slot indices and every slot remembers its heap position,
 * so cancel is O(log n) without a search. Sifting compares (deadline, seq)
 * so that timers with equal deadlines keep their arming order. */
#include "runtime/timer.h"

#include "runtime/alloc.h"

#include <string.h>

#define FREE_IDX UINT32_MAX

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

static bool before(const hm_timers *t, uint32_t a, uint32_t b)
{
    const hm_tslot *x = &t->slots[a], *y = &t->slots[b];
    if (x->deadline_ms != y->deadline_ms)
        return x->deadline_ms < y->deadline_ms;
    return x->seq < y->seq;
}

static void heap_set(hm_timers *t, uint32_t pos, uint32_t slot)
{
    t->heap[pos] = slot;
    t->slots[slot].heap_idx = pos;
}

static void sift_up(hm_timers *t, uint32_t pos)
{
    uint32_t slot = t->heap[pos];

    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!before(t, slot, t->heap[parent]))
            break;
        heap_set(t, pos, t->heap[parent]);
        pos = parent;
    }
    heap_set(t, pos, slot);
}

static void sift_down(hm_timers *t, uint32_t pos)
{
    uint32_t slot = t->heap[pos];

    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= t->heap_len)
            break;
        if (child + 1 < t->heap_len &&
            before(t, t->heap[child + 1], t->heap[child]))
            child++;
        if (!before(t, t->heap[child], slot))
            break;
        heap_set(t, pos, t->heap[child]);
        pos = child;
    }
    heap_set(t, pos, slot);
}

static void heap_remove(hm_timers *t, uint32_t pos)
{
    uint32_t last = t->heap[--t->heap_len];

    t->slots[t->heap[pos]].heap_idx = FREE_IDX;
    if (pos == t->heap_len)
        return;
    heap_set(t, pos, last);
    sift_down(t, pos);
    sift_up(t, t->slots[last].heap_idx);
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
        t->heap = hm_realloc(t->heap, t->slots_cap * sizeof *t->heap);
        t->heap_cap = t->slots_cap;
    }
    i = t->nslots++;
    t->slots[i].gen = 1;
    return i;
}

static void slot_free(hm_timers *t, uint32_t i)
{
    hm_tslot *s = &t->slots[i];

    s->gen++;
    s->to = NULL;
    s->msg = NULL;
    s->heap_idx = FREE_IDX;
    s->next_free = t->free_head;
    t->free_head = i;
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
    t->heap_len++;
    heap_set(t, t->heap_len - 1, i);
    sift_up(t, t->heap_len - 1);
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
    if (s->gen != (uint32_t)(id >> 32) || s->heap_idx == FREE_IDX)
        return false;
    *to_out = s->to;
    *msg_out = s->msg;
    heap_remove(t, s->heap_idx);
    slot_free(t, i);
    return true;
}

bool hm_timers_next(const hm_timers *t, uint64_t *deadline_out)
{
    if (t->heap_len == 0)
        return false;
    *deadline_out = t->slots[t->heap[0]].deadline_ms;
    return true;
}

bool hm_timers_pop_due(hm_timers *t, uint64_t now_ms, hm_timer_fire *out)
{
    uint32_t i;
    hm_tslot *s;

    if (t->heap_len == 0)
        return false;
    i = t->heap[0];
    s = &t->slots[i];
    if (s->deadline_ms > now_ms)
        return false;
    out->to = s->to;
    out->msg = s->msg;
    out->tag = s->tag;
    out->deadline_ms = s->deadline_ms;
    if (s->period_ms == 0 || now_ms == UINT64_MAX) {
        heap_remove(t, 0);
        slot_free(t, i);
        return true;
    }
    /* Periodic: the next deadline after `now`, on the original grid. */
    hm_addr_ref(s->to);
    s->deadline_ms += ((now_ms - s->deadline_ms) / s->period_ms + 1) *
                      s->period_ms;
    s->seq = ++t->seq;
    sift_down(t, 0);
    return true;
}

uint32_t hm_timers_count(const hm_timers *t)
{
    return t->heap_len;
}
