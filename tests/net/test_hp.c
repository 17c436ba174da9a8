/* tests/net/test_hp.c: the HP v1 codec, pure (no sockets, no runtime). */
#include "net/hp.h"

#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

static hm_err decode_str(const char *s, hm_hp_msg *m, hm_hp_fail *f)
{
    return hm_hp_decode((const uint8_t *)s, strlen(s), m, f);
}

/* Decodes `s`, expecting failure; returns the code. */
static hm_hp_code fail_code(const char *s)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str(s, &m, &f), HM_EPROTO, "accepted: %s", s);
    return f.code;
}

Test(hp, ping_with_every_envelope_field_decodes)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"ping\",\"id\":7,"
                            "\"from\":\"a/b\",\"to\":\"c\",\"body\":{}}",
                            &m, &f),
                 HM_OK);
    cr_assert_eq(m.kind, HM_HP_PING);
    cr_assert_eq(m.version, 1);
    cr_assert_eq(m.id, 7);
    cr_assert_str_eq(m.from, "a/b");
    cr_assert_str_eq(m.to, "c");
    cr_assert(json_is_object(m.body));
    hm_hp_msg_fini(&m);
}

Test(hp, minimal_pong_has_no_optional_fields)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"type\":\"pong\",\"v\":1}", &m, &f), HM_OK);
    cr_assert_eq(m.kind, HM_HP_PONG);
    cr_assert_eq(m.id, 0);
    cr_assert_null(m.from);
    cr_assert_null(m.body);
    hm_hp_msg_fini(&m);
}

Test(hp, hello_carries_the_version_range_and_agent)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"hello\",\"body\":{\"min\":1,"
                            "\"max\":3,\"agent\":\"x/1\"}}",
                            &m, &f),
                 HM_OK);
    cr_assert_eq(m.u.hello.min, 1);
    cr_assert_eq(m.u.hello.max, 3);
    cr_assert_str_eq(m.u.hello.agent, "x/1");
    hm_hp_msg_fini(&m);
}

Test(hp, hello_from_a_future_version_still_decodes)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":5,\"type\":\"hello\",\"body\":{\"min\":1,"
                            "\"max\":5}}",
                            &m, &f),
                 HM_OK);
    cr_assert_eq(m.version, 5);
    hm_hp_msg_fini(&m);
}

Test(hp, welcome_carries_the_chosen_version)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"welcome\",\"body\":{"
                            "\"version\":1,\"min\":1,\"max\":1}}",
                            &m, &f),
                 HM_OK);
    cr_assert_eq(m.u.welcome.version, 1);
    hm_hp_msg_fini(&m);
}

Test(hp, error_carries_code_reason_and_err)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"error\",\"id\":3,\"body\":{"
                            "\"code\":\"delivery_failed\",\"reason\":\"r\","
                            "\"err\":\"HM_ENOTFOUND\"}}",
                            &m, &f),
                 HM_OK);
    cr_assert_eq(m.u.error.code, HM_HP_DELIVERY_FAILED);
    cr_assert_str_eq(m.u.error.reason, "r");
    cr_assert_str_eq(m.u.error.err, "HM_ENOTFOUND");
    hm_hp_msg_fini(&m);
}

Test(hp, error_with_a_code_from_the_future_is_other)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"error\",\"body\":{"
                            "\"code\":\"brand_new\",\"reason\":\"\"}}",
                            &m, &f),
                 HM_OK);
    cr_assert_eq(m.u.error.code, HM_HP_CODE_OTHER);
    cr_assert(hm_hp_code_closes(m.u.error.code));
    hm_hp_msg_fini(&m);
}

Test(hp, msg_carries_type_arg_data_and_reply)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"msg\",\"to\":\"chat/bob\","
                            "\"body\":{\"type\":\"chat.say\",\"arg\":9,"
                            "\"data\":{\"text\":\"hi\"},\"reply\":true}}",
                            &m, &f),
                 HM_OK);
    cr_assert_str_eq(m.u.msg.type, "chat.say");
    cr_assert_eq(m.u.msg.arg, 9);
    cr_assert(m.u.msg.reply);
    cr_assert_str_eq(json_string_value(json_object_get(m.u.msg.data, "text")),
                     "hi");
    hm_hp_msg_fini(&m);
}

