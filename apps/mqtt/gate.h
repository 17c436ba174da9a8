/* apps/mqtt/gate.h: packets a session holds back until the state that
 * produced them is committed to the store.
 *
 * With the `always` durability policy a persistent session must not tell
 * its client anything the store does not yet know: a PUBLISH with a packet
 * id the store has not recorded could be resent after a crash under
 * another id (a QoS 2 duplicate), a PUBREL whose stage was not recorded
 * would be followed by a second PUBLISH, a SUBACK would promise a
 * subscription a crash forgets. So the session encodes such packets into a
 * gate instead of the socket, each tagged with the number of the save that
 * will cover it (the next one), and writes them out when that save's
 * commit is reported. Saves are numbered in the order they are sent and
 * the store commits them in that order, so the gate is one FIFO. Pure
 * state, no I/O; one session owns it. */
#ifndef HM_APPS_MQTT_GATE_H
#define HM_APPS_MQTT_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mqtt_gate_pkt {
    uint64_t save;  /* written once save number `save` is committed */
    uint8_t *bytes; /* owned (hm_alloc) */
    size_t len;
    bool publish; /* a PUBLISH (for the slow-client rule and counters) */
} mqtt_gate_pkt;

/* Storage provided by the caller; a zeroed struct is an empty gate whose
 * next save is number 1. */
typedef struct mqtt_gate {
    uint64_t saves_sent;      /* the last save number handed out */
    uint64_t saves_committed; /* the last save number reported committed */
    mqtt_gate_pkt *q;         /* private: ring */
    size_t head, count, cap;
} mqtt_gate;

/* Holds `bytes` (taken) until the next save (saves_sent + 1) commits. */
void mqtt_gate_hold(mqtt_gate *g, uint8_t *bytes, size_t len, bool publish);
/* A save is being sent: returns its number (saves_sent + 1). */
uint64_t mqtt_gate_next_save(mqtt_gate *g);
/* Save `n` committed: pops, in order, every packet covered by saves up to
 * `n` into `*out` (returned owned: free its bytes) one at a time; call
 * until it returns false. */
bool mqtt_gate_pop_committed(mqtt_gate *g, uint64_t n, mqtt_gate_pkt *out);
/* Drops every held packet (the connection went away). */
void mqtt_gate_drop(mqtt_gate *g);
/* Frees what the gate holds. Accepts NULL. */
void mqtt_gate_fini(mqtt_gate *g);

#endif
