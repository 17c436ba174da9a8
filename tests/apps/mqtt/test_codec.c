/* tests/apps/mqtt/test_codec.c: the MQTT 3.1.1 decoder and encoder, one
 * normative statement per test where the standard has one. Packets are
 * written out byte by byte, as on the wire, so a test reads like the
 * standard's figures. */
#include "apps/mqtt/codec.h"

#include <criterion/criterion.h>
#include <string.h>

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__})
#define DECODE(pkt, fault, ...)                                                \
    decode_copy(BYTES(__VA_ARGS__), sizeof(BYTES(__VA_ARGS__)), (pkt), (fault))

/* Decoded views point into the input, so the input must outlive the
 * assertions: copy each packet into storage that lives as long as the
 * test (a compound literal dies with the macro's statement). */
static uint8_t wire[256];

static hm_err decode_copy(const uint8_t *bytes, size_t len, mqtt_packet *p,
                          mqtt_fault *f)
{
    cr_assert_leq(len, sizeof wire);
    memcpy(wire, bytes, len);
    return mqtt_decode(wire, len, NULL, p, f);
}

static bool bytes_eq(mqtt_bytes b, const char *s)
{
    return b.len == strlen(s) && memcmp(b.ptr, s, b.len) == 0;
}

/* A CONNECT with the given connect flags and a client id "c". */
#define CONNECT_FLAGS(flags)                                                   \
    0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, (flags), 0, 60, 0, 1, 'c'

/* ------------------------------------------------------------- CONNECT */

Test(mqtt_connect, minimal_connect_decodes_its_fields)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, CONNECT_FLAGS(0x02)), HM_OK);
    cr_assert_eq(p.type, MQTT_CONNECT);
    cr_assert_eq(p.u.connect.protocol_level, 4);
    cr_assert(p.u.connect.clean_session);
    cr_assert_eq(p.u.connect.keepalive_s, 60);
    cr_assert(bytes_eq(p.u.connect.client_id, "c"));
    cr_assert_not(p.u.connect.will);
    cr_assert_not(p.u.connect.has_username);
}

Test(mqtt_connect, full_connect_decodes_will_user_and_password)
{
    mqtt_packet p;
    hm_err err = DECODE(&p, NULL, 0x10, 31, 0, 4, 'M', 'Q', 'T', 'T', 4,
                        0xEE /* user, pass, will retain, will qos 1, will,
                                clean */
                        ,
                        0, 10, 0, 1, 'c', 0, 3, 'a', '/', 'b', 0, 2, 'h', 'i',
                        0, 2, 'u', 's', 0, 3, 'p', 0, 'w');
    cr_assert_eq(err, HM_OK);
    cr_assert(p.u.connect.will);
    cr_assert_eq(p.u.connect.will_qos, 1);
    cr_assert(p.u.connect.will_retain);
    cr_assert(bytes_eq(p.u.connect.will_topic, "a/b"));
    cr_assert(bytes_eq(p.u.connect.will_payload, "hi"));
    cr_assert(bytes_eq(p.u.connect.username, "us"));
    cr_assert_eq(p.u.connect.password.len, 3); /* binary, NUL allowed */
}

Test(mqtt_connect, wrong_protocol_name_is_a_violation_mqtt_3_1_2_1)
{
    mqtt_packet p;
    mqtt_fault f;
    cr_assert_eq(DECODE(&p, &f, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 60,
                        0, 1, 'c'),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_PROTOCOL);
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-1]"));
}

Test(mqtt_connect, unsupported_level_asks_for_connack_1_mqtt_3_1_2_2)
{
    mqtt_packet p;
    mqtt_fault f;
    cr_assert_eq(DECODE(&p, &f, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60,
                        0, 1, 'c'),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_BAD_PROTOCOL_LEVEL);
    cr_assert_eq(mqtt_fault_connack_code(f.kind), 0x01);
}

Test(mqtt_connect, mqtt5_connect_gets_connack_1_not_a_parse_error_3_1_2_2)
{
    /* An MQTT 5 CONNECT has a properties length after the keepalive: the
     * level must be judged before the rest is read. */
    mqtt_packet p;
    mqtt_fault f;
    cr_assert_eq(DECODE(&p, &f, 0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60,
                        0, 0, 1, 'c', 9),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_BAD_PROTOCOL_LEVEL);
}

