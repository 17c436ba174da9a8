/* tests/apps/mqtt/test_clients.c: byte streams captured from real
 * clients (mosquitto_pub and mosquitto_sub 2.0.11, against a scripted
 * peer that answered each packet), fed through the framer and decoder as a
 * connection would be. They pin down interoperability: whatever these
 * clients send must frame and decode, field by field. */
#include "apps/mqtt/framer.h"

#include <criterion/criterion.h>
#include <string.h>

/* mosquitto_pub -q 2 -r -t a/b -m hello -i pubclient -u user -P pass
 *   --will-topic w/t --will-payload bye --will-qos 1 --will-retain
 * (CONNECT, PUBLISH, PUBREL, DISCONNECT) */
static const uint8_t PUB_QOS2[] = {
    0x10, 0x2b, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0xee, 0x00,
    0x3c, 0x00, 0x09, 0x70, 0x75, 0x62, 0x63, 0x6c, 0x69, 0x65, 0x6e,
    0x74, 0x00, 0x03, 0x77, 0x2f, 0x74, 0x00, 0x03, 0x62, 0x79, 0x65,
    0x00, 0x04, 0x75, 0x73, 0x65, 0x72, 0x00, 0x04, 0x70, 0x61, 0x73,
    0x73, 0x35, 0x0c, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x00, 0x01, 0x68,
    0x65, 0x6c, 0x6c, 0x6f, 0x62, 0x02, 0x00, 0x01, 0xe0, 0x00};

/* mosquitto_sub -q 1 -t a/# -t +/x -i subclient -k 5
 * (CONNECT, SUBSCRIBE with two filters, DISCONNECT) */
static const uint8_t SUB[] = {
    0x10, 0x15, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00,
    0x05, 0x00, 0x09, 0x73, 0x75, 0x62, 0x63, 0x6c, 0x69, 0x65, 0x6e,
    0x74, 0x82, 0x0e, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2f, 0x23, 0x01,
    0x00, 0x03, 0x2b, 0x2f, 0x78, 0x01, 0xe0, 0x00};

/* mosquitto_pub -V mqttv31 -q 1 -t t -m x -i v31 (MQTT 3.1) */
static const uint8_t PUB_V31[] = {
    0x10, 0x11, 0x00, 0x06, 0x4d, 0x51, 0x49, 0x73, 0x64, 0x70,
    0x03, 0x02, 0x00, 0x3c, 0x00, 0x03, 0x76, 0x33, 0x31, 0x32,
    0x06, 0x00, 0x01, 0x74, 0x00, 0x01, 0x78, 0xe0, 0x00};

static size_t decode_all(const uint8_t *bytes, size_t len, size_t chunk,
                         mqtt_packet *out, size_t max)
{
    mqtt_framer *f = mqtt_framer_create(NULL);
    static uint8_t copies[8][256]; /* views must outlive the framer */
    size_t n = 0;
    for (size_t off = 0; off < len; off += chunk) {
        mqtt_bytes pkt;
        mqtt_framer_push(f, bytes + off, len - off < chunk ? len - off : chunk);
        while (mqtt_framer_next(f, &pkt, NULL) == HM_OK) {
            cr_assert_lt(n, max);
            cr_assert_leq(pkt.len, sizeof copies[n]);
            memcpy(copies[n], pkt.ptr, pkt.len);
            cr_assert_eq(mqtt_decode(copies[n], pkt.len, NULL, &out[n], NULL),
                         HM_OK, "packet %zu", n);
            n++;
        }
    }
    cr_assert_eq(mqtt_framer_pending(f), 0);
    mqtt_framer_destroy(f);
    return n;
}

static bool eq(mqtt_bytes b, const char *s)
{
    return b.len == strlen(s) && memcmp(b.ptr, s, b.len) == 0;
}

Test(mqtt_clients, mosquitto_pub_qos2_with_will_and_login_decodes)
{
    mqtt_packet p[8];
    for (size_t chunk = 1; chunk <= sizeof PUB_QOS2; chunk *= 2) {
        size_t n = decode_all(PUB_QOS2, sizeof PUB_QOS2, chunk, p, 8);
        cr_assert_eq(n, 4);
        cr_assert_eq(p[0].type, MQTT_CONNECT);
        cr_assert(eq(p[0].u.connect.client_id, "pubclient"));
        cr_assert(eq(p[0].u.connect.will_topic, "w/t"));
        cr_assert(eq(p[0].u.connect.will_payload, "bye"));
        cr_assert_eq(p[0].u.connect.will_qos, 1);
        cr_assert(p[0].u.connect.will_retain);
        cr_assert(eq(p[0].u.connect.username, "user"));
        cr_assert(eq(p[0].u.connect.password, "pass"));
        cr_assert_eq(p[1].type, MQTT_PUBLISH);
        cr_assert_eq(p[1].u.publish.qos, 2);
        cr_assert(p[1].u.publish.retain);
        cr_assert(eq(p[1].u.publish.topic, "a/b"));
        cr_assert(eq(p[1].u.publish.payload, "hello"));
        cr_assert_eq(p[2].type, MQTT_PUBREL);
        cr_assert_eq(p[2].u.packet_id, p[1].u.publish.packet_id);
        cr_assert_eq(p[3].type, MQTT_DISCONNECT);
    }
}

Test(mqtt_clients, mosquitto_sub_with_two_filters_decodes)
{
    mqtt_packet p[8];
    mqtt_sub_iter it;
    mqtt_sub_req r;
    size_t n = decode_all(SUB, sizeof SUB, 3, p, 8);
    cr_assert_eq(n, 3);
    cr_assert_eq(p[0].u.connect.keepalive_s, 5);
    cr_assert_eq(p[1].type, MQTT_SUBSCRIBE);
    cr_assert_eq(p[1].u.subscribe.count, 2);
    mqtt_sub_iter_init(&it, MQTT_SUBSCRIBE, &p[1].u.subscribe);
    cr_assert(mqtt_sub_iter_next(&it, &r));
    cr_assert(eq(r.filter, "a/#"));
    cr_assert_eq(r.qos, 1);
    cr_assert(mqtt_sub_iter_next(&it, &r));
    cr_assert(eq(r.filter, "+/x"));
    cr_assert_eq(p[2].type, MQTT_DISCONNECT);
}

Test(mqtt_clients, mosquitto_pub_mqtt_3_1_decodes_as_level_3)
{
    mqtt_packet p[8];
    size_t n = decode_all(PUB_V31, sizeof PUB_V31, 7, p, 8);
    cr_assert_eq(n, 3);
    cr_assert_eq(p[0].u.connect.protocol_level, 3);
    cr_assert(eq(p[0].u.connect.client_id, "v31"));
    cr_assert_eq(p[1].u.publish.qos, 1);
}