Test(hp, unknown_top_level_fields_are_ignored)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(
        decode_str("{\"v\":1,\"type\":\"ping\",\"x-trace\":[1]}", &m, &f),
        HM_OK);
    hm_hp_msg_fini(&m);
}

Test(hp, invalid_utf8_is_invalid_utf8)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"ping\",\"x\":\"\xc3\x28\"}"),
                 HM_HP_INVALID_UTF8);
}

Test(hp, utf8_validator_rejects_overlongs_surrogates_and_big_code_points)
{
    cr_assert(hm_utf8_valid((const uint8_t *)"h\xc3\xa9\xe2\x82\xac"
                                             "\xf0\x9f\x98\x80",
                            10));
    cr_assert_not(hm_utf8_valid((const uint8_t *)"\xc0\xaf", 2));
    cr_assert_not(hm_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));
    cr_assert_not(hm_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));
    cr_assert_not(hm_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));
    cr_assert_not(hm_utf8_valid((const uint8_t *)"\xe2\x82", 2));
}

Test(hp, broken_json_is_invalid_json)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":"), HM_HP_INVALID_JSON);
}

Test(hp, trailing_garbage_is_invalid_json)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"ping\"} x"),
                 HM_HP_INVALID_JSON);
}

Test(hp, duplicate_keys_are_invalid_json)
{
    cr_assert_eq(fail_code("{\"v\":1,\"v\":1,\"type\":\"ping\"}"),
                 HM_HP_INVALID_JSON);
}

Test(hp, array_is_not_an_object)
{
    cr_assert_eq(fail_code("[1,2]"), HM_HP_NOT_OBJECT);
}

Test(hp, bare_number_is_not_an_object)
{
    cr_assert_eq(fail_code("42"), HM_HP_NOT_OBJECT);
}

Test(hp, missing_version_is_missing_version)
{
    cr_assert_eq(fail_code("{\"type\":\"ping\"}"), HM_HP_MISSING_VERSION);
}

Test(hp, version_two_is_unsupported_and_closes)
{
    cr_assert_eq(fail_code("{\"v\":2,\"type\":\"ping\"}"),
                 HM_HP_UNSUPPORTED_VERSION);
    cr_assert(hm_hp_code_closes(HM_HP_UNSUPPORTED_VERSION));
}

Test(hp, string_version_is_unsupported)
{
    cr_assert_eq(fail_code("{\"v\":\"1\",\"type\":\"ping\"}"),
                 HM_HP_UNSUPPORTED_VERSION);
}

Test(hp, unknown_type_is_unknown_type_and_continues)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"teleport\"}"),
                 HM_HP_UNKNOWN_TYPE);
    cr_assert_not(hm_hp_code_closes(HM_HP_UNKNOWN_TYPE));
}

Test(hp, missing_type_is_a_bad_field)
{
    cr_assert_eq(fail_code("{\"v\":1}"), HM_HP_BAD_FIELD);
}

Test(hp, zero_negative_and_huge_ids_are_bad_fields)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"ping\",\"id\":0}"),
                 HM_HP_BAD_FIELD);
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"ping\",\"id\":-1}"),
                 HM_HP_BAD_FIELD);
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"ping\",\"id\":"
                           "9007199254740992}"),
                 HM_HP_BAD_FIELD);
}

Test(hp, body_that_is_not_an_object_is_a_bad_field)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"ping\",\"body\":[]}"),
                 HM_HP_BAD_FIELD);
}

Test(hp, hello_with_an_inverted_range_is_a_bad_field)
{
    cr_assert_eq(fail_code("{\"v\":1,\"type\":\"hello\",\"body\":{\"min\":2,"
                           "\"max\":1}}"),
                 HM_HP_BAD_FIELD);
}

Test(hp, failure_keeps_the_id_for_correlation)
{
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert_eq(decode_str("{\"v\":1,\"type\":\"nope\",\"id\":12}", &m, &f),
                 HM_EPROTO);
    cr_assert_eq(f.id, 12);
}

