/* tests/apps/mqtt/test_framer.c: the incremental framer, fed the way TCP
 * delivers bytes: split anywhere, several packets per read. */
#include "apps/mqtt/framer.h"

#include <criterion/criterion.h>
#include <string.h>

/* PINGREQ, a QoS 0 PUBLISH "t" "hi", and a PUBACK id 7. */
static const uint8_t stream[] = {0xC0, 0,   0x30, 5, 0, 1, 't',
                                 'h',  'i', 0x40, 2, 0, 7};
static const size_t sizes[] = {2, 7, 4};

Test(mqtt_framer, many_packets_in_one_push_come_out_one_by_one)
{
    mqtt_framer *f = mqtt_framer_create(NULL);
    mqtt_bytes pkt;
    mqtt_framer_push(f, stream, sizeof stream);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(mqtt_framer_next(f, &pkt, NULL), HM_OK);
        cr_assert_eq(pkt.len, sizes[i]);
    }
    cr_assert_eq(mqtt_framer_next(f, &pkt, NULL), HM_EAGAIN);
    cr_assert_eq(mqtt_framer_pending(f), 0);
    mqtt_framer_destroy(f);
}

Test(mqtt_framer, a_stream_split_at_every_byte_yields_the_same_packets)
{
    for (size_t cut = 1; cut < sizeof stream; cut++) {
        mqtt_framer *f = mqtt_framer_create(NULL);
        mqtt_bytes pkt;
        size_t seen = 0;
        mqtt_framer_push(f, stream, cut);
        while (mqtt_framer_next(f, &pkt, NULL) == HM_OK)
            cr_assert_eq(pkt.len, sizes[seen++]);
        mqtt_framer_push(f, stream + cut, sizeof stream - cut);
        while (mqtt_framer_next(f, &pkt, NULL) == HM_OK)
            cr_assert_eq(pkt.len, sizes[seen++]);
        cr_assert_eq(seen, 3, "cut at %zu", cut);
        mqtt_framer_destroy(f);
    }
}

Test(mqtt_framer, byte_by_byte_feeding_yields_decodable_packets)
{
    mqtt_framer *f = mqtt_framer_create(NULL);
    mqtt_bytes pkt;
    mqtt_packet p;
    size_t seen = 0;
    for (size_t i = 0; i < sizeof stream; i++) {
        mqtt_framer_push(f, stream + i, 1);
        while (mqtt_framer_next(f, &pkt, NULL) == HM_OK) {
            cr_assert_eq(mqtt_decode(pkt.ptr, pkt.len, NULL, &p, NULL), HM_OK);
            seen++;
        }
    }
    cr_assert_eq(seen, 3);
    cr_assert_eq(p.type, MQTT_PUBACK);
    mqtt_framer_destroy(f);
}

Test(mqtt_framer, oversize_packet_is_refused_from_its_header_alone)
{
    mqtt_limits lim = {.max_packet_len = 16};
    mqtt_framer *f = mqtt_framer_create(&lim);
    mqtt_bytes pkt;
    mqtt_fault why;
    mqtt_framer_push(f, (const uint8_t[]){0x30, 0x80, 0x01}, 3);
    cr_assert_eq(mqtt_framer_next(f, &pkt, &why), HM_ETOOBIG);
    cr_assert_eq(why.kind, MQTT_FAULT_TOO_BIG);
    mqtt_framer_destroy(f);
}

Test(mqtt_framer, malformed_length_error_is_sticky)
{
    mqtt_framer *f = mqtt_framer_create(NULL);
    mqtt_bytes pkt;
    mqtt_framer_push(f, (const uint8_t[]){0x30, 0x80, 0x80, 0x80, 0x80}, 5);
    cr_assert_eq(mqtt_framer_next(f, &pkt, NULL), HM_EPROTO);
    mqtt_framer_push(f, (const uint8_t[]){0xC0, 0}, 2);
    cr_assert_eq(mqtt_framer_next(f, &pkt, NULL), HM_EPROTO);
    mqtt_framer_destroy(f);
}

Test(mqtt_framer, a_packet_at_exactly_the_limit_is_accepted)
{
    mqtt_limits lim = {.max_packet_len = 4};
    mqtt_framer *f = mqtt_framer_create(&lim);
    mqtt_bytes pkt;
    mqtt_framer_push(f, (const uint8_t[]){0x40, 2, 0, 1}, 4);
    cr_assert_eq(mqtt_framer_next(f, &pkt, NULL), HM_OK);
    mqtt_framer_destroy(f);
}
