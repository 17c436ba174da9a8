/* tests/apps/mqtt/test_ws.c: the WebSocket handshake (RFC 6455 section 4)
 * and frame decoder/encoder (section 5), as MQTT section 6 uses them. */
#include "apps/mqtt/ws.h"

#include <criterion/criterion.h>
#include <string.h>

#define REQ_HEAD                                                               \
    "GET /mqtt HTTP/1.1\r\n"                                                   \
    "Host: localhost:8080\r\n"                                                 \
    "Upgrade: websocket\r\n"                                                   \
    "Connection: keep-alive, Upgrade\r\n"                                      \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                          \
    "Sec-WebSocket-Version: 13\r\n"

static mqtt_ws_handshake hs;

static hm_err handshake(const char *req)
{
    return mqtt_ws_handshake_parse((const uint8_t *)req, strlen(req), &hs);
}

Test(mqtt_ws_handshake, accept_key_matches_the_rfc_6455_example)
{
    char out[29];
    mqtt_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(mqtt_ws_handshake, valid_request_gets_101_with_mqtt_mqtt_6_0_0_4)
{
    cr_assert_eq(handshake(REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\n\r\n"),
                 HM_OK);
    cr_assert(hs.accepted);
    cr_assert(strstr(hs.response, "HTTP/1.1 101 Switching Protocols\r\n"));
    cr_assert(strstr(hs.response,
                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    cr_assert(strstr(hs.response, "Sec-WebSocket-Protocol: mqtt\r\n"));
    cr_assert_eq(hs.response_len, strlen(hs.response));
}

Test(mqtt_ws_handshake, mqtt_is_picked_from_a_list_of_subprotocols)
{
    cr_assert_eq(handshake(REQ_HEAD "Sec-WebSocket-Protocol: wamp, MQTT\r\n"
                                    "\r\n"),
                 HM_OK);
    cr_assert(hs.accepted);
}

Test(mqtt_ws_handshake, no_mqtt_subprotocol_is_refused_mqtt_6_0_0_3)
{
    cr_assert_eq(handshake(REQ_HEAD "Sec-WebSocket-Protocol: chat\r\n\r\n"),
                 HM_OK);
    cr_assert_not(hs.accepted);
    cr_assert(strstr(hs.response, "HTTP/1.1 400 Bad Request\r\n"));
    cr_assert_eq(handshake(REQ_HEAD "\r\n"), HM_OK);
    cr_assert_not(hs.accepted);
}

Test(mqtt_ws_handshake, mqtt_3_1_subprotocol_is_echoed)
{
    cr_assert_eq(handshake(REQ_HEAD "Sec-WebSocket-Protocol: mqttv3.1\r\n"
                                    "\r\n"),
                 HM_OK);
    cr_assert(hs.accepted);
    cr_assert(strstr(hs.response, "Sec-WebSocket-Protocol: mqttv3.1\r\n"));
}

Test(mqtt_ws_handshake, wrong_version_gets_426_naming_version_13)
{
    cr_assert_eq(handshake("GET / HTTP/1.1\r\nHost: x\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 8\r\n"
                           "Sec-WebSocket-Protocol: mqtt\r\n\r\n"),
                 HM_OK);
    cr_assert_not(hs.accepted);
    cr_assert(strstr(hs.response, "426"));
    cr_assert(strstr(hs.response, "Sec-WebSocket-Version: 13\r\n"));
}

Test(mqtt_ws_handshake, post_gets_405)
{
    cr_assert_eq(handshake("POST / HTTP/1.1\r\nHost: x\r\n\r\n"), HM_OK);
    cr_assert_not(hs.accepted);
    cr_assert(strstr(hs.response, "405"));
}

Test(mqtt_ws_handshake, missing_upgrade_or_bad_key_gets_400)
{
    cr_assert_eq(handshake("GET / HTTP/1.1\r\nHost: x\r\n"
                           "Connection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: mqtt\r\n\r\n"),
                 HM_OK);
    cr_assert_not(hs.accepted);
    cr_assert_eq(handshake("GET / HTTP/1.1\r\nHost: x\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: short\r\n"
                           "Sec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: mqtt\r\n\r\n"),
                 HM_OK);
    cr_assert_not(hs.accepted);
}

Test(mqtt_ws_handshake, header_names_are_case_insensitive)
{
    cr_assert_eq(handshake("GET / HTTP/1.1\r\nhost: x\r\n"
                           "UPGRADE: WebSocket\r\nconnection: upgrade\r\n"
                           "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "sec-websocket-version:13\r\n"
                           "sec-websocket-protocol: mqtt\r\n\r\n"),
                 HM_OK);
    cr_assert(hs.accepted);
}

Test(mqtt_ws_handshake, incomplete_request_asks_for_more)
{
    cr_assert_eq(handshake(REQ_HEAD), HM_EAGAIN);
}

Test(mqtt_ws_handshake, endless_request_is_too_big)
{
    static char big[MQTT_WS_MAX_REQUEST_LEN + 10];
    memset(big, 'a', sizeof big);
    cr_assert_eq(mqtt_ws_handshake_parse((const uint8_t *)big, sizeof big, &hs),
                 HM_ETOOBIG);
}

Test(mqtt_ws_handshake, bytes_after_the_request_are_left_for_frames)
{
    const char *req = REQ_HEAD "Sec-WebSocket-Protocol: mqtt\r\n\r\n\x82";
    cr_assert_eq(handshake(req), HM_OK);
    cr_assert_eq(hs.request_len, strlen(req) - 1);
}

/* --------------------------------------------------------------- frames */

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A masked client frame. */
static size_t client_frame(uint8_t *buf, size_t cap, mqtt_ws_opcode op,
                           bool fin, const void *payload, size_t len)
{
    mqtt_ws_frame f = {
        .opcode = op, .fin = fin, .masked = true, .payload = {payload, len}};
    size_t n;
    memcpy(f.mask_key, KEY, 4);
    cr_assert_eq(mqtt_ws_encode(&f, buf, cap, &n), HM_OK);
    return n;
}

Test(mqtt_ws_frames, masked_binary_frame_yields_unmasked_data)
{
    uint8_t buf[64];
    size_t n =
        client_frame(buf, sizeof buf, MQTT_WS_OP_BINARY, true, "\xC0\x00", 2);
    mqtt_ws_decoder *d = mqtt_ws_decoder_create(NULL);
    mqtt_ws_event ev;
    mqtt_ws_decoder_push(d, buf, n);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_OK);
    cr_assert_eq(ev.kind, MQTT_WS_EV_DATA);
    cr_assert_eq(ev.payload.len, 2);
    cr_assert_eq(ev.payload.ptr[0], 0xC0);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_EAGAIN);
    mqtt_ws_decoder_destroy(d);
}

Test(mqtt_ws_frames, frame_split_at_every_byte_gives_the_same_payload)
{
    uint8_t buf[400], payload[300], got[300];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    size_t n = client_frame(buf, sizeof buf, MQTT_WS_OP_BINARY, true, payload,
                            sizeof payload);
    for (size_t cut = 1; cut < n; cut += 13) {
        mqtt_ws_decoder *d = mqtt_ws_decoder_create(NULL);
        mqtt_ws_event ev;
        size_t have = 0;
        mqtt_ws_decoder_push(d, buf, cut);
        while (mqtt_ws_decoder_next(d, &ev, NULL) == HM_OK) {
            memcpy(got + have, ev.payload.ptr, ev.payload.len);
            have += ev.payload.len;
        }
        mqtt_ws_decoder_push(d, buf + cut, n - cut);
        while (mqtt_ws_decoder_next(d, &ev, NULL) == HM_OK) {
            memcpy(got + have, ev.payload.ptr, ev.payload.len);
            have += ev.payload.len;
        }
        cr_assert_eq(have, sizeof payload);
        cr_assert_arr_eq(got, payload, sizeof payload, "cut %zu", cut);
        mqtt_ws_decoder_destroy(d);
    }
}

Test(mqtt_ws_frames, fragments_with_an_interleaved_ping_are_accepted)
{
    uint8_t buf[64];
    size_t n = 0;
    mqtt_ws_decoder *d = mqtt_ws_decoder_create(NULL);
    mqtt_ws_event ev;
    n += client_frame(buf + n, sizeof buf - n, MQTT_WS_OP_BINARY, false, "ab",
                      2);
    n += client_frame(buf + n, sizeof buf - n, MQTT_WS_OP_PING, true, "p", 1);
    n += client_frame(buf + n, sizeof buf - n, MQTT_WS_OP_CONTINUATION, true,
                      "cd", 2);
    mqtt_ws_decoder_push(d, buf, n);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_OK);
    cr_assert_eq(ev.kind, MQTT_WS_EV_DATA);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_OK);
    cr_assert_eq(ev.kind, MQTT_WS_EV_PING);
    cr_assert_eq(ev.payload.ptr[0], 'p');
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_OK);
    cr_assert_eq(ev.kind, MQTT_WS_EV_DATA);
    cr_assert_eq(memcmp(ev.payload.ptr, "cd", 2), 0);
    mqtt_ws_decoder_destroy(d);
}

