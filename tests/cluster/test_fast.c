/* tests/cluster/test_fast.c: the routed-message fast path (cluster/fast.h)
 * against jansson, the reference: what the encoder writes means the same
 * JSON as the reference encoder's line, the decoder reads it back, takes
 * only the canonical form (anything else is left to the reference path),
 * and the lines framer hands out every complete line of a buffer at once. */
#include "cluster/fast.h"
#include "cluster/node_impl.h"
#include "net/hp.h"
#include "net/line.h"
#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

static json_t *parse(const char *s, size_t len)
{
    json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);

    cr_assert(j, "not JSON: %.*s", (int)len, s);
    return j;
}

/* The reference: the envelope built with jansson (hm_hp_encode). */
static json_t *reference(const hm_msg *m, const char *to, const char *from,
                         uint64_t id, bool reply)
{
    json_t *body;
    char *line;
    size_t len;
    json_t *j;

    cr_assert_eq(hm_hp_msg_body(m, reply, &body), HM_OK);
    cr_assert_eq(hm_hp_encode(&(hm_hp_envelope){.type = "msg", .id = id,
                                                .from = from, .to = to,
                                                .body = body},
                              0, &line, &len),
                 HM_OK);
    json_decref(body);
    j = parse(line, len - 1);
    hm_free(line);
    return j;
}

/* Encodes, compares with the reference, wraps and decodes: by the fast
 * path, or (names with escapes: not canonical) by the reference path. */
static void check_encoding(hm_msg *m, const char *to, const char *from,
                           uint64_t id, bool reply)
{
    bool escapes = (to && strpbrk(to, "\"\\\x01\x02")) ||
                   (from && strpbrk(from, "\"\\\x01\x02"));
    char *line, *wrapped = NULL;
    size_t len, used = 0, cap = 0;
    json_t *fast, *ref;
    cl_fields f;

    cr_assert_eq(cl_fast_encode_app(m, to, from, id, reply, 0, &line, &len),
                 HM_OK);
    cr_assert_eq(line[len - 1], '\n');
    fast = parse(line, len - 1);
    ref = reference(m, to, from, id, reply);
    cr_assert(json_equal(fast, ref), "%.*s", (int)len, line);
    cl_fast_wrap_routed(&wrapped, &used, &cap, line, len - 1, 12345);
    if (escapes) {
        cr_assert_not(cl_fast_decode_routed(wrapped, used - 1, &f));
        cr_assert_eq(cl_inner_fields(fast, &f), HM_OK);
        f.seq = 12345;
    } else {
        cr_assert(cl_fast_decode_routed(wrapped, used - 1, &f), "%s",
                  wrapped);
    }
    cr_assert_eq(f.seq, 12345);
    cr_assert_eq(f.id, id);
    cr_assert_eq(f.reply, reply);
    cr_assert_eq(f.arg, hm_msg_arg(m));
    cr_assert(cl_span_is(f.type, hm_msg_type(m)->name));
    if (to)
        cr_assert(cl_span_is(f.to, to));
    else
        cr_assert_null(f.to.p);
    if (from)
        cr_assert(cl_span_is(f.from, from));
    else
        cr_assert_null(f.from.p);
    cr_assert(json_equal(cl_fields_json(&f),
                         json_object_get(json_object_get(ref, "body"),
                                         "data")));
    cl_fields_fini(&f);
    json_decref(fast);
    json_decref(ref);
    hm_free(line);
    hm_free(wrapped);
}

Test(fast, encoder_means_what_the_reference_encoder_means)
{
    hm_msg *m = hm_msg_create(&hm_type_json, json_string("x"), 0);

    check_encoding(m, "test/sink/r", NULL, 0, false);
    check_encoding(m, "chat/user/é", "chat/user/bob", 77, false);
    check_encoding(m, NULL, NULL, 5, true);
    hm_msg_destroy(m);
    m = hm_msg_create(&hm_type_json,
                      json_pack("{s:[i,f,b,n], s:s}", "a", 1, 2.5, 1, "q",
                                "quote \" back \\ nl \n tab \t ctl \x01"),
                      (uint64_t)INT64_MAX);
    check_encoding(m, "to/\"odd\"\\name", "from\x02", 9007199254740991ull,
                   false);
    hm_msg_destroy(m);
    m = hm_msg_create(&hm_type_json, json_string("\"\\\n\x1f é"), 3);
    check_encoding(m, "t", "f", 1, false);
    hm_msg_destroy(m);
}

