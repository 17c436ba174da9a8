/* apps/mqtt/gate.c: a FIFO ring of encoded packets tagged with the save
 * number that releases them. Tags never decrease along the ring (each
 * packet gets saves_sent + 1 at the time it is held, and saves_sent only
 * grows), so releasing is popping from the head while the tag is covered. */
#include "apps/mqtt/gate.h"

#include "runtime/alloc.h"

#include <string.h>

void mqtt_gate_hold(mqtt_gate *g, uint8_t *bytes, size_t len, bool publish)
{
    if (g->count == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        mqtt_gate_pkt *q = hm_alloc(cap * sizeof *q);

        for (size_t i = 0; i < g->count; i++)
            q[i] = g->q[(g->head + i) % g->cap];
        hm_free(g->q);
        g->q = q;
        g->cap = cap;
        g->head = 0;
    }
    g->q[(g->head + g->count++) % g->cap] = (mqtt_gate_pkt){
        .save = g->saves_sent + 1, .bytes = bytes, .len = len,
        .publish = publish};
}

uint64_t mqtt_gate_next_save(mqtt_gate *g)
{
    return ++g->saves_sent;
}

bool mqtt_gate_pop_committed(mqtt_gate *g, uint64_t n, mqtt_gate_pkt *out)
{
    if (n > g->saves_committed)
        g->saves_committed = n;
    if (g->count == 0 || g->q[g->head].save > g->saves_committed)
        return false;
    *out = g->q[g->head];
    g->head = (g->head + 1) % g->cap;
    g->count--;
    return true;
}

void mqtt_gate_drop(mqtt_gate *g)
{
    while (g->count > 0) {
        hm_free(g->q[g->head].bytes);
        g->head = (g->head + 1) % g->cap;
        g->count--;
    }
}

void mqtt_gate_fini(mqtt_gate *g)
{
    if (!g)
        return;
    mqtt_gate_drop(g);
    hm_free(g->q);
    memset(g, 0, sizeof *g);
}
