/* tests/net/test_hp_msg.c: runtime messages in HP "msg" envelopes, through
 * a registered type's codec (a manual-mode runtime; no sockets). */
#include "net/hp.h"

#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

static json_t *note_to_json(const void *payload)
{
    return json_string(payload);
}

static hm_err note_from_json(const json_t *json, void **out)
{
    if (!json_is_string(json))
        return HM_ECODEC;
    *out = hm_strdup(json_string_value(json));
    return HM_OK;
}

static const hm_type NOTE = {.name = "test.note",
                             .free = hm_free,
                             .to_json = note_to_json,
                             .from_json = note_from_json};
static const hm_type OPAQUE = {.name = "test.opaque"};

static hm_runtime *rt;

static void setup(void)
{
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.manual = true}, &rt),
                 HM_OK);
    cr_assert_eq(hm_runtime_register_type(rt, &NOTE), HM_OK);
}

static void teardown(void)
{
    hm_runtime_destroy(rt);
}

TestSuite(hp_msg, .init = setup, .fini = teardown);

Test(hp_msg, runtime_message_round_trips_through_a_line)
{
    hm_msg *m = hm_msg_create(&NOTE, hm_strdup("hello"), 42);
    hm_hp_envelope env = {.id = 7, .from = "node-a/x", .to = "node-b/y"};
    hm_msg *back = NULL;
    hm_hp_msg hp;
    hm_hp_fail f;
    char *line;
    size_t len;

    cr_assert_eq(hm_hp_encode_msg(m, &env, 0, &line, &len), HM_OK);
    cr_assert_eq(hm_hp_decode((uint8_t *)line, len - 1, &hp, &f), HM_OK);
    cr_assert_eq(hp.kind, HM_HP_MSG);
    cr_assert_str_eq(hp.to, "node-b/y");
    cr_assert_eq(hp.id, 7);
    cr_assert_eq(hm_hp_decode_msg(rt, &hp, &back), HM_OK);
    cr_assert_eq(hm_msg_type(back), &NOTE);
    cr_assert_eq(hm_msg_arg(back), 42);
    cr_assert_str_eq(hm_msg_payload(back), "hello");
    hm_msg_destroy(back);
    hm_hp_msg_fini(&hp);
    hm_free(line);
    hm_msg_destroy(m);
}

Test(hp_msg, type_without_a_codec_is_not_encoded)
{
    hm_msg *m = hm_msg_create(&OPAQUE, NULL, 0);
    hm_hp_envelope env = {0};
    char *line;
    size_t len;

    cr_assert_eq(hm_hp_encode_msg(m, &env, 0, &line, &len), HM_ECODEC);
    hm_msg_destroy(m);
}

Test(hp_msg, unregistered_type_name_is_not_found)
{
    const char *s = "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"nope\"}}";
    hm_msg *back;
    hm_hp_msg hp;
    hm_hp_fail f;

    cr_assert_eq(hm_hp_decode((const uint8_t *)s, strlen(s), &hp, &f), HM_OK);
    cr_assert_eq(hm_hp_decode_msg(rt, &hp, &back), HM_ENOTFOUND);
    hm_hp_msg_fini(&hp);
}

Test(hp_msg, payload_the_decoder_refuses_is_its_error)
{
    const char *s =
        "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"test.note\","
        "\"data\":5}}";
    hm_msg *back;
    hm_hp_msg hp;
    hm_hp_fail f;

    cr_assert_eq(hm_hp_decode((const uint8_t *)s, strlen(s), &hp, &f), HM_OK);
    cr_assert_eq(hm_hp_decode_msg(rt, &hp, &back), HM_ECODEC);
    hm_hp_msg_fini(&hp);
}