Test(fast, encoder_refuses_what_the_reference_refuses)
{
    hm_msg *m = hm_msg_create(&hm_type_json, json_string("x"), 0);
    char *line = NULL;
    size_t len;

    cr_assert_eq(cl_fast_encode_app(m, "bad\xff", NULL, 0, false, 0, &line,
                                    &len),
                 HM_EINVAL);
    cr_assert_eq(cl_fast_encode_app(m, "t", NULL, HM_HP_MAX_ID + 1, false, 0,
                                    &line, &len),
                 HM_EINVAL);
    cr_assert_eq(cl_fast_encode_app(m, "t", NULL, 0, false, 20, &line, &len),
                 HM_ETOOBIG);
    hm_msg_destroy(m);
    m = hm_msg_create(&hm_type_json, json_string("x"), (uint64_t)INT64_MAX + 1);
    cr_assert_eq(cl_fast_encode_app(m, "t", NULL, 0, false, 0, &line, &len),
                 HM_ECODEC);
    hm_msg_destroy(m);
}

static bool fast_takes(const char *line)
{
    cl_fields f;
    bool ok = cl_fast_decode_routed(line, strlen(line), &f);

    if (ok)
        cl_fields_fini(&f);
    return ok;
}

#define HEAD "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"cl.msg\",\"data\":" \
             "{\"v\":1,\"t\":\"cl.msg\",\"seq\":"

Test(fast, decoder_takes_only_the_canonical_form)
{
    cr_assert(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\",\"to\":"
                              "\"a\",\"body\":{\"type\":\"t\",\"data\":1}}}}}"));
    /* Valid JSON the reference reads, in another form: not ours. */
    cr_assert_not(fast_takes(HEAD " 1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"a\",\"body\":{\"type\":\"t\","
                                  "\"data\":1}}}}}"));
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"\\u0061\",\"body\":{\"type\":"
                                  "\"t\",\"data\":1}}}}}"));
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"type\":\"msg\",\"v\":1,"
                                  "\"to\":\"a\",\"body\":{\"type\":\"t\","
                                  "\"data\":1}}}}}"));
    /* Broken ones: never taken. */
    cr_assert_not(fast_takes(HEAD "0,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"a\",\"body\":{\"type\":\"t\","
                                  "\"data\":1}}}}}"));
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"a\",\"body\":{\"type\":\"t\","
                                  "\"data\":[1,}}}}}"));
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"\xc3\",\"body\":{\"type\":\"t\","
                                  "\"data\":1}}}}}"));
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"a\",\"body\":{\"type\":\"t\","
                                  "\"data\":\"a\" \"b\"}}}}}"));
    cr_assert_not(fast_takes(HEAD "18446744073709551616,\"msg\":{\"v\":1,"
                                  "\"type\":\"msg\",\"to\":\"a\",\"body\":"
                                  "{\"type\":\"t\",\"data\":1}}}}}"));
    /* 2^64 + 1 wraps to 1 in 64 bits: it must not pass as seq 1. */
    cr_assert_not(fast_takes(HEAD "18446744073709551617,\"msg\":{\"v\":1,"
                                  "\"type\":\"msg\",\"to\":\"a\",\"body\":"
                                  "{\"type\":\"t\",\"data\":1}}}}}"));
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"to\":\"a\",\"body\":{\"type\":\"t\","
                                  "\"arg\":18446744073709551617,\"data\":1}}}}}"));
    /* A complete line followed by a reply flag and closers: the string
     * way once matched the closers, then the flag from where they ended
     * (found by fuzz/fuzz_cluster_fast.c). */
    cr_assert_not(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                                  "\"id\":1,\"body\":{\"type\":\"t\","
                                  "\"data\":\"3\"}}}}},\"reply\":true}}}}}"));
    cr_assert(fast_takes(HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\","
                              "\"id\":1,\"body\":{\"type\":\"t\","
                              "\"data\":\"3\",\"reply\":true}}}}}"));
}

