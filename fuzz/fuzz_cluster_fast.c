/* fuzz/fuzz_cluster_fast.c: libFuzzer target for the routed-message fast
 * path (cluster/fast.h), with jansson as the oracle.
 *
 * 1. Any byte string is offered to the fast decoder as a cl.msg line.
 *    Whatever it accepts, the reference path (hm_hp_decode, hm_wire_decode,
 *    cl_inner_fields) must accept too, with the same seq, id, reply flag,
 *    sender, target, type, argument and data (json_equal).
 * 2. If the bytes are a JSON value, it is encoded as a message's data by
 *    the fast encoder, wrapped as a cl.msg, and the fast decoder must give
 *    back the same fields and an equal value.
 * 3. If the bytes are UTF-8 without NUL, they are the string of a type
 *    with a string
 *    codec (runtime.h): encoded without a json_t, decoded back to the same
 *    bytes (as a span, or as JSON when escapes were needed), and the line
 *    goes through 1; the same message written through a cached head
 *    (cl_fast_head) gives the same bytes.
 * 4. Any byte string is offered to the cl.ack decoder: whatever it takes,
 *    the reference takes as a cl.ack with the same seq.
 * 5. The bytes split at newlines are a link's stream: each line goes to
 *    the decoder with a memo (cl_fast_memo) kept across the lines, and
 *    to the one without: both must take the same lines with the same
 *    fields (each taken line also goes through 1). Every line is read
 *    twice, and once more after its successor, so the memo's hits are
 *    exercised on whatever the lines are.
 * Every path must release what it allocated (ASan's leak check). */
#include "cluster/fast.h"
#include "cluster/wire.h"
#include "net/hp.h"

#include "runtime/alloc.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_span(cl_span a, cl_span b)
{
    return (!a.p && !b.p) ||
           (a.p && b.p && a.n == b.n && memcmp(a.p, b.p, a.n) == 0);
}

/* The reference reading of a line the fast path took: an HP "msg" whose
 * body type is `type`, and its cluster message. Aborts if it refuses. */
static void reference(const uint8_t *data, size_t size, const char *type,
                      hm_hp_msg *hp, hm_wire_msg *w)
{
    hm_hp_fail fail;

    if (hm_hp_decode(data, size, hp, &fail) != HM_OK)
        abort(); /* the fast path took a line the reference refuses */
    if (hp->kind != HM_HP_MSG || strcmp(hp->u.msg.type, type) != 0 ||
        !hp->u.msg.data || hm_wire_decode(hp->u.msg.data, w) != HM_OK)
        abort();
}

static void check_against_reference(const uint8_t *data, size_t size)
{
    cl_fields fast, ref;
    hm_hp_msg hp;
    hm_wire_msg w;

    if (!cl_fast_decode_routed((const char *)data, size, &fast))
        return;
    reference(data, size, "cl.msg", &hp, &w);
    if (w.type != HM_WIRE_ROUTED || w.u.routed.seq != fast.seq ||
        cl_inner_fields(w.u.routed.body, &ref) != HM_OK)
        abort();
    if (ref.id != fast.id || ref.reply != fast.reply ||
        ref.arg != fast.arg || !same_span(ref.from, fast.from) ||
        !same_span(ref.to, fast.to) || !same_span(ref.type, fast.type) ||
        !cl_fields_json(&fast) || !json_equal(ref.data, fast.data))
        abort();
    cl_fields_fini(&ref);
    hm_wire_msg_fini(&w);
    hm_hp_msg_fini(&hp);
    cl_fields_fini(&fast);
}

