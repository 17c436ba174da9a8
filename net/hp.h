/* net/hp.h: the Hermes Protocol, version 1 (HP v1): the codec.
 *
 * Every HP message is one JSON object on one line (net/line.h frames it):
 *   {"v":1,"type":"ping","id":7,"from":"a","to":"b","body":{...}}
 * docs/protocol.md is the specification; this header is the C contract.
 * Decoding is a pure function from a line's bytes to a decoded message or to
 * a failure that names a stable HP error code, and the table of codes says,
 * for each, whether the connection continues or is closed after the error
 * line: hm_hp_code_closes(). Nothing here does I/O, so all of it is unit
 * tested and fuzzed (fuzz/fuzz_hp.c).
 *
 * The decoded message keeps the parsed JSON tree and points into it: one
 * parse, no copies of strings; hm_hp_msg_fini() frees it all. The runtime
 * message envelope ("msg") is bridged to hm_msg in net/hp_msg.c. */
#ifndef HM_NET_HP_H
#define HM_NET_HP_H

#include "runtime/err.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_HP_VERSION_MIN 1u /* versions this build speaks */
#define HM_HP_VERSION_MAX 1u
#define HM_HP_MAX_ID 9007199254740991ull /* 2^53 - 1: exact in any JSON */
#define HM_HP_MAX_REASON 160             /* bytes of a decode failure text */

/* The stable error codes: C name, wire name, and whether the connection is
 * closed after the error line (true) or continues (false). Append only. */
#define HM_HP_CODE_LIST(X)                                                     \
    X(HM_HP_INVALID_UTF8, "invalid_utf8", false)                               \
    X(HM_HP_INVALID_JSON, "invalid_json", false)                               \
    X(HM_HP_NOT_OBJECT, "not_object", false)                                   \
    X(HM_HP_MISSING_VERSION, "missing_version", false)                         \
    X(HM_HP_UNSUPPORTED_VERSION, "unsupported_version", true)                  \
    X(HM_HP_UNKNOWN_TYPE, "unknown_type", false)                               \
    X(HM_HP_BAD_FIELD, "bad_field", false)                                     \
    X(HM_HP_LINE_TOO_LONG, "line_too_long", true)                              \
    X(HM_HP_HELLO_REQUIRED, "hello_required", false)                           \
    X(HM_HP_NO_COMMON_VERSION, "no_common_version", true)                      \
    X(HM_HP_DELIVERY_FAILED, "delivery_failed", false)                         \
    X(HM_HP_OVERLOADED, "overloaded", true)                                    \
    X(HM_HP_INTERNAL, "internal", true)

typedef enum {
#define HM_HP_CODE_ENUM(code, name, closes) code,
    HM_HP_CODE_LIST(HM_HP_CODE_ENUM)
#undef HM_HP_CODE_ENUM
        HM_HP_CODE_COUNT,
    HM_HP_CODE_OTHER = HM_HP_CODE_COUNT /* a code this build does not know */
} hm_hp_code;

/* The wire name ("invalid_json"). Returns borrowed static storage. */
const char *hm_hp_code_name(hm_hp_code code);
/* The code named `name` (borrowed), or HM_HP_CODE_OTHER. */
hm_hp_code hm_hp_code_parse(const char *name);
/* True if the connection is closed after an error with this code. An
 * unknown code closes (we cannot know that continuing is safe). */
bool hm_hp_code_closes(hm_hp_code code);

/* The message types of HP v1. */
typedef enum {
    HM_HP_HELLO,
    HM_HP_WELCOME,
    HM_HP_PING,
    HM_HP_PONG,
    HM_HP_ERROR,
    HM_HP_MSG,
    HM_HP_KIND_COUNT
} hm_hp_kind;

/* The wire name of a type ("hello"). Returns borrowed static storage. */
const char *hm_hp_kind_name(hm_hp_kind kind);

/* A decoded message. Every pointer is borrowed from `root` and valid until
 * hm_hp_msg_fini(). Absent optional fields are 0 or NULL. */
typedef struct hm_hp_msg {
    hm_hp_kind kind;
    unsigned version; /* the envelope's "v" */
    uint64_t id;      /* 0: no id */
    const char *from;
    const char *to;
    const struct json_t *body; /* NULL: no body */
    union {
        struct { /* hello: the sender's supported range */
            unsigned min, max;
            const char *agent;
        } hello;
        struct { /* welcome: the chosen version and the server's range */
            unsigned version, min, max;
            const char *agent;
        } welcome;
        struct {
            hm_hp_code code;       /* HM_HP_CODE_OTHER if not ours */
            const char *code_name; /* as sent */
            const char *reason;
            const char *err; /* optional hm_err name ("HM_ENOTFOUND") */
        } error;
        struct {              /* a runtime message between nodes */
            const char *type; /* the hm_type's wire name */
            uint64_t arg;
            const struct json_t *data; /* NULL: absent (null payload) */
            bool reply;
        } msg;
    } u;
    struct json_t *root; /* owned: the parsed line */
} hm_hp_msg;