Test(mqtt_connect, mqtt_3_1_mqisdp_level_3_is_accepted)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x10, 15, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p',
                        3, 2, 0, 60, 0, 1, 'c'),
                 HM_OK);
    cr_assert_eq(p.u.connect.protocol_level, 3);
}

Test(mqtt_connect, reserved_flag_set_is_malformed_mqtt_3_1_2_3)
{
    mqtt_packet p;
    mqtt_fault f;
    cr_assert_eq(DECODE(&p, &f, CONNECT_FLAGS(0x03)), HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_MALFORMED);
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-3]"));
}

Test(mqtt_connect, will_qos_without_will_flag_is_malformed_mqtt_3_1_2_11_and_13)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, CONNECT_FLAGS(0x0A)), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-13]"));
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-11]"));
}

Test(mqtt_connect, will_qos_3_is_malformed_mqtt_3_1_2_14)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1E, 0,
                        60, 0, 1, 'c', 0, 1, 't', 0, 1, 'x'),
                 HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-14]"));
}

Test(mqtt_connect, will_retain_without_will_flag_is_malformed_mqtt_3_1_2_15)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, CONNECT_FLAGS(0x22)), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-15]"));
}

Test(mqtt_connect, will_retain_flag_is_reported_mqtt_3_1_2_16_and_17)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06,
                        0, 60, 0, 1, 'c', 0, 1, 't', 0, 1, 'x'),
                 HM_OK);
    cr_assert_not(p.u.connect.will_retain);
    cr_assert_eq(DECODE(&p, NULL, 0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x26,
                        0, 60, 0, 1, 'c', 0, 1, 't', 0, 1, 'x'),
                 HM_OK);
    cr_assert(p.u.connect.will_retain);
}

Test(mqtt_connect, will_topic_with_wildcard_is_a_violation_mqtt_3_3_2_2)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0,
                        60, 0, 1, 'c', 0, 1, '#', 0, 1, 'x'),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_PROTOCOL);
}

Test(mqtt_connect, password_without_username_is_malformed_mqtt_3_1_2_22)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0,
                        60, 0, 1, 'c', 0, 1, 'p'),
                 HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.1.2-22]"));
}

Test(mqtt_connect, username_flag_without_username_is_malformed_3_1_2_19)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, CONNECT_FLAGS(0x82)), HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_MALFORMED);
}

Test(mqtt_connect, empty_client_id_with_clean_session_is_accepted_3_1_3_6)
{
    mqtt_packet p;
    cr_assert_eq(
        DECODE(&p, NULL, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0),
        HM_OK);
    cr_assert_eq(p.u.connect.client_id.len, 0);
}

Test(mqtt_connect, empty_client_id_without_clean_session_is_rejected_3_1_3_8)
{
    mqtt_packet p;
    mqtt_fault f;
    cr_assert_eq(
        DECODE(&p, &f, 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 60, 0, 0),
        HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_ID_REJECTED);
    cr_assert_eq(mqtt_fault_connack_code(f.kind), 0x02);
}

Test(mqtt_connect, trailing_bytes_after_payload_are_malformed)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60,
                        0, 1, 'c', 'x'),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_MALFORMED);
}

Test(mqtt_connect, truncated_client_id_is_malformed)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60,
                        0, 5, 'c'),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_MALFORMED);
}

Test(mqtt_connect, connect_flags_nibble_nonzero_is_malformed_mqtt_2_2_2_2)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x11, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60,
                        0, 1, 'c'),
                 HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-2.2.2-1]"));
}

/* --------------------------------------------------------------- UTF-8 */

Test(mqtt_utf8, ill_formed_utf8_in_a_string_is_malformed_mqtt_1_5_3_1)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60,
                        0, 1, 0xC0),
                 HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-1.5.3-1]"));
}

Test(mqtt_utf8, encoded_surrogate_is_rejected_mqtt_1_5_3_1)
{
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xED, 0xA0, 0x80), 3));
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xED, 0xBF, 0xBF), 3));
    cr_assert(mqtt_utf8_is_valid(BYTES(0xED, 0x9F, 0xBF), 3)); /* U+D7FF */
}