/* A plain string as data is kept as a span (no json_t); anything a plain
 * scan cannot vouch for goes to jansson, which decides. */
static char line_buf[256]; /* the spans borrow it */

static bool string_data(const char *data, cl_fields *f)
{
    char *line = line_buf;

    snprintf(line, sizeof line_buf,
             HEAD "1,\"msg\":{\"v\":1,\"type\":\"msg\",\"to\":\"a\","
                  "\"body\":{\"type\":\"t\",\"data\":%s}}}}}",
             data);
    return cl_fast_decode_routed(line, strlen(line), f);
}

Test(fast, string_data_as_a_span_or_through_jansson)
{
    cl_fields f;

    cr_assert(string_data("\"hello, world\"", &f));
    cr_assert(cl_span_is(f.str, "hello, world"));
    cr_assert_null(f.data);
    cr_assert_str_eq(json_string_value(cl_fields_json(&f)), "hello, world");
    cl_fields_fini(&f);
    cr_assert(string_data("\"\"", &f));
    cr_assert_not_null(f.str.p);
    cr_assert_eq(f.str.n, 0);
    cl_fields_fini(&f);
    cr_assert(string_data("\"h\xc3\xa9llo long enough for two words\"", &f));
    cr_assert(cl_span_is(f.str, "h\xc3\xa9llo long enough for two words"));
    cl_fields_fini(&f);
    /* An escape: jansson reads it. */
    cr_assert(string_data("\"a\\nb\"", &f));
    cr_assert_null(f.str.p);
    cr_assert_str_eq(json_string_value(f.data), "a\nb");
    cl_fields_fini(&f);
    /* Malformed: refused by both paths, never a crash. */
    cr_assert_not(string_data("\"bad \xc3 utf8 in a longer string\"", &f));
    cr_assert_not(string_data("\"ctl \x01\"", &f));
    cr_assert_not(string_data("\"unterminated", &f));
    cr_assert_not(string_data("\"a\"\"b\"", &f));
}

/* A type with a string codec whose payload is a borrowed cl_span. */
static const char *span_to_string(const void *p, size_t *len)
{
    const cl_span *sp = p;

    *len = sp->n;
    return sp->p;
}

static const hm_type SPAN = {.name = "t.span", .to_string = span_to_string};

Test(fast, string_codec_refuses_what_readers_refuse)
{
    cl_span sp = {"a\0b", 3};
    hm_msg *m = hm_msg_create(&SPAN, &sp, 0);
    char *line = NULL;
    size_t len;

    /* \u0000 would close the link on the other side. */
    cr_assert_eq(cl_fast_encode_app(m, "t", NULL, 0, false, 0, &line, &len),
                 HM_ECODEC);
    sp = (cl_span){"bad \xff", 5};
    cr_assert_eq(cl_fast_encode_app(m, "t", NULL, 0, false, 0, &line, &len),
                 HM_ECODEC);
    sp = (cl_span){"quote \" tab \t ok \xc3\xa9", 19};
    cr_assert_eq(cl_fast_encode_app(m, "t", NULL, 0, false, 0, &line, &len),
                 HM_OK);
    cr_assert(strstr(line, "\"data\":\"quote \\\" tab \\t ok \xc3\xa9\""),
              "%s", line);
    hm_free(line);
    hm_msg_destroy(m);
}

Test(fast, ack_lines)
{
    size_t len;
    char *line = cl_fast_ack_line(1234567, &len);
    uint64_t seq = 0;

    cr_assert(cl_fast_decode_ack(line, len - 1, &seq));
    cr_assert_eq(seq, 1234567);
    cr_assert_not(cl_fast_decode_ack(line, len - 2, &seq), "cut short");
    line[len - 3] = 'x';
    cr_assert_not(cl_fast_decode_ack(line, len - 1, &seq));
    hm_free(line);
    line = cl_fast_ack_line(9007199254740991ull, &len);
    cr_assert(cl_fast_decode_ack(line, len - 1, &seq));
    cr_assert_eq(seq, 9007199254740991ull);
    hm_free(line);
    line = cl_fast_ack_line(9007199254740992ull, &len); /* over HP's ints */
    cr_assert_not(cl_fast_decode_ack(line, len - 1, &seq));
    hm_free(line);
    cr_assert_not(cl_fast_decode_ack("", 0, &seq));
}

