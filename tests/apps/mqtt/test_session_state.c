/* tests/apps/mqtt/test_session_state.c: the persistent session record:
 * every field survives a round trip, and damaged, truncated, forged or
 * foreign bytes are refused with a reason instead of crashing. */
#include "apps/mqtt/session_state.h"

#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <string.h>

#define B(s) ((mqtt_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static mqtt_state_sub subs[] = {{B("a/+/c"), 1}, {B("#"), 2}, {B("x"), 0}};
static mqtt_state_msg inflight[] = {
    {.qos = 1, .stage = MQTT_STAGE_AWAIT_PUBACK, .packet_id = 7, .dup = true,
     .topic = B("a/b/c"), .payload = B("one")},
    {.qos = 2, .stage = MQTT_STAGE_AWAIT_PUBREC, .packet_id = 8,
     .retain = true, .topic = B("t"), .payload = B("")},
    {.qos = 2, .stage = MQTT_STAGE_AWAIT_PUBCOMP, .packet_id = 65535},
};
static mqtt_state_msg queued[] = {
    {.qos = 2, .topic = B("q/1"), .payload = B("queued one")},
    {.qos = 1, .retain = true, .topic = B("q/2"), .payload = B("\0\1\2")},
};
static uint16_t in_qos2[] = {3, 9, 40000};

static mqtt_session_state sample(void)
{
    return (mqtt_session_state){.client_id = B("sensor-17"),
                                .gen = 0x01020304,
                                .next_packet_id = 9,
                                .subs = subs,
                                .sub_count = 3,
                                .inflight = inflight,
                                .inflight_count = 3,
                                .queued = queued,
                                .queued_count = 2,
                                .in_qos2 = in_qos2,
                                .in_qos2_count = 3};
}