Test(hp, line_too_long_closes_the_connection)
{
    cr_assert(hm_hp_code_closes(HM_HP_LINE_TOO_LONG));
    cr_assert_not(hm_hp_code_closes(HM_HP_INVALID_JSON));
}

Test(hp, code_names_round_trip)
{
    for (int c = 0; c < HM_HP_CODE_COUNT; c++)
        cr_assert_eq(hm_hp_code_parse(hm_hp_code_name((hm_hp_code)c)), c);
}

Test(hp, blank_lines_are_blank)
{
    cr_assert(hm_hp_is_blank((const uint8_t *)" \t\r", 3));
    cr_assert_not(hm_hp_is_blank((const uint8_t *)" {", 2));
}

Test(hp_encode, encoded_line_is_compact_and_ends_in_one_newline)
{
    hm_hp_envelope env = {.type = "ping", .id = 5, .from = "a"};
    char *line;
    size_t len;

    cr_assert_eq(hm_hp_encode(&env, 0, &line, &len), HM_OK);
    cr_assert_eq(len, strlen("{\"v\":1,\"type\":\"ping\",\"id\":5,"
                             "\"from\":\"a\"}\n"));
    cr_assert_eq(memcmp(line,
                        "{\"v\":1,\"type\":\"ping\",\"id\":5,"
                        "\"from\":\"a\"}\n",
                        len),
                 0);
    hm_free(line);
}

Test(hp_encode, newline_inside_a_string_is_escaped)
{
    json_t *body = json_pack("{s:s}", "text", "a\nb");
    hm_hp_envelope env = {.type = "ping", .body = body};
    char *line;
    size_t len;

    cr_assert_eq(hm_hp_encode(&env, 0, &line, &len), HM_OK);
    cr_assert_eq(memchr(line, '\n', len), line + len - 1);
    hm_free(line);
    json_decref(body);
}

Test(hp_encode, every_core_type_round_trips)
{
    json_t *bodies[] = {
        hm_hp_hello_body(1, 1, "hermes"),
        hm_hp_welcome_body(1, 1, 1, "hermes"),
        NULL,
        NULL,
        hm_hp_error_body(HM_HP_UNKNOWN_TYPE, "nope", "HM_EPROTO"),
        json_pack("{s:s,s:i,s:n}", "type", "t.x", "arg", 3, "data"),
    };

    for (int k = 0; k < HM_HP_KIND_COUNT; k++) {
        hm_hp_envelope env = {.type = hm_hp_kind_name((hm_hp_kind)k),
                              .id = 42,
                              .body = bodies[k]};
        hm_hp_msg m;
        hm_hp_fail f;
        char *line;
        size_t len;

        cr_assert_eq(hm_hp_encode(&env, 0, &line, &len), HM_OK);
        cr_assert_eq(hm_hp_decode((uint8_t *)line, len - 1, &m, &f), HM_OK,
                     "%s: %s", env.type, f.reason);
        cr_assert_eq(m.kind, k);
        cr_assert_eq(m.id, 42);
        hm_hp_msg_fini(&m);
        hm_free(line);
        json_decref(bodies[k]);
    }
}

Test(hp_encode, line_over_the_limit_is_too_big)
{
    hm_hp_envelope env = {.type = "ping", .from = "abcdefghij"};
    char *line;
    size_t len;

    cr_assert_eq(hm_hp_encode(&env, 16, &line, &len), HM_ETOOBIG);
}

Test(hp_encode, non_utf8_address_is_refused)
{
    hm_hp_envelope env = {.type = "ping", .from = "\xff"};
    char *line;
    size_t len;

    cr_assert_eq(hm_hp_encode(&env, 0, &line, &len), HM_EINVAL);
}

Test(hp, negotiation_picks_the_highest_common_version)
{
    unsigned v = 0;

    cr_assert_eq(hm_hp_negotiate(1, 9, &v), HM_OK);
    cr_assert_eq(v, 1);
    cr_assert_eq(hm_hp_negotiate(2, 9, &v), HM_EPROTO);
}
