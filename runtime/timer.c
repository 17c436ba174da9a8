/* runtime/timer.c: the 4-ary min-heap over a slab, fed by a wheel of
 * per-window buckets (see timer.h).
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

#define GRAIN HM_TIMER_GRAIN_MS
#define SLOTS HM_TIMER_WHEEL_SLOTS

void hm_timers_init(hm_timers *t, uint64_t now_ms)
{
    memset(t, 0, sizeof *t);
    t->free_head = FREE_IDX;
    t->wheel_ms = now_ms - now_ms % GRAIN;
}

void hm_timers_fini(hm_timers *t)
{
    hm_free(t->slots);
    hm_free(t->heap);
    for (uint32_t i = 0; i < SLOTS; i++)
        hm_free(t->wheel[i].items);
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

/* Keeps only the live entries of items[0, *len); returns how many died. */
static uint32_t compact(const hm_timers *t, hm_theap_entry *items,
                        uint32_t *len)
{
    uint32_t n = 0, old = *len;

    for (uint32_t i = 0; i < old; i++)
        if (entry_live(t, &items[i]))
            items[n++] = items[i];
    *len = n;
    return old - n;
}

/* Rebuilds the heap, or compacts the wheel, when most of it is dead. */
static void compact_if_needed(hm_timers *t)
{
    if (t->heap_dead > REBUILD_MIN && t->heap_dead > t->heap_len / 2) {
        t->heap_dead -= compact(t, t->heap, &t->heap_len);
        for (uint32_t i = t->heap_len / ARITY + 1; i-- > 0;)
            if (i < t->heap_len)
                sift_down(t, i);
    }
    if (t->wheel_dead > REBUILD_MIN && t->wheel_dead > t->wheel_len / 2) {
        for (uint32_t b = 0; b < SLOTS; b++) {
            uint32_t died = compact(t, t->wheel[b].items, &t->wheel[b].len);
            t->wheel_dead -= died;
            t->wheel_len -= died;
        }
    }
}

/* Drops dead entries from the top, and compacts when most are dead. */
static void prune(hm_timers *t)
{
    compact_if_needed(t);
    while (t->heap_len > 0 && !entry_live(t, &t->heap[0])) {
        pop_top(t);
        t->heap_dead--;
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

static void heap_push(hm_timers *t, const hm_theap_entry *e)
{
    if (t->heap_len == t->heap_cap) {
        t->heap_cap = t->heap_cap ? 2 * t->heap_cap : 64;
        t->heap = hm_realloc(t->heap, t->heap_cap * sizeof *t->heap);
    }
    t->heap[t->heap_len] = *e;
    sift_up(t, t->heap_len++);
}

/* Files a new entry: into its window's bucket if that window is still in
 * the wheel, else straight into the heap. */
static void file_entry(hm_timers *t, const hm_theap_entry *e)
{
    hm_tslot *s = &t->slots[e->slot];

    if (e->deadline_ms < t->wheel_ms ||
        e->deadline_ms >= t->wheel_ms + (uint64_t)SLOTS * GRAIN) {
        s->in_wheel = false;
        heap_push(t, e);
        return;
    }
    hm_tbucket *b = &t->wheel[(e->deadline_ms / GRAIN) % SLOTS];
    if (b->len == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 16;
        b->items = hm_realloc(b->items, b->cap * sizeof *b->items);
    }
    b->items[b->len++] = *e;
    t->wheel_len++;
    s->in_wheel = true;
}

/* Moves every window that starts before now + one window into the heap. */
static void migrate(hm_timers *t, uint64_t now_ms)
{
    if (t->wheel_len == 0) {
        if (now_ms != UINT64_MAX && now_ms > t->wheel_ms)
            t->wheel_ms = now_ms - now_ms % GRAIN;
        return;
    }
    while (t->wheel_len > 0 &&
           (now_ms == UINT64_MAX || t->wheel_ms <= now_ms + GRAIN)) {
        hm_tbucket *b = &t->wheel[(t->wheel_ms / GRAIN) % SLOTS];
        for (uint32_t i = 0; i < b->len; i++) {
            if (entry_live(t, &b->items[i])) {
                t->slots[b->items[i].slot].in_wheel = false;
                heap_push(t, &b->items[i]);
            } else {
                t->wheel_dead--;
            }
        }
        t->wheel_len -= b->len;
        b->len = 0;
        t->wheel_ms += GRAIN;
    }
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
    file_entry(t, &(hm_theap_entry){deadline_ms, s->seq, i});
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
    if (s->in_wheel)
        t->wheel_dead++;
    else
        t->heap_dead++;
    slot_free(t, i);
    t->armed--;
    compact_if_needed(t); /* dead tops are dropped by the next pop */
    return true;
}

bool hm_timers_next(hm_timers *t, uint64_t *deadline_out)
{
    bool any = false;

    prune(t);
    if (t->heap_len > 0) {
        *deadline_out = t->heap[0].deadline_ms;
        any = true;
    }
    if (t->wheel_len > 0) {
        uint64_t mig = t->wheel_ms >= GRAIN ? t->wheel_ms - GRAIN : 0;
        if (!any || mig < *deadline_out)
            *deadline_out = mig;
        any = true;
    }
    return any;
}

bool hm_timers_pop_due(hm_timers *t, uint64_t now_ms, hm_timer_fire *out)
{
    uint32_t i;
    hm_tslot *s;

    migrate(t, now_ms);
    prune(t);
    if (t->heap_len == 0 || t->heap[0].deadline_ms > now_ms)
        return false;
    i = t->heap[0].slot;
    s = &t->slots[i];
    out->to = s->to;
    out->msg = s->msg;
    out->tag = s->tag;
    out->deadline_ms = s->deadline_ms;
    out->periodic = s->period_ms != 0;
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
