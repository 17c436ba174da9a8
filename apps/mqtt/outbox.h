/* apps/mqtt/outbox.h: one session's QoS bookkeeping, as pure state
 * machines: the messages going to the client (queue, inflight window,
 * packet ids, acknowledgements, resends) and the QoS 2 packet ids coming
 * from it.
 *
 * Outgoing, a message is first queued, then moved into the inflight window
 * (getting a packet id) when the window has room, then leaves on PUBACK
 * (QoS 1) or PUBREC+PUBCOMP (QoS 2) [MQTT-4.3.2/4.3.3]. The outbox never
 * sends anything itself: the session asks it what to transmit next
 * (mqtt_outbox_next) whenever the connection can take more, so the same
 * code serves a live connection and a reconnect. On a reconnect every
 * unacknowledged PUBLISH is resent with DUP=1 and every pending PUBREL
 * again, in their original order [MQTT-4.4.0-1] [MQTT-4.6.0-1..3]. The
 * message itself is opaque (`void *`, released through a callback), so the
 * broker decides how payloads are shared between sessions.
 *
 * Incoming, a QoS 2 PUBLISH must be delivered once however often the client
 * resends it before its PUBREL [MQTT-4.3.3-2]: mqtt_qos2_ids remembers the
 * packet ids in between. Neither structure is thread-safe: one session
 * receiver owns them. */
#ifndef HM_APPS_MQTT_OUTBOX_H
#define HM_APPS_MQTT_OUTBOX_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Releases a message the outbox took (called once per message). */
typedef void (*mqtt_msg_release_fn)(void *msg);

typedef struct mqtt_outbox_config {
    uint32_t max_inflight; /* QoS 1/2 messages awaiting ack; 0: 65535 */
    uint32_t max_queued;   /* messages waiting for the window; 0: no cap */
    mqtt_msg_release_fn release; /* may be NULL: messages not owned */
} mqtt_outbox_config;

typedef enum {
    MQTT_OUT_PUBLISH, /* send PUBLISH(msg, qos, packet_id, dup) */
    MQTT_OUT_PUBREL,  /* send PUBREL(packet_id) */
} mqtt_out_kind;

typedef struct mqtt_out_action {
    mqtt_out_kind kind;
    void *msg;          /* PUBLISH only */
    uint8_t qos;        /* PUBLISH only */
    uint16_t packet_id; /* 0 for QoS 0 */
    bool dup;           /* a resend [MQTT-3.3.1-1] */
    /* True for QoS 0: the caller now owns `msg` and releases it after
     * sending. False: `msg` returns borrowed until its acknowledgement is
     * passed to mqtt_outbox_ack() or the outbox is destroyed. */
    bool caller_owns_msg;
} mqtt_out_action;

typedef struct mqtt_outbox mqtt_outbox;

/* Returns owned; never NULL. Borrows `cfg` (copied). Starts offline. */
mqtt_outbox *mqtt_outbox_create(const mqtt_outbox_config *cfg);
/* Releases every message still held. Accepts NULL. */
void mqtt_outbox_destroy(mqtt_outbox *o);

/* Offer `msg` for delivery at `qos` (the minimum of the PUBLISH's and the
 * subscription's). Takes `msg` on HM_OK. A QoS 0 message offered while
 * offline is dropped (released; HM_OK), as mosquitto does by default.
 * Errors: HM_EFULL when max_queued messages already wait (the caller keeps
 * `msg` and counts a dropped message); HM_EINVAL for QoS > 2. */
hm_err mqtt_outbox_push(mqtt_outbox *o, void *msg, uint8_t qos);

/* The next thing to send while online, or false if there is nothing (or
 * the window is full, or the outbox is offline). */
bool mqtt_outbox_next(mqtt_outbox *o, mqtt_out_action *out);

/* An acknowledgement from the client: MQTT 3.1.1 packet type 4 (PUBACK),
 * 5 (PUBREC) or 7 (PUBCOMP) for `packet_id`. Errors: HM_ENOTFOUND if no
 * inflight message waits for that acknowledgement (the session logs it and
 * carries on: a late duplicate is legal after a reconnect). */
hm_err mqtt_outbox_ack(mqtt_outbox *o, int packet_type, uint16_t packet_id);

/* The connection went away: queued QoS 0 messages are dropped, and every
 * inflight message is marked for resending on the next connection. */
void mqtt_outbox_go_offline(mqtt_outbox *o);
/* A connection resumed the session: mqtt_outbox_next() yields the resends
 * first, in their original order. */
void mqtt_outbox_go_online(mqtt_outbox *o);

size_t mqtt_outbox_inflight_count(const mqtt_outbox *o);
size_t mqtt_outbox_queued_count(const mqtt_outbox *o);

/* ------------------------------------------- saving and restoring */

/* One message of the outbox as mqtt_outbox_foreach() shows it, or as
 * mqtt_outbox_restore() takes it. `stage` uses session_state.h's numbers:
 * 0 queued, 1 awaiting PUBACK, 2 awaiting PUBREC, 3 awaiting PUBCOMP (the
 * message is gone: `msg` NULL, only the PUBREL is left). */
typedef struct mqtt_out_entry {
    void *msg; /* borrowed (foreach) or taken (restore); NULL at stage 3 */
    uint8_t qos;
    uint8_t stage;
    uint16_t packet_id; /* 0 when queued */
    bool sent;          /* in flight and transmitted at least once */
} mqtt_out_entry;

/* Calls `fn` for every QoS 1/2 message: those in flight in send order,
 * then the queued ones in order (queued QoS 0 messages are skipped: they
 * do not outlive a connection). `fn` must not change `o`. */
void mqtt_outbox_foreach(const mqtt_outbox *o,
                         void (*fn)(void *arg, const mqtt_out_entry *e),
                         void *arg);
/* Where the packet id counter resumes. */
uint16_t mqtt_outbox_next_id(const mqtt_outbox *o);

/* Appends `e` (its msg taken on HM_OK): stage 0 to the queue, 1..3 to the
 * inflight window (marked to be sent again, with DUP if it was sent, when
 * next online). Restore in foreach's order. Errors: HM_EINVAL (a bad qos,
 * stage or packet id, a stage that does not fit the qos, a packet id
 * already in flight, a message missing or present against its stage). */
hm_err mqtt_outbox_restore(mqtt_outbox *o, const mqtt_out_entry *e);
/* Sets where the packet id counter resumes (0 is taken as 1). */
void mqtt_outbox_set_next_id(mqtt_outbox *o, uint16_t id);

/* ------------------------------------------------------ incoming QoS 2 */

/* Packet ids of QoS 2 PUBLISHes received and not yet released. Storage
 * provided by the caller; a zeroed struct is empty. */
typedef struct mqtt_qos2_ids {
    uint16_t *ids; /* private: sorted */
    size_t count, cap;
} mqtt_qos2_ids;

/* Record that a QoS 2 PUBLISH with `packet_id` arrived. Returns true if it
 * is new (deliver it), false if it is a resend of one not yet released
 * (answer PUBREC again but do not deliver) [MQTT-4.3.3-2]. */
bool mqtt_qos2_ids_receive(mqtt_qos2_ids *s, uint16_t packet_id);
/* PUBREL for `packet_id`: forget it (answer PUBCOMP whether or not it was
 * known). Returns whether it was known. */
bool mqtt_qos2_ids_release(mqtt_qos2_ids *s, uint16_t packet_id);
/* Accepts NULL. */
void mqtt_qos2_ids_fini(mqtt_qos2_ids *s);

#endif
