/* apps/mqtt/codec.h: the MQTT 3.1.1 packet codec, a pure decoder, encoder
 * and framer for all 14 control packets.
 *
 * The codec does no I/O and touches no globals: bytes in, a packet struct or
 * an error out, so it is unit-tested and fuzzed on its own. The one key
 * design decision is zero copy: a decoded packet's strings and payload are
 * views (mqtt_bytes) into the caller's input buffer, borrowed for as long as
 * that buffer is. The broker copies only what it keeps (a retained payload,
 * a client id). Every check of the standard that the decoder can make alone
 * is made here, and a failure says which rule broke and what the server
 * must do about it (mqtt_fault), so the broker picks the prescribed reaction
 * in one place: close, or CONNACK 0x01 / 0x02 then close. */
#ifndef HM_APPS_MQTT_CODEC_H
#define HM_APPS_MQTT_CODEC_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest remaining length four bytes can encode (section 2.2.3). */
#define MQTT_MAX_REMAINING_LEN 268435455u
/* A fixed header is at most 1 type byte + 4 length bytes. */
#define MQTT_MAX_FIXED_HEADER_LEN 5u

typedef enum {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
} mqtt_packet_type;

/* CONNACK return codes (section 3.2.2.3). */
typedef enum {
    MQTT_CONNACK_ACCEPTED = 0x00,
    MQTT_CONNACK_BAD_PROTOCOL_LEVEL = 0x01,
    MQTT_CONNACK_ID_REJECTED = 0x02,
    MQTT_CONNACK_SERVER_UNAVAILABLE = 0x03,
    MQTT_CONNACK_BAD_USERNAME_OR_PASSWORD = 0x04,
    MQTT_CONNACK_NOT_AUTHORIZED = 0x05,
} mqtt_connack_code;

/* The SUBACK return code for a refused subscription (section 3.9.3). */
#define MQTT_SUBACK_FAILURE 0x80

/* What kind of rule a packet broke, and so what the server must do. */
typedef enum {
    MQTT_FAULT_NONE = 0,
    MQTT_FAULT_MALFORMED,          /* close the connection */
    MQTT_FAULT_PROTOCOL,           /* protocol violation: close */
    MQTT_FAULT_BAD_PROTOCOL_LEVEL, /* CONNACK 0x01, then close */
    MQTT_FAULT_ID_REJECTED,        /* CONNACK 0x02, then close */
    MQTT_FAULT_TOO_BIG,            /* over the size limit: close */
} mqtt_fault_kind;

/* Why a decode failed. `rule` is static text that starts with the
 * normative statement id where there is one ("[MQTT-3.1.2-3] ..."), for
 * the log line. */
typedef struct mqtt_fault {
    mqtt_fault_kind kind;
    const char *rule;
} mqtt_fault;

/* A byte range inside some buffer; not NUL-terminated. */
typedef struct mqtt_bytes {
    const uint8_t *ptr;
    size_t len;
} mqtt_bytes;

typedef struct mqtt_connect {
    uint8_t protocol_level; /* 4 (MQTT 3.1.1), or 3 ("MQIsdp", MQTT 3.1) */
    bool clean_session;
    uint16_t keepalive_s;
    mqtt_bytes client_id; /* may be empty (then clean_session is true) */
    bool will;
    uint8_t will_qos;
    bool will_retain;
    mqtt_bytes will_topic;   /* only when `will` */
    mqtt_bytes will_payload; /* only when `will`; may be empty */
    bool has_username;
    mqtt_bytes username;
    bool has_password;
    mqtt_bytes password; /* binary data, not a string */
} mqtt_connect;

typedef struct mqtt_connack {
    bool session_present;
    uint8_t return_code; /* mqtt_connack_code */
} mqtt_connack;

typedef struct mqtt_publish {
    bool dup;
    uint8_t qos;
    bool retain;
    mqtt_bytes topic;
    uint16_t packet_id; /* 0 when qos == 0 */
    mqtt_bytes payload;
} mqtt_publish;

/* One entry of a SUBSCRIBE (qos used) or UNSUBSCRIBE (qos ignored). */
typedef struct mqtt_sub_req {
    mqtt_bytes filter;
    uint8_t qos;
} mqtt_sub_req;

/* SUBSCRIBE and UNSUBSCRIBE. Decoding sets `wire` to the validated payload
 * and `count` to its number of entries, and leaves `reqs` NULL: read the
 * entries with mqtt_sub_iter. To encode, set `reqs` and `count` (then `wire`
 * is ignored), or `wire` and `count` to resend a decoded payload. */
typedef struct mqtt_subscribe {
    uint16_t packet_id;
    size_t count;
    const mqtt_sub_req *reqs;
    mqtt_bytes wire;
} mqtt_subscribe;

/* SUBACK: one return code per filter (0, 1, 2 or MQTT_SUBACK_FAILURE). */
typedef struct mqtt_suback {
    uint16_t packet_id;
    mqtt_bytes codes;
} mqtt_suback;

