/* apps/mqtt/ws.h: the server side of WebSocket (RFC 6455) for MQTT over
 * WebSocket (MQTT 3.1.1 section 6), as pure functions.
 *
 * Two parts. The handshake reads the client's HTTP upgrade request and
 * writes the 101 (or 400) response. The frame decoder turns the masked
 * frames a client sends into MQTT bytes and control events. Its key design
 * decision follows from [MQTT-6.0.0-2] (MQTT packets need not align with
 * WebSocket frames): it never reassembles messages. Payload bytes of binary
 * frames and their continuations are unmasked in place and handed out as
 * soon as they arrive, to be pushed into the MQTT framer, so the decoder's
 * memory is one frame header plus one read, whatever the message size.
 * Control frames (at most 125 bytes, RFC 6455 5.5) are handed out whole.
 * No I/O, no globals: unit-tested and fuzzed on their own. */
#ifndef HM_APPS_MQTT_WS_H
#define HM_APPS_MQTT_WS_H

#include "apps/mqtt/codec.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest upgrade request head accepted (request line and headers). */
#define MQTT_WS_MAX_REQUEST_LEN 8192u
/* Room for any response mqtt_ws_handshake() writes. */
#define MQTT_WS_MAX_RESPONSE_LEN 512u
/* The largest frame header: 2 + 8 (length) + 4 (mask). */
#define MQTT_WS_MAX_HEADER_LEN 14u

/* ------------------------------------------------------------ handshake */

typedef struct mqtt_ws_handshake {
    /* Bytes of the input that the request took; what follows belongs to
     * the frame stream (a client may send its first frame right away). */
    size_t request_len;
    /* True: the response is "101 Switching Protocols" and frames follow.
     * False: the response is an error (400, 405 or 426) to send before
     * closing. */
    bool accepted;
    const char *reason; /* why not accepted; static text */
    char response[MQTT_WS_MAX_RESPONSE_LEN];
    size_t response_len;
} mqtt_ws_handshake;

/* Parse the upgrade request at the start of `buf` (borrowed) and fill
 * `*out` with the response to send. Checks: GET, HTTP/1.1, a Host header,
 * `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13`
 * and a Sec-WebSocket-Key of 16 base64-encoded bytes (RFC 6455 4.2.1), and
 * that the client offers the subprotocol "mqtt" [MQTT-6.0.0-3], which the
 * response selects [MQTT-6.0.0-4] ("mqttv3.1", which MQTT 3.1 clients
 * offer, is accepted and echoed too). Header names and tokens compare
 * case-insensitively. HM_OK means a response is ready (check `accepted`).
 * Errors: HM_EAGAIN if the request head is incomplete; HM_ETOOBIG if it is
 * longer than MQTT_WS_MAX_REQUEST_LEN without ending (just close). */
hm_err mqtt_ws_handshake_parse(const uint8_t *buf, size_t len,
                               mqtt_ws_handshake *out);

/* The Sec-WebSocket-Accept value for `key` (borrowed, `len` bytes):
 * base64(SHA-1(key + GUID)). Writes 28 characters and a NUL into `out`. */
void mqtt_ws_accept_key(const char *key, size_t len, char out[29]);

/* --------------------------------------------------------------- frames */

typedef enum {
    MQTT_WS_OP_CONTINUATION = 0x0,
    MQTT_WS_OP_TEXT = 0x1,
    MQTT_WS_OP_BINARY = 0x2,
    MQTT_WS_OP_CLOSE = 0x8,
    MQTT_WS_OP_PING = 0x9,
    MQTT_WS_OP_PONG = 0xA,
} mqtt_ws_opcode;

/* Close status codes (RFC 6455 7.4.1) the decoder asks for. */
#define MQTT_WS_CLOSE_NORMAL 1000
#define MQTT_WS_CLOSE_PROTOCOL_ERROR 1002
#define MQTT_WS_CLOSE_UNSUPPORTED_DATA 1003
#define MQTT_WS_CLOSE_INVALID_PAYLOAD 1007
#define MQTT_WS_CLOSE_TOO_BIG 1009