Test(fast, lines_framer_gives_every_complete_line_at_once)
{
    hm_framer fr;
    hm_frame f;
    size_t resume = 0, pos = 0, n;
    const uint8_t *line;
    const char *buf = "one\ntwo\r\nthree\npart";

    cl_lines_framer_init(&fr);
    cr_assert_eq(fr.next(fr.arg, (const uint8_t *)buf, strlen(buf), &resume,
                         &f),
                 HM_OK);
    cr_assert_eq(f.consumed, strlen("one\ntwo\r\nthree\n"));
    cr_assert(cl_lines_next((const uint8_t *)buf, f.len, &pos, &line, &n));
    cr_assert_eq(n, 3);
    cr_assert(cl_lines_next((const uint8_t *)buf, f.len, &pos, &line, &n));
    cr_assert_eq(n, 3, "the \\r is dropped");
    cr_assert_eq(memcmp(line, "two", 3), 0);
    cr_assert(cl_lines_next((const uint8_t *)buf, f.len, &pos, &line, &n));
    cr_assert_eq(memcmp(line, "three", 5), 0);
    cr_assert_not(cl_lines_next((const uint8_t *)buf, f.len, &pos, &line, &n));
    resume = 0;
    cr_assert_eq(fr.next(fr.arg, (const uint8_t *)"part", 4, &resume, &f),
                 HM_EAGAIN);
}

Test(fast, lines_framer_keeps_the_line_limit)
{
    hm_framer fr;
    hm_frame f;
    size_t resume = 0, len = HM_NET_MAX_LINE + 2;
    uint8_t *buf = hm_alloc(len + 1);

    memset(buf, 'x', len);
    cl_lines_framer_init(&fr);
    cr_assert_eq(fr.next(fr.arg, buf, len, &resume, &f), HM_ETOOBIG);
    /* A line within the limit after complete ones: those come first. */
    memcpy(buf, "ok\n", 3);
    resume = 0;
    cr_assert_eq(fr.next(fr.arg, buf, len, &resume, &f), HM_OK);
    cr_assert_eq(f.consumed, 3);
    hm_free(buf);
}

/* Encodes `m` with and without the cached head (cl_fast_head): the same
 * bytes, for any names, argument and request id. */
static void check_head(hm_msg *m, const char *to, const char *from,
                       uint64_t id, bool reply)
{
    cl_jstr t = {0}, f = {0}, ty = {0}, head = {0};
    char *a = NULL, *b = NULL;
    size_t an = 0, acap = 0, bn = 0, bcap = 0;

    cr_assert(!to || cl_jstr_set(&t, to));
    cr_assert(!from || cl_jstr_set(&f, from));
    cr_assert(cl_jstr_set(&ty, hm_msg_type(m)->name));
    cl_fast_head(&t, &f, &ty, &head);
    cr_assert_eq(cl_fast_encode_to(m, &head, &t, &f, &ty, id, reply, 0, &a,
                                   &an, &acap),
                 HM_OK);
    cr_assert_eq(cl_fast_encode_to(m, NULL, &t, &f, &ty, id, reply, 0, &b,
                                   &bn, &bcap),
                 HM_OK);
    cr_assert_eq(an, bn);
    cr_assert(memcmp(a, b, an) == 0, "%.*s\n%.*s", (int)an, a, (int)bn, b);
    hm_free(a);
    hm_free(b);
    cl_jstr_fini(&t);
    cl_jstr_fini(&f);
    cl_jstr_fini(&ty);
    cl_jstr_fini(&head);
}