static bool same_bytes(mqtt_bytes a, mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void assert_same_msg(const mqtt_state_msg *a, const mqtt_state_msg *b)
{
    cr_assert_eq(a->qos, b->qos);
    cr_assert_eq(a->stage, b->stage);
    cr_assert_eq(a->packet_id, b->packet_id);
    cr_assert_eq(a->dup, b->dup);
    cr_assert_eq(a->retain, b->retain);
    cr_assert(same_bytes(a->topic, b->topic));
    cr_assert(same_bytes(a->payload, b->payload));
}

static void encode(const mqtt_session_state *st, uint8_t **buf, size_t *len)
{
    cr_assert_eq(mqtt_session_state_encode(st, buf, len), HM_OK);
}

static hm_err decode(const uint8_t *buf, size_t len, const char **why)
{
    mqtt_session_state out;
    hm_err err = mqtt_session_state_decode(buf, len, &out, why);

    if (err == HM_OK)
        mqtt_session_state_fini(&out);
    return err;
}

Test(mqtt_session_state, every_field_survives_a_round_trip)
{
    mqtt_session_state in = sample(), out;
    uint8_t *buf;
    size_t len;

    encode(&in, &buf, &len);
    cr_assert_eq(mqtt_session_state_decode(buf, len, &out, NULL), HM_OK);
    cr_assert(same_bytes(out.client_id, in.client_id));
    cr_assert_eq(out.gen, 0x01020304);
    cr_assert_eq(out.next_packet_id, 9);
    cr_assert_eq(out.sub_count, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert(same_bytes(out.subs[i].filter, subs[i].filter));
        cr_assert_eq(out.subs[i].qos, subs[i].qos);
    }
    cr_assert_eq(out.inflight_count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_same_msg(&out.inflight[i], &inflight[i]);
    cr_assert_eq(out.queued_count, 2);
    for (size_t i = 0; i < 2; i++)
        assert_same_msg(&out.queued[i], &queued[i]);
    cr_assert_eq(out.in_qos2_count, 3);
    cr_assert_eq(memcmp(out.in_qos2, in_qos2, sizeof in_qos2), 0);
    mqtt_session_state_fini(&out);
    hm_free(buf);
}

Test(mqtt_session_state, payloads_are_views_into_the_input_not_copies)
{
    mqtt_session_state in = sample(), out;
    uint8_t *buf;
    size_t len;

    encode(&in, &buf, &len);
    cr_assert_eq(mqtt_session_state_decode(buf, len, &out, NULL), HM_OK);
    cr_assert(out.queued[0].payload.ptr >= buf &&
              out.queued[0].payload.ptr < buf + len);
    mqtt_session_state_fini(&out);
    hm_free(buf);
}

Test(mqtt_session_state, an_empty_session_round_trips)
{
    mqtt_session_state in = {.client_id = B("c"), .next_packet_id = 1}, out;
    uint8_t *buf;
    size_t len;

    encode(&in, &buf, &len);
    cr_assert_eq(mqtt_session_state_decode(buf, len, &out, NULL), HM_OK);
    cr_assert_eq(out.sub_count + out.inflight_count + out.queued_count +
                     out.in_qos2_count,
                 0);
    mqtt_session_state_fini(&out);
    hm_free(buf);
}

Test(mqtt_session_state, every_truncation_is_refused_as_truncated_or_short)
{
    mqtt_session_state in = sample();
    uint8_t *buf;
    size_t len;

    encode(&in, &buf, &len);
    for (size_t cut = 0; cut < len; cut++) {
        const char *why = NULL;
        uint8_t *copy = hm_alloc(cut ? cut : 1);

        memcpy(copy, buf, cut);
        cr_assert_eq(decode(copy, cut, &why), HM_EPROTO, "cut at %zu", cut);
        cr_assert_not_null(why);
        hm_free(copy);
    }
    hm_free(buf);
}

Test(mqtt_session_state, trailing_bytes_are_refused)
{
    mqtt_session_state in = sample();
    const char *why = NULL;
    uint8_t *buf;
    size_t len;

    encode(&in, &buf, &len);
    buf = hm_realloc(buf, len + 1);
    buf[len] = 0;
    cr_assert_eq(decode(buf, len + 1, &why), HM_EPROTO);
    cr_assert_str_eq(why, "trailing bytes after the record");
    hm_free(buf);
}

Test(mqtt_session_state, foreign_bytes_and_other_versions_are_refused)
{
    const char *why = NULL;
    uint8_t v3[] = {'H', 'M', 'Q', 'S', 3, 0, 0, 0, 0, 0, 1, 'c', 0, 1};

    cr_assert_eq(decode((const uint8_t *)"SQLite format 3", 15, &why),
                 HM_EPROTO);
    cr_assert_str_eq(why, "not a session record");
    cr_assert_eq(decode(v3, sizeof v3, &why), HM_EPROTO);
    cr_assert_str_eq(why, "unknown session record version");
}

/* Records written before move generations (docs/adr/0290) still load, as
 * generation 0: a store keeps them across an upgrade. */
Test(mqtt_session_state, a_version_1_record_loads_with_generation_0)
{
    /* client "c", next id 1, one subscription "x" at QoS 1, one queued
     * QoS 1 message on "t" ("p"), no in-flight, no inbound ids. */
    uint8_t rec[] = {'H', 'M', 'Q', 'S', 1, 0, 1, 'c', 0, 1,
                     0, 0, 0, 1, 0, 1, 'x', 1,
                     0, 0, 0, 0,
                     0, 0, 0, 1, 1, 0, 0, 1, 't', 0, 0, 0, 1, 'p',
                     0, 0, 0, 0};
    mqtt_session_state out;
    const char *why = NULL;

    cr_assert_eq(mqtt_session_state_decode(rec, sizeof rec, &out, &why),
                 HM_OK, "%s", why ? why : "");
    cr_assert_eq(out.gen, 0);
    cr_assert_eq(out.sub_count, 1);
    cr_assert(same_bytes(out.subs[0].filter, B("x")));
    cr_assert_eq(out.queued_count, 1);
    cr_assert(same_bytes(out.queued[0].payload, B("p")));
    mqtt_session_state_fini(&out);
}

Test(mqtt_session_state, the_generation_is_written_big_endian_after_the_version)
{
    mqtt_session_state in = {.client_id = B("c"), .gen = 0xA0B0C0D0u,
                             .next_packet_id = 1};
    uint8_t *buf;
    size_t len;

    encode(&in, &buf, &len);
    cr_assert_eq(buf[4], MQTT_SESSION_STATE_VERSION);
    cr_assert_eq(buf[5], 0xA0);
    cr_assert_eq(buf[8], 0xD0);
    hm_free(buf);
}

Test(mqtt_session_state, a_forged_count_is_refused_before_allocating)
{
    /* client "c", next id 1, then 0xFFFFFFFF subscriptions. */
    uint8_t rec[] = {'H', 'M', 'Q', 'S', 2, 0, 0, 0, 7, 0, 1, 'c', 0, 1,
                     0xFF, 0xFF, 0xFF, 0xFF};
    const char *why = NULL;

    cr_assert_eq(decode(rec, sizeof rec, &why), HM_EPROTO);
    cr_assert_str_eq(why, "subscription count larger than the record");
}

/* Flips every bit of a valid record once: each result decodes to a
 * record that passes the checks, or is refused; never a crash. */
Test(mqtt_session_state, single_bit_flips_never_crash)
{
    mqtt_session_state in = sample();
    uint8_t *buf;
    size_t len;
    int refused = 0;

    encode(&in, &buf, &len);
    for (size_t i = 0; i < len * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        refused += decode(buf, len, NULL) != HM_OK;
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    cr_assert_gt(refused, 0);
    hm_free(buf);
}

Test(mqtt_session_state, encode_refuses_what_decode_would_refuse)
{
    mqtt_session_state st = sample();
    mqtt_state_msg dup_ids[] = {inflight[0], inflight[0]};
    mqtt_state_sub bad_filter[] = {{B("a/#/b"), 1}};
    mqtt_state_msg wild_topic[] = {{.qos = 1, .topic = B("a/+")}};
    mqtt_state_msg bad_stage[] = {
        {.qos = 1, .stage = MQTT_STAGE_AWAIT_PUBREC, .packet_id = 1,
         .topic = B("t")}};
    uint16_t unsorted[] = {5, 5};
    uint8_t *buf;
    size_t len;

    st.inflight = dup_ids;
    st.inflight_count = 2;
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
    st = sample();
    st.subs = bad_filter;
    st.sub_count = 1;
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
    st = sample();
    st.queued = wild_topic;
    st.queued_count = 1;
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
    st = sample();
    st.inflight = bad_stage;
    st.inflight_count = 1;
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
    st = sample();
    st.in_qos2 = unsorted;
    st.in_qos2_count = 2;
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
    st = sample();
    st.next_packet_id = 0;
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
    st = sample();
    st.client_id = B("");
    cr_assert_eq(mqtt_session_state_encode(&st, &buf, &len), HM_EINVAL);
}

Test(mqtt_session_state, a_decoded_record_re_encodes_to_the_same_bytes)
{
    mqtt_session_state in = sample(), out;
    uint8_t *a, *b;
    size_t alen, blen;

    encode(&in, &a, &alen);
    cr_assert_eq(mqtt_session_state_decode(a, alen, &out, NULL), HM_OK);
    encode(&out, &b, &blen);
    cr_assert_eq(alen, blen);
    cr_assert_eq(memcmp(a, b, alen), 0);
    mqtt_session_state_fini(&out);
    hm_free(a);
    hm_free(b);
}
