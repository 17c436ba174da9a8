/* apps/mqtt/inflight.h: a session's outbound QoS 1/2 flow (the inflight
 * window and the queue behind it) and its inbound QoS 2 packet ids.
 *
 * This is the part of a session that decides *what* to send and when a
 * message is done, kept pure so that every transition is unit-tested: no
 * I/O, no clock, no globals, no knowledge of what an item is (the broker
 * stores a refcounted message pointer; tests store integers). The key
 * decision is that a message gets its packet id only when it enters the
 * window, never while it waits in the queue: so at most `window` ids are in
 * use, an id is never reused while its exchange is open [MQTT-2.3.1-2], and
 * a message that was never sent is never marked DUP when a session resumes
 * on a new connection [MQTT-4.4.0-1]. Messages enter the window in the
 * order they were offered, so the client sees them in publish order
 * [MQTT-4.6.0-2..3]. */
#ifndef HM_APPS_MQTT_INFLIGHT_H
#define HM_APPS_MQTT_INFLIGHT_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where an outbound exchange stands (section 4.3). */
typedef enum {
    MQTT_OUT_WAIT_PUBACK = 1, /* QoS 1: PUBLISH sent */
    MQTT_OUT_WAIT_PUBREC,     /* QoS 2: PUBLISH sent */
    MQTT_OUT_WAIT_PUBCOMP,    /* QoS 2: PUBREL sent, the item released */
} mqtt_out_state;

/* Releases an item the flow no longer holds. */
typedef void (*mqtt_item_release_fn)(void *item);

typedef struct mqtt_inflight mqtt_inflight;

/* Returns owned; never NULL. `window` (>= 1, <= 65535) is the most
 * messages in flight at once; `queue_limit` the most waiting behind them
 * (0: no limit). `release` frees items on clear and destroy (NULL: none). */
mqtt_inflight *mqtt_inflight_create(uint32_t window, uint32_t queue_limit,
                                    mqtt_item_release_fn release);
/* Releases every held item, then frees. Accepts NULL. */
void mqtt_inflight_destroy(mqtt_inflight *f);
/* Releases every held item and forgets every exchange. */
void mqtt_inflight_clear(mqtt_inflight *f);

typedef enum {
    MQTT_OFFER_SEND,    /* in the window now: send it with *pid_out */
    MQTT_OFFER_QUEUED,  /* waiting for room (or for the client) */
    MQTT_OFFER_DROPPED, /* the queue is full: the caller keeps the item */
} mqtt_offer;

/* Offers a QoS 1 or 2 `item` (taken unless DROPPED). When `online` and the
 * window has room and nothing is queued before it, it enters the window
 * with a fresh packet id; else it is queued, if the queue has room. */
mqtt_offer mqtt_inflight_offer(mqtt_inflight *f, void *item, uint8_t qos,
                               bool online, uint16_t *pid_out);

/* Moves the oldest queued message into the window if there is room: on
 * true, `*item_out` (returns borrowed, held by the flow until its exchange
 * ends), `*qos_out` and `*pid_out` say what to send now. */
bool mqtt_inflight_next(mqtt_inflight *f, void **item_out, uint8_t *qos_out,
                        uint16_t *pid_out);

/* A PUBACK for `pid`: ends a QoS 1 exchange and releases its item.
 * Errors: HM_ENOTFOUND (no QoS 1 exchange with that id). */
hm_err mqtt_inflight_puback(mqtt_inflight *f, uint16_t pid);
/* A PUBREC for `pid`: the QoS 2 exchange moves on to PUBREL, and the item
 * is released (the message is delivered; only its id is kept). A repeated
 * PUBREC is HM_OK again (answer it with PUBREL again).
 * Errors: HM_ENOTFOUND. */
hm_err mqtt_inflight_pubrec(mqtt_inflight *f, uint16_t pid);
/* A PUBCOMP for `pid`: ends a QoS 2 exchange. Errors: HM_ENOTFOUND. */
hm_err mqtt_inflight_pubcomp(mqtt_inflight *f, uint16_t pid);

/* Calls `fn` for every exchange in the window, oldest first: what to send
 * again when a session resumes (PUBLISH with DUP for WAIT_PUBACK and
 * WAIT_PUBREC, PUBREL for WAIT_PUBCOMP, whose item is NULL). `item` is
 * borrowed for the call; `fn` must not modify the flow. */
typedef void (*mqtt_inflight_fn)(void *arg, void *item, uint8_t qos,
                                 uint16_t pid, mqtt_out_state state);
void mqtt_inflight_each(const mqtt_inflight *f, mqtt_inflight_fn fn,
                        void *arg);

size_t mqtt_inflight_count(const mqtt_inflight *f); /* in the window */
size_t mqtt_inflight_queued(const mqtt_inflight *f); /* waiting */

/* ------------------------------------------------- inbound QoS 2 ids */

/* The packet ids of QoS 2 PUBLISHes received and not yet released by a
 * PUBREL: a PUBLISH whose id is here is a resend and must not be delivered
 * again [MQTT-4.3.3-2]. A sorted array: at most 65535 ids, 2 bytes each. */
typedef struct mqtt_pidset mqtt_pidset;

/* Returns owned; never NULL. */
mqtt_pidset *mqtt_pidset_create(void);
/* Accepts NULL. */
void mqtt_pidset_destroy(mqtt_pidset *s);
/* Adds `pid`; false if it was already there. */
bool mqtt_pidset_add(mqtt_pidset *s, uint16_t pid);
/* Removes `pid`; false if it was not there. */
bool mqtt_pidset_remove(mqtt_pidset *s, uint16_t pid);
bool mqtt_pidset_contains(const mqtt_pidset *s, uint16_t pid);
size_t mqtt_pidset_count(const mqtt_pidset *s);

#endif
