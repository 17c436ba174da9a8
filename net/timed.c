/* net/timed.c: a loop's connection deadlines, in a timing wheel.
 *
 * A connection has at most two clocks: its state's deadline (a connect
 * timeout, a close's linger, the grace after a framing error) and an idle
 * timeout (no frame for idle_ms: the owner asked for it, as MQTT's
 * keepalive does). Idle timeouts are on every connection of a broker, so
 * both must cost O(1): a frame only stores the current tick (no refiling),
 * and a connection sits in one slot of a hashed wheel (16 ms ticks, 2048
 * slots) at the nearest of its two times, with an intrusive doubly linked
 * list so unfiling is O(1) too. When its slot comes round, the conn is
 * checked: if nothing is due yet (a frame came since it was filed, or its
 * time is rounds away), it is filed again. The loop wakes for the nearest
 * non-empty slot, found through a bitmap. ADR 0150. I/O thread only. */
#include "net/net_impl.h"

static uint64_t tick_of(uint64_t ms)
{
    return ms / HM_WHEEL_GRAIN_MS;
}

void hm_conn_unfile(hm_conn *c)
{
    if (!c->timed)
        return;
    *c->timed_pprev = c->timed_next;
    if (c->timed_next)
        c->timed_next->timed_pprev = c->timed_pprev;
    else if (c->timed_pprev >= &c->loop->wheel[0] &&
             c->timed_pprev < &c->loop->wheel[HM_WHEEL_SLOTS] &&
             *c->timed_pprev == NULL) {
        size_t i = (size_t)(c->timed_pprev - &c->loop->wheel[0]);

        c->loop->wheel_bits[i / 64] &= ~(1ull << (i % 64));
    }
    c->timed = false;
    c->timed_next = NULL;
    c->timed_pprev = NULL;
}

uint64_t hm_conn_idle_due(const hm_conn *c)
{
    uint64_t now_tick = tick_of(c->loop->now_ms);
    uint32_t idle_ticks;

    if (!c->idle_ms || c->state != CONN_OPEN || c->read_done)
        return UINT64_MAX;
    /* Ticks since the last frame, mod 2^32 (right for idle times below
     * two years); counted from the end of that frame's tick, so the
     * timeout never expires early. */
    idle_ticks = (uint32_t)now_tick - c->last_rx_tick;
    return (now_tick - idle_ticks + 1) * HM_WHEEL_GRAIN_MS + c->idle_ms;
}

void hm_conn_refile(hm_conn *c)
{
    hm_loop *loop = c->loop;
    uint64_t due = hm_conn_idle_due(c), tick;
    size_t i;

    if (c->deadline_ms && c->deadline_ms < due)
        due = c->deadline_ms;
    hm_conn_unfile(c);
    if (due == UINT64_MAX || c->state == CONN_CLOSED)
        return;
    /* Rounded up, so nothing fires early; never before the next tick the
     * wheel runs, so nothing is filed where the wheel has passed. */
    tick = tick_of(due + HM_WHEEL_GRAIN_MS - 1);
    if (tick < loop->wheel_tick)
        tick = loop->wheel_tick;
    i = tick % HM_WHEEL_SLOTS;
    c->timed_next = loop->wheel[i];
    if (c->timed_next)
        c->timed_next->timed_pprev = &c->timed_next;
    c->timed_pprev = &loop->wheel[i];
    loop->wheel[i] = c;
    loop->wheel_bits[i / 64] |= 1ull << (i % 64);
    c->timed = true;
}

void hm_conn_set_deadline(hm_conn *c, uint64_t deadline_ms)
{
    c->deadline_ms = deadline_ms;
    hm_conn_refile(c);
}

void hm_conn_mark_rx(hm_conn *c)
{
    c->last_rx_tick = (uint32_t)tick_of(c->loop->now_ms);
}

/* The first tick at or after `from` whose slot is not empty, or
 * UINT64_MAX if the wheel is empty. */
static uint64_t next_busy_tick(const hm_loop *loop, uint64_t from)
{
    for (uint64_t t = from; t < from + HM_WHEEL_SLOTS;) {
        size_t i = t % HM_WHEEL_SLOTS;
        uint64_t word = loop->wheel_bits[i / 64] >> (i % 64);

        if (word)
            return t + (uint64_t)__builtin_ctzll(word);
        t += 64 - i % 64;
    }
    return UINT64_MAX;
}

uint64_t hm_loop_run_wheel(hm_loop *loop, uint64_t now_ms)
{
    uint64_t now_tick = tick_of(now_ms), t, next;
    hm_conn *due = NULL;

    /* Collect first, then run: a deadline that refiles cannot spin this
     * pass (STYLE 9). A long sleep runs each slot once. */
    for (t = next_busy_tick(loop, loop->wheel_tick);
         t <= now_tick && t < loop->wheel_tick + HM_WHEEL_SLOTS;
         t = next_busy_tick(loop, t + 1)) {
        size_t i = t % HM_WHEEL_SLOTS;

        while (loop->wheel[i]) {
            hm_conn *c = loop->wheel[i];

            hm_conn_unfile(c);
            c->timed_next = due;
            due = c;
        }
    }
    if (now_tick + 1 > loop->wheel_tick)
        loop->wheel_tick = now_tick + 1;
    while (due) {
        hm_conn *c = due;

        due = c->timed_next;
        c->timed_next = NULL;
        hm_conn_on_deadline(c, now_ms); /* acts, refiles, or both */
    }
    next = next_busy_tick(loop, loop->wheel_tick);
    return next == UINT64_MAX ? UINT64_MAX : next * HM_WHEEL_GRAIN_MS;
}