Test(mqtt_utf8, overlong_and_out_of_range_forms_are_rejected_mqtt_1_5_3_1)
{
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xC0, 0xAF), 2));
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xE0, 0x80, 0xAF), 3));
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xF0, 0x80, 0x80, 0xAF), 4));
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xF4, 0x90, 0x80, 0x80), 4));
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xF5, 0x80, 0x80, 0x80), 4));
    cr_assert_not(mqtt_utf8_is_valid(BYTES(0xE2, 0x82), 2)); /* truncated */
    cr_assert(mqtt_utf8_is_valid(BYTES(0xF4, 0x8F, 0xBF, 0xBF), 4));
    cr_assert(mqtt_utf8_is_valid(BYTES(0xE2, 0x82, 0xAC), 3)); /* euro */
}

Test(mqtt_utf8, null_character_in_a_string_is_malformed_mqtt_1_5_3_2)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x30, 5, 0, 3, 'a', 0, 'b'), HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_MALFORMED);
}

Test(mqtt_utf8, bom_is_kept_not_stripped_mqtt_1_5_3_3)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x30, 6, 0, 4, 0xEF, 0xBB, 0xBF, 'a'), HM_OK);
    cr_assert_eq(p.u.publish.topic.len, 4);
    cr_assert_eq(p.u.publish.topic.ptr[0], 0xEF);
}

/* ---------------------------------------------------- fixed header rules */

Test(mqtt_fixed_header, remaining_length_of_five_bytes_is_malformed_2_2_3)
{
    size_t len;
    mqtt_fault f;
    cr_assert_eq(mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), 6, NULL,
                            &len, &f),
                 HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_MALFORMED);
}

Test(mqtt_fixed_header, four_byte_remaining_length_is_accepted_by_framer)
{
    size_t len;
    /* 0xFF 0xFF 0xFF 0x7F = 268435455: incomplete, not malformed. */
    cr_assert_eq(
        mqtt_frame(BYTES(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 5, NULL, &len, NULL),
        HM_EAGAIN);
}

Test(mqtt_fixed_header, packet_over_the_limit_is_too_big_from_its_header)
{
    size_t len;
    mqtt_fault f;
    mqtt_limits lim = {.max_packet_len = 100};
    cr_assert_eq(mqtt_frame(BYTES(0x30, 0xE5, 0x00), 3, &lim, &len, &f),
                 HM_ETOOBIG);
    cr_assert_eq(f.kind, MQTT_FAULT_TOO_BIG);
}

Test(mqtt_fixed_header, reserved_packet_types_are_malformed)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x00, 0), HM_EPROTO);
    cr_assert_eq(DECODE(&p, NULL, 0xF0, 0), HM_EPROTO);
}

Test(mqtt_fixed_header, pubrel_with_flags_0000_is_malformed_mqtt_3_6_1_1)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x60, 2, 0, 1), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.6.1-1]"));
    cr_assert_eq(DECODE(&p, NULL, 0x62, 2, 0, 1), HM_OK);
}

Test(mqtt_fixed_header, reserved_flags_on_acks_and_pings_are_malformed_2_2_2_1)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x41, 2, 0, 1), HM_EPROTO); /* PUBACK */
    cr_assert_eq(DECODE(&p, NULL, 0x52, 2, 0, 1), HM_EPROTO); /* PUBREC */
    cr_assert_eq(DECODE(&p, NULL, 0x74, 2, 0, 1), HM_EPROTO); /* PUBCOMP */
    cr_assert_eq(DECODE(&p, NULL, 0xB8, 2, 0, 1), HM_EPROTO); /* UNSUBACK */
    cr_assert_eq(DECODE(&p, NULL, 0xC1, 0), HM_EPROTO);       /* PINGREQ */
    cr_assert_eq(DECODE(&p, NULL, 0xE2, 0), HM_EPROTO);       /* DISCONNECT */
}

Test(mqtt_fixed_header, pingreq_with_a_body_is_malformed)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0xC0, 1, 0), HM_EPROTO);
    cr_assert_eq(DECODE(&p, NULL, 0xC0, 0), HM_OK);
    cr_assert_eq(p.type, MQTT_PINGREQ);
}

Test(mqtt_fixed_header, remaining_length_shorter_than_the_buffer_is_malformed)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0xE0, 0, 0xC0, 0), HM_EPROTO);
}

/* ------------------------------------------------------------- PUBLISH */

Test(mqtt_publish, qos1_publish_decodes_topic_id_and_payload)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x3B, 9, 0, 3, 'a', '/', 'b', 0, 7, 'h', 'i'),
                 HM_OK);
    cr_assert(p.u.publish.dup);
    cr_assert_eq(p.u.publish.qos, 1);
    cr_assert(p.u.publish.retain);
    cr_assert(bytes_eq(p.u.publish.topic, "a/b"));
    cr_assert_eq(p.u.publish.packet_id, 7);
    cr_assert(bytes_eq(p.u.publish.payload, "hi"));
}