static hm_err decode_one(const uint8_t *frame, size_t len, mqtt_ws_fault *f)
{
    mqtt_ws_decoder *d = mqtt_ws_decoder_create(NULL);
    mqtt_ws_event ev;
    hm_err err;
    mqtt_ws_decoder_push(d, frame, len);
    while ((err = mqtt_ws_decoder_next(d, &ev, f)) == HM_OK)
        ;
    mqtt_ws_decoder_destroy(d);
    return err;
}

Test(mqtt_ws_frames, unmasked_client_frame_is_a_protocol_error)
{
    mqtt_ws_fault f;
    cr_assert_eq(decode_one((const uint8_t[]){0x82, 0x01, 0xC0}, 3, &f),
                 HM_EPROTO);
    cr_assert_eq(f.close_code, 1002);
}

Test(mqtt_ws_frames, text_frame_closes_with_1003_mqtt_6_0_0_1)
{
    uint8_t buf[16];
    mqtt_ws_fault f;
    size_t n = client_frame(buf, sizeof buf, MQTT_WS_OP_TEXT, true, "x", 1);
    cr_assert_eq(decode_one(buf, n, &f), HM_EPROTO);
    cr_assert_eq(f.close_code, 1003);
}

Test(mqtt_ws_frames, continuation_without_a_message_is_an_error)
{
    uint8_t buf[16];
    size_t n =
        client_frame(buf, sizeof buf, MQTT_WS_OP_CONTINUATION, true, "x", 1);
    cr_assert_eq(decode_one(buf, n, NULL), HM_EPROTO);
}

