/* tests/bench/test_mqtt_wire.c: the load generator's own MQTT codec
 * (bench/bench_mqtt_wire.h). The generator is the referee between two
 * brokers, so its encoder and decoder are checked against the bytes the
 * standard prescribes, not against the broker's codec. */
#include "bench/bench_mqtt_wire.h"

#include <criterion/criterion.h>

static long decode_all(wire_buf *b, wire_packet *pk)
{
    return wire_decode(b->data + b->off, wire_pending(b), pk);
}

Test(mqtt_wire, publish_round_trips_topic_qos_packet_id_and_payload)
{
    wire_buf b = {0};
    wire_packet pk;
    const char payload[] = "0123456789";

    wire_publish(&b, "a/b", 1, 4242, payload, 10);
    cr_assert_eq(decode_all(&b, &pk), (long)wire_pending(&b));
    cr_assert_eq(pk.type, WIRE_PUBLISH);
    cr_assert_eq((pk.flags >> 1) & 3, 1);
    cr_assert_eq(pk.packet_id, 4242);
    cr_assert_eq(pk.topic_len, 3);
    cr_assert_arr_eq(pk.topic, "a/b", 3);
    cr_assert_eq(pk.payload_len, 10);
    cr_assert_arr_eq(pk.payload, payload, 10);
    wire_buf_free(&b);
}

Test(mqtt_wire, qos0_publish_has_no_packet_id_MQTT_2_3_1_5)
{
    wire_buf b = {0};
    wire_packet pk;

    wire_publish(&b, "t", 0, 7, "x", 1);
    /* 2-byte header, 2+1 topic, 1 payload: no packet identifier. */
    cr_assert_eq(wire_pending(&b), 6);
    cr_assert_eq(decode_all(&b, &pk), 6);
    cr_assert_eq(pk.payload_len, 1);
    wire_buf_free(&b);
}

Test(mqtt_wire, remaining_length_of_128_takes_two_bytes)
{
    uint8_t p[5];

    cr_assert_eq(wire_put_header(p, 0x30, 127), 2);
    cr_assert_eq(wire_put_header(p, 0x30, 128), 3);
    cr_assert_eq(p[1], 0x80);
    cr_assert_eq(p[2], 0x01);
    cr_assert_eq(wire_put_header(p, 0x30, 268435455), 5);
}

Test(mqtt_wire, decode_asks_for_more_bytes_on_every_partial_prefix)
{
    wire_buf b = {0};
    wire_packet pk;

    wire_publish(&b, "topic", 2, 1, "payload", 7);
    for (size_t n = 0; n < wire_pending(&b); n++)
        cr_assert_eq(wire_decode(b.data, n, &pk), 0, "prefix %zu", n);
    wire_buf_free(&b);
}

Test(mqtt_wire, decode_rejects_a_remaining_length_of_five_bytes)
{
    const uint8_t p[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01};
    wire_packet pk;

    cr_assert_eq(wire_decode(p, sizeof p, &pk), -1);
}

Test(mqtt_wire, decode_rejects_publish_with_qos_3_MQTT_3_3_1_4)
{
    const uint8_t p[] = {0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01};
    wire_packet pk;

    cr_assert_eq(wire_decode(p, sizeof p, &pk), -1);
}

Test(mqtt_wire, decode_rejects_a_packet_a_broker_never_sends)
{
    const uint8_t p[] = {0x10, 0x00}; /* CONNECT */
    wire_packet pk;

    cr_assert_eq(wire_decode(p, sizeof p, &pk), -1);
}

Test(mqtt_wire, connect_is_protocol_level_4_with_clean_session)
{
    wire_buf b = {0};
    const uint8_t want[] = {0x10, 12,  0,   4,   'M', 'Q', 'T',
                            'T',  4,   0x02, 0,  30,  0,   0};

    wire_connect(&b, "", 30);
    cr_assert_eq(wire_pending(&b), sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    wire_buf_free(&b);
}

Test(mqtt_wire, pubrel_has_flags_0010_MQTT_3_6_1_1)
{
    wire_buf b = {0};

    wire_ack(&b, WIRE_PUBREL, 0x0102);
    cr_assert_eq(b.data[0], 0x62);
    cr_assert_eq(b.data[2], 0x01);
    cr_assert_eq(b.data[3], 0x02);
    wire_buf_free(&b);
}

Test(mqtt_wire, subscribe_has_flags_0010_MQTT_3_8_1_1)
{
    wire_buf b = {0};

    wire_subscribe(&b, 1, "a/+", 2);
    cr_assert_eq(b.data[0], 0x82);
    cr_assert_eq(b.data[wire_pending(&b) - 1], 2); /* requested QoS */
    wire_buf_free(&b);
}

Test(mqtt_wire, buffer_keeps_pending_bytes_when_it_grows)
{
    wire_buf b = {0};
    uint8_t big[1000];

    memset(big, 7, sizeof big);
    wire_append(&b, "abc", 3);
    b.off = 1; /* one byte written out */
    wire_append(&b, big, sizeof big);
    cr_assert_eq(wire_pending(&b), 2 + sizeof big);
    cr_assert_arr_eq(b.data + b.off, "bc", 2);
    wire_buf_free(&b);
}