typedef enum {
    MQTT_WS_EV_DATA,  /* bytes of MQTT stream: push them into the framer */
    MQTT_WS_EV_PING,  /* answer with a PONG carrying the same payload */
    MQTT_WS_EV_PONG,  /* nothing to do */
    MQTT_WS_EV_CLOSE, /* answer with a CLOSE, then close the connection */
} mqtt_ws_event_kind;

typedef struct mqtt_ws_event {
    mqtt_ws_event_kind kind;
    mqtt_bytes payload;  /* unmasked; for CLOSE, the reason text */
    uint16_t close_code; /* CLOSE only; 1005 when the peer sent none */
} mqtt_ws_event;

/* Why the stream is unusable: the close code to send, and static text. */
typedef struct mqtt_ws_fault {
    uint16_t close_code;
    const char *reason;
} mqtt_ws_fault;

typedef struct mqtt_ws_limits {
    /* The largest data frame payload accepted, in bytes; 0: no limit (the
     * MQTT framer still bounds packets). Larger frames: close 1009. */
    uint64_t max_frame_len;
} mqtt_ws_limits;

typedef struct mqtt_ws_decoder mqtt_ws_decoder;

/* Returns owned; never NULL. Borrows `limits` (NULL: no frame limit); the
 * values are copied. Not thread-safe: one owner. */
mqtt_ws_decoder *mqtt_ws_decoder_create(const mqtt_ws_limits *limits);
/* Accepts NULL. */
void mqtt_ws_decoder_destroy(mqtt_ws_decoder *d);
/* Append `len` bytes (borrowed; copied). Invalidates the events returned
 * so far. */
void mqtt_ws_decoder_push(mqtt_ws_decoder *d, const void *data, size_t len);
/* The next event. On HM_OK fills `*ev`, whose payload returns borrowed
 * until the next mqtt_ws_decoder_push() or destroy. Errors: HM_EAGAIN
 * (need more bytes); HM_EPROTO with `*why` (may be NULL) saying which close
 * code to send: an unmasked frame, reserved bits or opcode, a text frame
 * [MQTT-6.0.0-1], broken fragmentation, a control frame over 125 bytes or
 * fragmented, a bad close payload, a frame over the limit; HM_ECLOSED after
 * a CLOSE event was returned. Errors are sticky. */
hm_err mqtt_ws_decoder_next(mqtt_ws_decoder *d, mqtt_ws_event *ev,
                            mqtt_ws_fault *why);

/* A frame to encode. Server frames are unmasked (`masked` false); a client
 * (tests, fuzzing, a future bridge) sets `masked` and `mask_key`. */
typedef struct mqtt_ws_frame {
    mqtt_ws_opcode opcode;
    bool fin;
    bool masked;
    uint8_t mask_key[4];
    mqtt_bytes payload;
} mqtt_ws_frame;

/* Write the header of `f` (borrowed) into `out` and return its length
 * (2 to 14 bytes). For zero-copy sends: write the header, then the
 * payload (which must be masked by the caller if `masked`). */
size_t mqtt_ws_frame_header(const mqtt_ws_frame *f,
                            uint8_t out[MQTT_WS_MAX_HEADER_LEN]);

/* Encode the whole frame `f` (borrowed) into `buf` (borrowed, `cap`
 * bytes), masking the payload if asked, and write its length to
 * `*len_out`. Errors: HM_ETOOBIG if `cap` is too small; HM_EINVAL for a
 * control frame that is over 125 bytes or not final. */
hm_err mqtt_ws_encode(const mqtt_ws_frame *f, uint8_t *buf, size_t cap,
                      size_t *len_out);

/* Encode an unmasked CLOSE frame with `code` and no reason into `buf`
 * (4 bytes). Returns its length. */
size_t mqtt_ws_encode_close(uint16_t code, uint8_t buf[4]);

#endif
