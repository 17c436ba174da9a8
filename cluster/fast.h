/* cluster/fast.h: the routed-message hot path without a JSON tree for the
 * envelope: the encoder of an application message's HP "msg" object, the
 * strict decoder of a cl.msg line, and the framer that hands a link every
 * complete line it has in one frame.
 *
 * Key decision (ADR 0120): jansson stays the reference. The fast decoder
 * accepts only the canonical form that the fast encoder writes (fixed key
 * order, no escapes in names, no white space) and says "not mine" for
 * anything else, which then takes the jansson path (hm_hp_decode,
 * hm_wire_decode, cl_inner_fields): a line is never refused by the fast
 * path that the reference would accept. Only the message's data is parsed
 * by jansson (the type's codec needs a json_t). fuzz/fuzz_cluster_fast.c
 * checks on arbitrary input that whatever the fast decoder accepts, the
 * reference accepts with the same fields. A link keeps a memo of the
 * last line's names (cl_fast_memo, ADR 0215): the same bytes are compared,
 * not read again; the fuzz target checks the memo never changes what is
 * accepted. Pure: no I/O, no globals. */
#ifndef HM_CLUSTER_FAST_H
#define HM_CLUSTER_FAST_H

#include "net/frame.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A string inside a line or a JSON tree: borrowed, not NUL-terminated
 * (it may hold a NUL if it came through jansson). `p` NULL: absent. */
typedef struct cl_span {
    const char *p;
    size_t n;
} cl_span;

/* The fields of a routed message (a cl.msg's inner HP "msg"). The spans
 * borrow the line (fast path) or the JSON tree (reference path) and live
 * as long as it does; `data` is an owned reference: release it with
 * cl_fields_fini(). */
typedef struct cl_fields {
    uint64_t seq;   /* the cl.msg's seq (fast path only; the reference
                       path reads it from hm_wire_decode) */
    uint64_t id;    /* link-level request id; 0: none */
    bool reply;     /* it answers request `id` */
    cl_span from;   /* the original sender's address */
    cl_span to;     /* the target address (absent: a reply) */
    cl_span type;   /* the registered type's name */
    uint64_t arg;
    /* The data. Fast path, when it is a JSON string without escapes (the
     * commonest payload): `str` holds its content (checked UTF-8 without
     * control bytes, borrowing the line) and `data` is NULL until
     * cl_fields_json() makes it. Otherwise `str.p` is NULL and `data` is
     * never NULL (json null if absent). */
    cl_span str;
    struct json_t *data;
    /* Not 0: the generation of the decoder's memo (cl_fast_memo) whose
     * middle this line has, so every line with the same one has the same
     * from, to, type and arg. 0: none (no memo, or a request). */
    uint64_t memo_gen;
} cl_fields;

void cl_fields_fini(cl_fields *f);

/* The data as JSON (borrowed: freed by cl_fields_fini), made from `str`
 * on first use. NULL only if out of memory. */
struct json_t *cl_fields_json(cl_fields *f);

/* True if `s` is present and equals the NUL-terminated `str`. */
bool cl_span_is(cl_span s, const char *str);

/* A whole cl.msg line (`len` bytes, no newline; borrowed) in canonical
 * form: true and `*out` filled (its spans borrow `line`), or false if the line is not in
 * that form (decode it with the reference path; nothing is allocated). */
bool cl_fast_decode_routed(const char *line, size_t len, cl_fields *out);

/* What a link's decoder remembers of the last routed line it read in
 * full: the bytes after its seq through `"data":` (names, argument) and
 * where its fields lie in them. A line whose same part holds the same
 * bytes has the same fields: it is compared, not read again (consecutive
 * lines of one stream differ only in seq and data). Owned by one link;
 * zero-initialise, release with cl_fast_memo_fini(). */
typedef struct cl_fast_memo {
    char *mid; /* owned (hm_alloc) */
    size_t n, cap;
    size_t from_off, from_n, to_off, to_n, type_off, type_n; /* SIZE_MAX:
                                                                absent */
    uint64_t arg;
    uint64_t gen; /* bumped at every new middle kept; never 0 once kept */
} cl_fast_memo;

void cl_fast_memo_fini(cl_fast_memo *m);

/* cl_fast_decode_routed() with `memo` (NULL: none), which it reads and
 * updates: it accepts exactly the same lines with the same fields. */