Test(mqtt_ws_frames, new_binary_inside_a_fragmented_message_is_an_error)
{
    uint8_t buf[32];
    size_t n = client_frame(buf, sizeof buf, MQTT_WS_OP_BINARY, false, "x", 1);
    n += client_frame(buf + n, sizeof buf - n, MQTT_WS_OP_BINARY, true, "y", 1);
    cr_assert_eq(decode_one(buf, n, NULL), HM_EPROTO);
}

Test(mqtt_ws_frames, fragmented_or_long_control_frames_are_errors)
{
    uint8_t buf[16];
    /* A PING without FIN, written by hand (the encoder refuses it). */
    const uint8_t ping[] = {0x09, 0x80, 1, 2, 3, 4};
    cr_assert_eq(decode_one(ping, sizeof ping, NULL), HM_EPROTO);
    /* A PING announcing 126 bytes. */
    const uint8_t big[] = {0x89, 0xFE, 0, 126, 1, 2, 3, 4};
    cr_assert_eq(decode_one(big, sizeof big, NULL), HM_EPROTO);
    (void)buf;
}

Test(mqtt_ws_frames, reserved_bits_and_opcodes_are_errors)
{
    cr_assert_eq(decode_one((const uint8_t[]){0xC2, 0x80, 1, 2, 3, 4}, 6, NULL),
                 HM_EPROTO);
    cr_assert_eq(decode_one((const uint8_t[]){0x83, 0x80, 1, 2, 3, 4}, 6, NULL),
                 HM_EPROTO);
}