Test(mqtt_publish, qos0_publish_has_no_packet_id_mqtt_2_3_1_5)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x30, 5, 0, 1, 't', 0, 7), HM_OK);
    cr_assert_eq(p.u.publish.packet_id, 0);
    cr_assert_eq(p.u.publish.payload.len, 2);
}

Test(mqtt_publish, qos_3_is_malformed_mqtt_3_3_1_4)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x36, 5, 0, 1, 't', 0, 1), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.3.1-4]"));
}

Test(mqtt_publish, dup_on_qos0_is_malformed_mqtt_3_3_1_2)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x38, 3, 0, 1, 't'), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.3.1-2]"));
}

Test(mqtt_publish, wildcard_in_topic_name_is_malformed_mqtt_3_3_2_2)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x30, 5, 0, 3, 'a', '/', '+'), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.3.2-2]"));
    cr_assert_eq(DECODE(&p, &f, 0x30, 3, 0, 1, '#'), HM_EPROTO);
}

Test(mqtt_publish, empty_topic_name_is_malformed_mqtt_4_7_3_1)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x30, 2, 0, 0), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-4.7.3-1]"));
}

Test(mqtt_publish, zero_packet_id_on_qos1_is_malformed_mqtt_2_3_1_1)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x32, 5, 0, 1, 't', 0, 0), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-2.3.1-1]"));
}

Test(mqtt_publish, truncated_topic_is_malformed)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x30, 3, 0, 5, 't'), HM_EPROTO);
}

/* ----------------------------------------------------------- SUBSCRIBE */

Test(mqtt_subscribe, entries_are_read_back_in_order)
{
    mqtt_packet p;
    mqtt_sub_iter it;
    mqtt_sub_req r;
    cr_assert_eq(
        DECODE(&p, NULL, 0x82, 12, 0, 5, 0, 3, 'a', '/', '#', 1, 0, 1, '+', 2),
        HM_OK);
    cr_assert_eq(p.u.subscribe.packet_id, 5);
    cr_assert_eq(p.u.subscribe.count, 2);
    mqtt_sub_iter_init(&it, MQTT_SUBSCRIBE, &p.u.subscribe);
    cr_assert(mqtt_sub_iter_next(&it, &r));
    cr_assert(bytes_eq(r.filter, "a/#"));
    cr_assert_eq(r.qos, 1);
    cr_assert(mqtt_sub_iter_next(&it, &r));
    cr_assert(bytes_eq(r.filter, "+"));
    cr_assert_eq(r.qos, 2);
    cr_assert_not(mqtt_sub_iter_next(&it, &r));
}

Test(mqtt_subscribe, flags_other_than_0010_are_malformed_mqtt_3_8_1_1)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x80, 6, 0, 1, 0, 1, 'a', 0), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.8.1-1]"));
}

Test(mqtt_subscribe, no_topic_filter_is_a_violation_mqtt_3_8_3_3)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x82, 2, 0, 1), HM_EPROTO);
    cr_assert_eq(f.kind, MQTT_FAULT_PROTOCOL);
    cr_assert(strstr(f.rule, "[MQTT-3.8.3-3]"));
}

Test(mqtt_subscribe, requested_qos_reserved_bits_are_malformed_mqtt_3_8_3_4)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0x82, 6, 0, 1, 0, 1, 'a', 3), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3-8.3-4]"));
    cr_assert_eq(DECODE(&p, &f, 0x82, 6, 0, 1, 0, 1, 'a', 0x41), HM_EPROTO);
}

Test(mqtt_subscribe, zero_packet_id_is_malformed_mqtt_2_3_1_1)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x82, 6, 0, 0, 0, 1, 'a', 0), HM_EPROTO);
}

Test(mqtt_subscribe, invalid_filter_is_malformed_mqtt_4_7_1_2)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x82, 8, 0, 1, 0, 3, 'a', '#', 'b', 0),
                 HM_EPROTO);
    cr_assert_eq(DECODE(&p, NULL, 0x82, 7, 0, 1, 0, 2, 'a', '+', 0), HM_EPROTO);
}