Test(fast, cached_head_writes_the_same_line)
{
    hm_msg *m = hm_msg_create(&hm_type_json, json_string("x"), 0);

    check_head(m, "test/sink/r", NULL, 0, false);
    check_head(m, "test/sink/r", "a/b", 0, true);
    check_head(m, NULL, NULL, 5, true);
    check_head(m, "to/\"odd\"", "from\x02", 77, false);
    hm_msg_destroy(m);
    m = hm_msg_create(&hm_type_json, json_pack("{s:i}", "k", 1), 42);
    check_head(m, "t", "f", 0, false);
    check_head(m, "t", NULL, 9, false);
    hm_msg_destroy(m);
    /* A string codec: the plain ones take the one-copy way. */
    static const char *const strs[] = {"x", "", "a\"b", "\\", "nl\n",
                                       "caf\xc3\xa9", "\x7f"};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        cl_span sp = {strs[i], strlen(strs[i])};

        for (uint64_t arg = 0; arg < 2; arg++) {
            m = hm_msg_create(&SPAN, &sp, arg);
            check_head(m, "test/sink/r", NULL, 0, false);
            check_head(m, "test/sink/r", "a/b", 0, true);
            check_head(m, "t", "f", 3, false);
            hm_msg_destroy(m);
        }
    }
}

/* A stream of lines decoded with a memo kept across them and without
 * one: the same lines taken, with the same fields. */
Test(fast, memo_decodes_a_stream_as_the_plain_decoder)
{
#define H "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"cl.msg\",\"data\":" \
          "{\"v\":1,\"t\":\"cl.msg\",\"seq\":"
#define M ",\"msg\":{\"v\":1,\"type\":\"msg\",\"to\":\"test/sink/r\","      \
          "\"body\":{\"type\":\"test.text\",\"data\":"
    static const char *const lines[] = {
        H "1" M "\"x\"}}}}}",
        H "2" M "\"yy\"}}}}}",
        H "3" M "\"a\\nb\"}}}}}",
        H "4" M "{\"k\":[1]},\"reply\":true}}}}}",
        H "5" M "\"z\",\"reply\":true}}}}}",
        H "6" M "\"z\",\"reply\":false}}}}}",
        H "7" M "\"z\",\"reply\":1}}}}}",
        H "8" M "\"\"}}}}}",
        H "9" M "\"x\"}}}}",
        H "10,\"msg\":{\"v\":1,\"type\":\"msg\",\"id\":3,\"to\":\"test/sink/r\","
          "\"body\":{\"type\":\"test.text\",\"data\":\"q\"}}}}}",
        H "11,\"msg\":{\"v\":1,\"type\":\"msg\",\"from\":\"a\",\"to\":\"b\","
          "\"body\":{\"type\":\"test.text\",\"arg\":5,\"data\":\"x\"}}}}}",
        H "12,\"msg\":{\"v\":1,\"type\":\"msg\",\"from\":\"a\",\"to\":\"b\","
          "\"body\":{\"type\":\"test.text\",\"arg\":5,\"data\":\"y\"}}}}}",
        H "13" M "\"x\"}}}}}",
        H "14" M "\"x\"}}}}}x",
    };
#undef H
#undef M
    static const bool taken[] = {1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0};
    cl_fast_memo memo = {0};

    for (size_t round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
            cl_fields a, b;
            bool ta = cl_fast_decode_routed_memo(&memo, lines[i],
                                                 strlen(lines[i]), &a);
            bool tb = cl_fast_decode_routed(lines[i], strlen(lines[i]), &b);

            cr_assert_eq(ta, taken[i], "%s", lines[i]);
            cr_assert_eq(tb, taken[i], "%s", lines[i]);
            if (!ta)
                continue;
            cr_assert_eq(a.seq, b.seq);
            cr_assert_eq(a.id, b.id);
            cr_assert_eq(a.reply, b.reply);
            cr_assert_eq(a.arg, b.arg);
            cr_assert(cl_span_is(a.to, "test/sink/r") ||
                      cl_span_is(a.to, "b"));
            cr_assert_eq(a.to.p, b.to.p);
            cr_assert_eq(a.to.n, b.to.n);
            cr_assert_eq(a.from.p, b.from.p);
            cr_assert_eq(a.type.p, b.type.p);
            cr_assert_eq(a.type.n, b.type.n);
            cr_assert(json_equal(cl_fields_json(&a), cl_fields_json(&b)));
            cl_fields_fini(&a);
            cl_fields_fini(&b);
        }
    }
    cl_fast_memo_fini(&memo);
}
