/* apps/mqtt/session_state.h: a persistent session's state as bytes, and
 * back.
 *
 * What MQTT says outlives a connection (section 3.1.2.4) is written down
 * here as one byte string: the client id, the subscriptions with their
 * granted QoS, the QoS 1/2 messages in flight (packet id, whether they were
 * sent, and for QoS 2 whether PUBREC came, i.e. only the PUBREL is left),
 * the QoS 1/2 messages queued behind the window, the next packet id, and
 * the ids of inbound QoS 2 messages the client has not released. The store
 * keeps it across a restart (persist.h) and a cluster hands a session to
 * another node with it. The module is pure: no I/O, no globals, and it
 * knows nothing of the store or of receivers.
 *
 * The key decision (docs/adr/0110) is a compact binary format of our own,
 * versioned, big-endian, length-prefixed, and decoded zero-copy: topics,
 * filters and payloads come back as views into the caller's buffer, so a
 * session with a deep queue is restored without a second copy of every
 * payload, and every field is checked (QoS, stage, packet ids unique and
 * non-zero, topic and filter rules, counts against the bytes left, no
 * trailing bytes), so a damaged record is an error, never a crash. */
#ifndef HM_APPS_MQTT_SESSION_STATE_H
#define HM_APPS_MQTT_SESSION_STATE_H

#include "apps/mqtt/codec.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The first bytes of every record: "HMQS" and the format version. Version
 * 2 adds the move generation (docs/adr/0290); version 1 records still
 * decode, with generation 0. */
#define MQTT_SESSION_STATE_MAGIC "HMQS"
#define MQTT_SESSION_STATE_VERSION 2

/* Where an in-flight message stands [MQTT-4.3.2, 4.3.3]. */
typedef enum {
    MQTT_STAGE_AWAIT_PUBACK = 1,  /* QoS 1, PUBLISH sent or to send */
    MQTT_STAGE_AWAIT_PUBREC = 2,  /* QoS 2, PUBLISH sent or to send */
    MQTT_STAGE_AWAIT_PUBCOMP = 3, /* QoS 2, PUBREC came: PUBREL to (re)send;
                                     the message itself is gone */
} mqtt_msg_stage;

typedef struct mqtt_state_sub {
    mqtt_bytes filter; /* a valid topic filter */
    uint8_t qos;       /* granted: 0..2 */
} mqtt_state_sub;

/* A message in flight or queued. Queued ones have stage 0 and packet id
 * 0; AWAIT_PUBCOMP ones have no topic or payload (empty views). */
typedef struct mqtt_state_msg {
    uint8_t qos;        /* 1 or 2 */
    uint8_t stage;      /* mqtt_msg_stage; 0 when queued */
    uint16_t packet_id; /* non-zero in flight; 0 when queued */
    bool dup;           /* in flight: sent at least once (resend with DUP) */
    bool retain;        /* the RETAIN flag it is sent with */
    mqtt_bytes topic;   /* a valid topic name */
    mqtt_bytes payload; /* may be empty */
} mqtt_state_msg;

/* A session's state. For encoding every pointer is borrowed from the
 * caller; mqtt_session_state_decode() fills one whose arrays it allocates
 * (free them with mqtt_session_state_fini()) and whose views borrow the
 * decoded buffer. */
typedef struct mqtt_session_state {
    mqtt_bytes client_id;    /* 1..65535 bytes, no NUL */
    /* Where two copies of one session meet (a move, a relay's custody, a
     * stored record), the higher generation is the newer state (docs/adr/
     * 0290). 0: a version 1 record, or a session that never moved. */
    uint32_t gen;
    uint16_t next_packet_id; /* 1..65535: where the id counter resumes */
    mqtt_state_sub *subs;
    size_t sub_count;
    mqtt_state_msg *inflight; /* in send order: the order of resends */
    size_t inflight_count;
    mqtt_state_msg *queued; /* in delivery order */
    size_t queued_count;
    uint16_t *in_qos2; /* strictly increasing, non-zero */
    size_t in_qos2_count;
} mqtt_session_state;

/* Encodes `st` (borrowed). On HM_OK returns owned bytes in `*data_out`
 * (free with hm_free()) and their length in `*len_out`.
 * Errors: HM_EINVAL when `st` breaks a rule above (the same rules the
 * decoder checks, so whatever encodes also decodes). */
hm_err mqtt_session_state_encode(const mqtt_session_state *st,
                                 uint8_t **data_out, size_t *len_out);

/* Decodes `len` bytes at `data` (borrowed, and borrowed by the views in
 * `*out` for as long as `*out` is used). On HM_OK fills `*out` (fini it);
 * on error `*out` is untouched and `*why` (if not NULL) points to static
 * text saying what is wrong. Errors: HM_EPROTO (not a session record, a
 * version we do not read, truncated, a field out of range, trailing
 * bytes). */
hm_err mqtt_session_state_decode(const uint8_t *data, size_t len,
                                 mqtt_session_state *out, const char **why);

/* Frees the arrays a decode allocated. Accepts NULL. */
void mqtt_session_state_fini(mqtt_session_state *st);

#endif