Test(mqtt_subscribe, filter_utf8_is_checked_mqtt_3_8_3_1)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x82, 6, 0, 1, 0, 1, 0xFF, 0), HM_EPROTO);
}

Test(mqtt_unsubscribe, entries_decode_without_qos)
{
    mqtt_packet p;
    mqtt_sub_iter it;
    mqtt_sub_req r;
    cr_assert_eq(DECODE(&p, NULL, 0xA2, 7, 0, 9, 0, 3, 'a', '/', 'b'), HM_OK);
    mqtt_sub_iter_init(&it, MQTT_UNSUBSCRIBE, &p.u.subscribe);
    cr_assert(mqtt_sub_iter_next(&it, &r));
    cr_assert(bytes_eq(r.filter, "a/b"));
    cr_assert_not(mqtt_sub_iter_next(&it, &r));
}

Test(mqtt_unsubscribe, flags_other_than_0010_are_malformed_mqtt_3_10_1_1)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0xA0, 5, 0, 1, 0, 1, 'a'), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.10.1-1]"));
}

Test(mqtt_unsubscribe, no_topic_filter_is_a_violation_mqtt_3_10_3_2)
{
    mqtt_fault f;
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, &f, 0xA2, 2, 0, 1), HM_EPROTO);
    cr_assert(strstr(f.rule, "[MQTT-3.10.3-2]"));
}

/* --------------------------------------------------- server-side packets */

Test(mqtt_suback, return_codes_other_than_0_1_2_0x80_are_malformed_3_9_3_2)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x90, 4, 0, 1, 0, 0x80), HM_OK);
    cr_assert_eq(p.u.suback.codes.len, 2);
    cr_assert_eq(DECODE(&p, NULL, 0x90, 3, 0, 1, 3), HM_EPROTO);
}

Test(mqtt_connack, session_present_and_code_decode)
{
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x20, 2, 1, 0), HM_OK);
    cr_assert(p.u.connack.session_present);
    cr_assert_eq(DECODE(&p, NULL, 0x20, 2, 2, 0), HM_EPROTO);
}

/* ------------------------------------------------------------- encoder */

static void roundtrip(const mqtt_packet *in, mqtt_packet *out, uint8_t *buf,
                      size_t cap)
{
    size_t len;
    cr_assert_eq(mqtt_encode(in, buf, cap, &len), HM_OK);
    cr_assert_eq(mqtt_decode(buf, len, NULL, out, NULL), HM_OK);
    cr_assert_eq(out->type, in->type);
}

Test(mqtt_encode, connack_is_four_bytes_with_session_present)
{
    uint8_t buf[8];
    size_t len;
    mqtt_packet p = {.type = MQTT_CONNACK,
                     .u.connack = {.session_present = true, .return_code = 0}};
    cr_assert_eq(mqtt_encode(&p, buf, sizeof buf, &len), HM_OK);
    cr_assert_eq(len, 4);
    cr_assert_arr_eq(buf, BYTES(0x20, 2, 1, 0), 4);
}

Test(mqtt_encode, publish_roundtrips_through_the_decoder)
{
    uint8_t buf[64];
    mqtt_packet out;
    mqtt_packet in = {.type = MQTT_PUBLISH,
                      .u.publish = {.qos = 2,
                                    .retain = true,
                                    .topic = {(const uint8_t *)"x/y", 3},
                                    .packet_id = 300,
                                    .payload = {(const uint8_t *)"hello", 5}}};
    roundtrip(&in, &out, buf, sizeof buf);
    cr_assert_eq(out.u.publish.qos, 2);
    cr_assert(out.u.publish.retain);
    cr_assert_eq(out.u.publish.packet_id, 300);
    cr_assert(bytes_eq(out.u.publish.payload, "hello"));
}

Test(mqtt_encode, large_publish_uses_a_multi_byte_remaining_length)
{
    static uint8_t payload[20000], buf[20100];
    mqtt_packet out;
    size_t len;
    mqtt_packet in = {.type = MQTT_PUBLISH,
                      .u.publish = {.topic = {(const uint8_t *)"t", 1},
                                    .payload = {payload, sizeof payload}}};
    cr_assert_eq(mqtt_encoded_len(&in, &len), HM_OK);
    cr_assert_eq(len, 1 + 3 + 3 + sizeof payload);
    roundtrip(&in, &out, buf, sizeof buf);
    cr_assert_eq(out.u.publish.payload.len, sizeof payload);
}