/* A decoded packet, or one to encode. PUBACK, PUBREC, PUBREL, PUBCOMP and
 * UNSUBACK use `packet_id`; PINGREQ, PINGRESP and DISCONNECT have no
 * fields. */
typedef struct mqtt_packet {
    mqtt_packet_type type;
    union {
        mqtt_connect connect;
        mqtt_connack connack;
        mqtt_publish publish;
        mqtt_subscribe subscribe; /* SUBSCRIBE and UNSUBSCRIBE */
        mqtt_suback suback;
        uint16_t packet_id;
    } u;
} mqtt_packet;

/* Limits the decoder enforces. Zero-initialised means "protocol maxima". */
typedef struct mqtt_limits {
    /* The largest whole packet (fixed header included) accepted, in bytes;
     * 0 means MQTT_MAX_REMAINING_LEN + MQTT_MAX_FIXED_HEADER_LEN. */
    size_t max_packet_len;
} mqtt_limits;

/* ------------------------------------------------------------- framing */

/* Find the first packet's boundary at the start of `buf`. On HM_OK writes
 * the whole packet's length (fixed header included; at most `len`) to
 * `*packet_len_out`. Borrows `buf` and `limits` (NULL: protocol maxima).
 * Errors: HM_EAGAIN if `buf` holds no complete packet yet (read more);
 * HM_EPROTO if the remaining length is malformed (more than 4 bytes);
 * HM_ETOOBIG if the announced packet exceeds the limit, known as soon as the
 * fixed header is in. On either error `*why` (may be NULL) says which. */
hm_err mqtt_frame(const uint8_t *buf, size_t len, const mqtt_limits *limits,
                  size_t *packet_len_out, mqtt_fault *why);

/* ------------------------------------------------------------ decoding */

/* Decode exactly one whole packet (as mqtt_frame() delimits it) and check
 * every rule the standard sets on its bytes. On HM_OK fills `*out`, whose
 * views borrow `buf`. Borrows `limits` (NULL: protocol maxima).
 * Errors: HM_EPROTO with `why->kind` MALFORMED, PROTOCOL,
 * BAD_PROTOCOL_LEVEL or ID_REJECTED; HM_ETOOBIG with TOO_BIG. `why` may be
 * NULL. Packets of both directions decode (a server must still refuse a
 * CONNACK from a client: that is the session's rule, not the codec's). */
hm_err mqtt_decode(const uint8_t *buf, size_t len, const mqtt_limits *limits,
                   mqtt_packet *out, mqtt_fault *why);

/* Reads the entries of a decoded SUBSCRIBE or UNSUBSCRIBE in order. */
typedef struct mqtt_sub_iter {
    const uint8_t *pos;
    const uint8_t *end;
    bool with_qos;
} mqtt_sub_iter;

/* Start iterating `s` (borrowed, with its buffer, for the iteration).
 * `type` is MQTT_SUBSCRIBE or MQTT_UNSUBSCRIBE. */
void mqtt_sub_iter_init(mqtt_sub_iter *it, mqtt_packet_type type,
                        const mqtt_subscribe *s);
/* The next entry into `*req` (its view borrows the packet's buffer), or
 * false at the end. */
bool mqtt_sub_iter_next(mqtt_sub_iter *it, mqtt_sub_req *req);

/* The CONNACK code a fault calls for before closing, or -1 if the
 * connection is just closed. */
int mqtt_fault_connack_code(mqtt_fault_kind kind);

/* True if `s` is a well-formed MQTT string body ([MQTT-1.5.3-1/2]):
 * well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF) with no U+0000. Borrows `s`. */
bool mqtt_utf8_is_valid(const uint8_t *s, size_t len);

/* ------------------------------------------------------------ encoding */

/* The encoded size of `p` (borrowed) into `*len_out`. Errors: HM_EINVAL if
 * `p` cannot be encoded (a string over 65535 bytes, a zero packet id where
 * one is required, QoS over 2, no SUBSCRIBE entries); HM_ETOOBIG if it is
 * longer than MQTT_MAX_REMAINING_LEN. The encoder does not re-validate
 * UTF-8: it trusts its caller's strings. */
hm_err mqtt_encoded_len(const mqtt_packet *p, size_t *len_out);

/* Encode `p` (borrowed) into `buf` (borrowed, `cap` bytes) and write the
 * number of bytes written to `*len_out`. Errors: as mqtt_encoded_len(),
 * and HM_ETOOBIG if `cap` is too small (nothing useful is written then). */
hm_err mqtt_encode(const mqtt_packet *p, uint8_t *buf, size_t cap,
                   size_t *len_out);

/* A printable name ("PUBLISH") for a type, or "RESERVED". Returns borrowed
 * static storage. */
const char *mqtt_packet_type_name(int type);

#endif