static void check_round_trip(const uint8_t *data, size_t size)
{
    json_t *value = json_loadb((const char *)data, size,
                               JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    hm_msg *m;
    char *inner = NULL, *line = NULL;
    size_t len, used = 0, cap = 0;
    cl_fields f;

    if (!value)
        return;
    m = hm_msg_create(&hm_type_json, value, 42);
    if (cl_fast_encode_app(m, "test/to", "test/from", 7, false, 0, &inner,
                           &len) != HM_OK)
        abort(); /* any JSON value encodes */
    cl_fast_wrap_routed(&line, &used, &cap, inner, len - 1, 9);
    if (!cl_fast_decode_routed(line, used - 1, &f))
        abort(); /* the decoder refuses what the encoder wrote */
    if (f.seq != 9 || f.id != 7 || f.reply || f.arg != 42 ||
        !cl_span_is(f.to, "test/to") || !cl_span_is(f.from, "test/from") ||
        !cl_span_is(f.type, hm_type_json.name) || !cl_fields_json(&f) ||
        !json_equal(f.data, value))
        abort();
    check_against_reference((const uint8_t *)line, used - 1);
    cl_fields_fini(&f);
    hm_free(inner);
    hm_free(line);
    hm_msg_destroy(m);
}

/* A type whose payload is a borrowed byte string with a string codec
 * (the payload is a cl_span; never freed). */
static const char *span_to_string(const void *p, size_t *len)
{
    const cl_span *sp = p;

    *len = sp->n;
    return sp->p;
}

static const hm_type SPAN = {.name = "fuzz.span",
                             .to_string = span_to_string};

/* The same message through a cached head (cl_fast_head): the same
 * outcome and, on success, the same bytes as `line` (`len`). */
static void check_head(const hm_msg *m, hm_err want, const char *line,
                       size_t len)
{
    cl_jstr to = {0}, ty = {0}, head = {0};
    char *b = NULL;
    size_t used = 0, cap = 0;
    hm_err err;

    if (!cl_jstr_set(&to, "test/to") || !cl_jstr_set(&ty, hm_msg_type(m)->name))
        abort();
    cl_fast_head(&to, NULL, &ty, &head);
    err = cl_fast_encode_to(m, &head, &to, NULL, &ty, 0, false, 0, &b, &used,
                            &cap);
    if (err != want || (err == HM_OK && (used != len ||
                                         memcmp(b, line, len) != 0)))
        abort(); /* the head's way wrote another line */
    hm_free(b);
    cl_jstr_fini(&to);
    cl_jstr_fini(&ty);
    cl_jstr_fini(&head);
}

static void check_string_codec(const uint8_t *data, size_t size)
{
    cl_span sp = {(const char *)data, size};
    hm_msg *m;
    char *inner = NULL, *line = NULL;
    size_t len, used = 0, cap = 0;
    cl_fields f;
    json_t *j;
    hm_err err;

    m = hm_msg_create(&SPAN, &sp, 0);
    err = cl_fast_encode_app(m, "test/to", NULL, 0, false, 0, &inner, &len);
    check_head(m, err, inner, len);
    hm_msg_destroy(m);
    if (!hm_utf8_valid(data, size) || memchr(data, '\0', size)) {
        if (err != HM_ECODEC)
            abort(); /* never invalid UTF-8 or \u0000 on the wire */
        return;
    }
    if (err != HM_OK)
        abort();
    cl_fast_wrap_routed(&line, &used, &cap, inner, len - 1, 3);
    if (!cl_fast_decode_routed(line, used - 1, &f))
        abort();
    if (f.str.p) {
        if (f.str.n != size || memcmp(f.str.p, data, size) != 0)
            abort();
    } else {
        j = cl_fields_json(&f);
        if (!json_is_string(j) || json_string_length(j) != size ||
            memcmp(json_string_value(j), data, size) != 0)
            abort();
    }
    check_against_reference((const uint8_t *)line, used - 1);
    cl_fields_fini(&f);
    hm_free(inner);
    hm_free(line);
}

static void check_ack(const uint8_t *data, size_t size)
{
    uint64_t seq;
    hm_hp_msg hp;
    hm_wire_msg w;

    if (!cl_fast_decode_ack((const char *)data, size, &seq))
        return;
    reference(data, size, "cl.ack", &hp, &w);
    if (w.type != HM_WIRE_ACK || w.u.ack.seq != seq)
        abort();
    hm_wire_msg_fini(&w);
    hm_hp_msg_fini(&hp);
}

static bool same_fields(cl_fields *a, cl_fields *b)
{
    if (a->seq != b->seq || a->id != b->id || a->reply != b->reply ||
        a->arg != b->arg || !same_span(a->from, b->from) ||
        !same_span(a->to, b->to) || !same_span(a->type, b->type) ||
        !same_span(a->str, b->str))
        return false;
    return a->str.p || json_equal(a->data, b->data);
}

static void check_memo_line(cl_fast_memo *memo, const uint8_t *line,
                            size_t n)
{
    cl_fields a, b;
    bool took = cl_fast_decode_routed_memo(memo, (const char *)line, n, &a);

    if (took != cl_fast_decode_routed((const char *)line, n, &b))
        abort(); /* the memo changed what is accepted */
    if (!took)
        return;
    if (!same_fields(&a, &b))
        abort(); /* the memo changed a field */
    cl_fields_fini(&a);
    cl_fields_fini(&b);
    check_against_reference(line, n);
}

static void check_memo(const uint8_t *data, size_t size)
{
    cl_fast_memo memo = {0};
    const uint8_t *line = data, *end = data + size, *nl;
    const uint8_t *prev = NULL;
    size_t prev_n = 0;

    while (line < end) {
        nl = memchr(line, '\n', (size_t)(end - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);

        check_memo_line(&memo, line, n);
        check_memo_line(&memo, line, n);
        if (prev)
            check_memo_line(&memo, prev, prev_n);
        prev = line;
        prev_n = n;
        line += n + 1;
    }
    cl_fast_memo_fini(&memo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_memo(data, size);
    check_against_reference(data, size);
    check_round_trip(data, size);
    check_string_codec(data, size);
    check_ack(data, size);
    return 0;
}