/* Why a line did not decode: the HP code, a human reason, and the id of the
 * message if one could be read (so the error can be correlated). */
typedef struct hm_hp_fail {
    hm_hp_code code;
    uint64_t id;
    char reason[HM_HP_MAX_REASON];
} hm_hp_fail;

/* True if the line is empty or only JSON whitespace: HP ignores such lines
 * (they keep interactive sessions and keep-alives simple). */
bool hm_hp_is_blank(const uint8_t *line, size_t len);

/* True if buf[0, len) is valid UTF-8 (no overlongs, no surrogates, nothing
 * above U+10FFFF). Pure. */
bool hm_utf8_valid(const uint8_t *buf, size_t len);

/* Decodes one line (borrowed; no newline). On HM_OK fills `out`, which the
 * caller must hm_hp_msg_fini(). On HM_EPROTO fills `fail` and `out` is
 * untouched. Pure; never asserts on the input. */
hm_err hm_hp_decode(const uint8_t *line, size_t len, hm_hp_msg *out,
                    hm_hp_fail *fail);
/* Frees what a decoded message owns. Accepts a zeroed message. */
void hm_hp_msg_fini(hm_hp_msg *m);

/* ------------------------------------------------------------- encoding */

/* The fields of an envelope to encode. `type` is a wire name; `body` is
 * borrowed (NULL: no body). from/to NULL: absent; id 0: absent. */
typedef struct hm_hp_envelope {
    const char *type;
    uint64_t id;
    const char *from;
    const char *to;
    const struct json_t *body;
} hm_hp_envelope;

/* Encodes `env` (borrowed) as one compact JSON line ending in "\n", with
 * "v" set to HM_HP_VERSION_MAX. Returns owned memory (hm_free) in
 * `*line_out` and its length, newline included, in `*len_out`.
 * Errors: HM_EINVAL (no type, id over HM_HP_MAX_ID, or a string that is not
 * UTF-8), HM_ETOOBIG (the line without its newline is over `max_len`
 * bytes; 0 means HM_NET_MAX_LINE). */
hm_err hm_hp_encode(const hm_hp_envelope *env, size_t max_len, char **line_out,
                    size_t *len_out);

/* Bodies of the core types. Each returns owned JSON (never NULL; a NULL
 * string argument is left out). */
struct json_t *hm_hp_hello_body(unsigned min, unsigned max, const char *agent);
struct json_t *hm_hp_welcome_body(unsigned version, unsigned min, unsigned max,
                                  const char *agent);
struct json_t *hm_hp_error_body(hm_hp_code code, const char *reason,
                                const char *err_name);

/* Encodes an error line for `code` with `reason` (borrowed), correlated to
 * `id` (0: none). Same ownership and errors as hm_hp_encode(). */
hm_err hm_hp_encode_error(hm_hp_code code, const char *reason, uint64_t id,
                          char **line_out, size_t *len_out);

/* Picks the highest version in both [peer_min, peer_max] and ours.
 * Errors: HM_EPROTO if the ranges do not meet. */
hm_err hm_hp_negotiate(unsigned peer_min, unsigned peer_max,
                       unsigned *version_out);

/* -------------------------------------- runtime messages (net/hp_msg.c) */

/* Encodes runtime message `m` (borrowed) in a "msg" envelope with the
 * addresses and id of `env` (borrowed; its type and body are ignored),
 * through the message type's codec. Ownership of the line as in
 * hm_hp_encode(). Errors: HM_ECODEC (no codec, or arg >= 2^63), and those
 * of hm_hp_encode(). */
hm_err hm_hp_encode_msg(const hm_msg *m, const hm_hp_envelope *env,
                        size_t max_len, char **line_out, size_t *len_out);
/* The body of a "msg" envelope for `m` (borrowed): its type name, arg,
 * codec data and, if `reply`, the reply flag. Returns owned JSON on HM_OK.
 * For layers that wrap runtime messages in envelopes of their own (the
 * cluster). Errors: HM_ECODEC (no codec, or arg >= 2^63). */
hm_err hm_hp_msg_body(const hm_msg *m, bool reply, struct json_t **body_out);
/* Decodes the runtime message carried by `in` (borrowed; kind HM_HP_MSG)
 * with the type registered in `rt` under its name. Returns an owned message
 * on HM_OK. Errors: HM_EINVAL (not a "msg"), and those of
 * hm_msg_from_json() (HM_ENOTFOUND, HM_ECODEC, the decoder's). */
hm_err hm_hp_decode_msg(hm_runtime *rt, const hm_hp_msg *in, hm_msg **out);

#endif