Test(mqtt_encode, connect_roundtrips_with_all_fields)
{
    uint8_t buf[128];
    mqtt_packet out;
    mqtt_packet in = {.type = MQTT_CONNECT,
                      .u.connect = {
                          .protocol_level = 4,
                          .clean_session = true,
                          .keepalive_s = 30,
                          .client_id = {(const uint8_t *)"id", 2},
                          .will = true,
                          .will_qos = 2,
                          .will_retain = true,
                          .will_topic = {(const uint8_t *)"w", 1},
                          .will_payload = {(const uint8_t *)"bye", 3},
                          .has_username = true,
                          .username = {(const uint8_t *)"u", 1},
                          .has_password = true,
                          .password = {(const uint8_t *)"p", 1},
                      }};
    roundtrip(&in, &out, buf, sizeof buf);
    cr_assert_eq(out.u.connect.will_qos, 2);
    cr_assert(bytes_eq(out.u.connect.will_payload, "bye"));
    cr_assert(bytes_eq(out.u.connect.password, "p"));
    cr_assert_eq(out.u.connect.keepalive_s, 30);
}

Test(mqtt_encode, subscribe_from_requests_roundtrips)
{
    uint8_t buf[64];
    mqtt_packet out;
    mqtt_sub_req reqs[2] = {{{(const uint8_t *)"a/+", 3}, 1},
                            {{(const uint8_t *)"#", 1}, 0}};
    mqtt_packet in = {
        .type = MQTT_SUBSCRIBE,
        .u.subscribe = {.packet_id = 1, .count = 2, .reqs = reqs}};
    roundtrip(&in, &out, buf, sizeof buf);
    cr_assert_eq(buf[0], 0x82);
    cr_assert_eq(out.u.subscribe.count, 2);
}

Test(mqtt_encode, suback_carries_one_code_per_filter)
{
    uint8_t buf[16];
    size_t len;
    mqtt_packet p = {
        .type = MQTT_SUBACK,
        .u.suback = {.packet_id = 9, .codes = {BYTES(1, 0x80), 2}}};
    cr_assert_eq(mqtt_encode(&p, buf, sizeof buf, &len), HM_OK);
    cr_assert_arr_eq(buf, BYTES(0x90, 4, 0, 9, 1, 0x80), 6);
}

Test(mqtt_encode, pubrel_gets_its_required_flags_mqtt_3_6_1_1)
{
    uint8_t buf[8];
    size_t len;
    mqtt_packet p = {.type = MQTT_PUBREL, .u.packet_id = 2};
    cr_assert_eq(mqtt_encode(&p, buf, sizeof buf, &len), HM_OK);
    cr_assert_arr_eq(buf, BYTES(0x62, 2, 0, 2), 4);
}

Test(mqtt_encode, zero_packet_id_is_refused_mqtt_2_3_1_1)
{
    size_t len;
    mqtt_packet p = {.type = MQTT_PUBACK, .u.packet_id = 0};
    cr_assert_eq(mqtt_encoded_len(&p, &len), HM_EINVAL);
}

Test(mqtt_encode, too_small_a_buffer_is_reported)
{
    uint8_t buf[3];
    size_t len;
    mqtt_packet p = {.type = MQTT_PUBACK, .u.packet_id = 1};
    cr_assert_eq(mqtt_encode(&p, buf, sizeof buf, &len), HM_ETOOBIG);
}

Test(mqtt_encode, pingresp_and_disconnect_are_two_bytes)
{
    uint8_t buf[2];
    size_t len;
    mqtt_packet p = {.type = MQTT_PINGRESP};
    cr_assert_eq(mqtt_encode(&p, buf, sizeof buf, &len), HM_OK);
    cr_assert_arr_eq(buf, BYTES(0xD0, 0), 2);
    p.type = MQTT_DISCONNECT;
    cr_assert_eq(mqtt_encode(&p, buf, sizeof buf, &len), HM_OK);
    cr_assert_arr_eq(buf, BYTES(0xE0, 0), 2);
}

Test(mqtt_suback, zero_packet_id_is_malformed_mqtt_2_3_1_7)
{
    /* Found by fuzz_mqtt_codec: it decoded but could not be re-encoded. */
    mqtt_packet p;
    cr_assert_eq(DECODE(&p, NULL, 0x90, 3, 0, 0, 1), HM_EPROTO);
}