Test(mqtt_ws_frames, close_frame_reports_its_code_then_decoder_is_closed)
{
    uint8_t buf[16];
    mqtt_ws_decoder *d = mqtt_ws_decoder_create(NULL);
    mqtt_ws_event ev;
    size_t n =
        client_frame(buf, sizeof buf, MQTT_WS_OP_CLOSE, true, "\x03\xE8ok", 4);
    mqtt_ws_decoder_push(d, buf, n);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_OK);
    cr_assert_eq(ev.kind, MQTT_WS_EV_CLOSE);
    cr_assert_eq(ev.close_code, 1000);
    cr_assert_eq(ev.payload.len, 2);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, NULL), HM_ECLOSED);
    mqtt_ws_decoder_destroy(d);
}

Test(mqtt_ws_frames, close_with_an_invalid_code_is_an_error)
{
    uint8_t buf[16];
    size_t n = client_frame(buf, sizeof buf, MQTT_WS_OP_CLOSE, true, "\x03\xED",
                            2); /* 1005 must not be sent */
    cr_assert_eq(decode_one(buf, n, NULL), HM_EPROTO);
}

Test(mqtt_ws_frames, frame_over_the_limit_closes_with_1009)
{
    uint8_t buf[64];
    mqtt_ws_limits lim = {.max_frame_len = 8};
    mqtt_ws_decoder *d = mqtt_ws_decoder_create(&lim);
    mqtt_ws_event ev;
    mqtt_ws_fault f;
    size_t n = client_frame(buf, sizeof buf, MQTT_WS_OP_BINARY, true,
                            "0123456789", 10);
    mqtt_ws_decoder_push(d, buf, n);
    cr_assert_eq(mqtt_ws_decoder_next(d, &ev, &f), HM_EPROTO);
    cr_assert_eq(f.close_code, 1009);
    mqtt_ws_decoder_destroy(d);
}

Test(mqtt_ws_frames, server_frames_are_unmasked_with_minimal_lengths)
{
    static uint8_t payload[70000], buf[70100];
    uint8_t hdr[MQTT_WS_MAX_HEADER_LEN];
    mqtt_ws_frame f = {
        .opcode = MQTT_WS_OP_BINARY, .fin = true, .payload = {payload, 100}};
    size_t n;
    cr_assert_eq(mqtt_ws_frame_header(&f, hdr), 2);
    cr_assert_eq(hdr[0], 0x82);
    cr_assert_eq(hdr[1], 100);
    f.payload.len = 300;
    cr_assert_eq(mqtt_ws_frame_header(&f, hdr), 4);
    cr_assert_eq(hdr[1], 126);
    f.payload.len = sizeof payload;
    cr_assert_eq(mqtt_ws_encode(&f, buf, sizeof buf, &n), HM_OK);
    cr_assert_eq(n, 10 + sizeof payload);
    cr_assert_eq(buf[1], 127);
}

Test(mqtt_ws_frames, close_encoder_writes_code_big_endian)
{
    uint8_t buf[4];
    cr_assert_eq(mqtt_ws_encode_close(1002, buf), 4);
    cr_assert_arr_eq(buf, ((const uint8_t[]){0x88, 2, 0x03, 0xEA}), 4);
}