bool cl_fast_decode_routed_memo(cl_fast_memo *memo, const char *line,
                                size_t len, cl_fields *out);

/* The reference reading of an inner HP "msg" object `o` (borrowed), as
 * the link receiver did before the fast path: HM_EPROTO if a field has
 * the wrong type. `seq` is left 0. Fills `out` on HM_OK (its spans borrow
 * `o`). */
hm_err cl_inner_fields(const struct json_t *o, cl_fields *out);

/* Encodes `m` (borrowed) as an HP "msg" object with `to`, `from` (both
 * borrowed, may be NULL), request id `id` (0: none) and `reply`, followed
 * by a newline. Returns owned memory in *line_out. Errors: HM_ECODEC (no
 * codec, or an argument over 2^63), HM_EINVAL (a name is not UTF-8, or an
 * id over HP's limit), HM_ETOOBIG (over `max_len` bytes). */
hm_err cl_fast_encode_app(const hm_msg *m, const char *to, const char *from,
                          uint64_t id, bool reply, size_t max_len,
                          char **line_out, size_t *len_out);

/* A name written as a JSON string (quotes included), kept by encoders
 * that send many messages with the same names. `p` owned (hm_alloc). */
typedef struct cl_jstr {
    char *p;
    size_t n;
} cl_jstr;

/* Sets `j` to `s` (borrowed) escaped. False (j unchanged) if `s` is not
 * UTF-8. */
bool cl_jstr_set(cl_jstr *j, const char *s);
void cl_jstr_fini(cl_jstr *j);

/* cl_fast_encode_app() with the names already escaped: `to` and `from`
 * may be NULL or empty (absent), `type` is the message type's name. */
hm_err cl_fast_encode_pre(const hm_msg *m, const cl_jstr *to,
                          const cl_jstr *from, const cl_jstr *type,
                          uint64_t id, bool reply, size_t max_len,
                          char **line_out, size_t *len_out);

/* The start of the envelope that cl_fast_encode_to() writes for these
 * names without an id, up to the body's type, into `out` (its old text
 * is freed): made once by an encoder whose names do not change. */
void cl_fast_head(const cl_jstr *to, const cl_jstr *from,
                  const cl_jstr *type, cl_jstr *out);

/* cl_fast_encode_pre() appending the line (newline included) at
 * buf[*used] instead: *buf (hm_realloc) and *cap grow as needed. On an
 * error *used is unchanged. `head` (may be NULL) is cl_fast_head() of
 * `to`, `from` and `type`, written in one copy when `id` is 0. */
hm_err cl_fast_encode_to(const hm_msg *m, const cl_jstr *head,
                         const cl_jstr *to, const cl_jstr *from,
                         const cl_jstr *type, uint64_t id, bool reply,
                         size_t max_len, char **buf, size_t *used,
                         size_t *cap);

/* Appends the cl.msg line for `inner` (`len` bytes, borrowed) numbered
 * `seq`, newline included, at buf[*used]; grows *buf (hm_realloc) and
 * *cap as needed. */
void cl_fast_wrap_routed(char **buf, size_t *used, size_t *cap,
                         const char *inner, size_t len, uint64_t seq);

/* The cl.ack line for `seq`, newline included. Returns owned. */
char *cl_fast_ack_line(uint64_t seq, size_t *len_out);

/* A whole cl.ack line (`len` bytes, no newline) exactly as
 * cl_fast_ack_line() writes it: true and `*seq` (1..2^53-1), or false
 * (the reference path decides). */
bool cl_fast_decode_ack(const char *line, size_t len, uint64_t *seq);

/* The lines framer: one frame holds every complete line in the buffer,
 * up to about CL_LINES_BATCH bytes (a single longer line is one frame), so
 * a link receives one message per read, not one per line. Lines keep
 * their newlines in the frame; each is limited like net/line.h's with
 * `arg` a const hm_line_config * (NULL: the defaults). Split a frame with
 * cl_lines_next(). */
#define CL_LINES_BATCH (64u * 1024u)
void cl_lines_framer_init(hm_framer *out);

/* The next line of a frame: `*pos` (start at 0) is advanced past it.
 * Writes its start and length (newline and one '\r' before it excluded).
 * False at the end of the frame. */
bool cl_lines_next(const uint8_t *frame, size_t len, size_t *pos,
                   const uint8_t **line, size_t *line_len);

#endif
