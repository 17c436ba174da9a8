/* fuzz/fuzz_mqtt_ws.c: libFuzzer target for the WebSocket handshake and
 * frame decoder, chained into the MQTT framer and decoder the way the
 * broker's WebSocket listener chains them.
 *
 * Input: byte 0 picks a read size; the rest is what a client sends (an
 * upgrade request, then frames). If the handshake accepts, the bytes after
 * the request go through the frame decoder in reads of that size, and every
 * DATA event's bytes go into an MQTT framer whose packets are decoded.
 * Checked: no sanitizer report, responses fit their buffer, DATA never
 * yields more bytes than went in. */
#include "apps/mqtt/codec.h"
#include "apps/mqtt/framer.h"
#include "apps/mqtt/ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void drain_mqtt(mqtt_framer *mf)
{
    mqtt_bytes pkt;
    mqtt_packet p;
    while (mqtt_framer_next(mf, &pkt, NULL) == HM_OK)
        (void)mqtt_decode(pkt.ptr, pkt.len, NULL, &p, NULL);
}

static void run_frames(const uint8_t *data, size_t size, size_t chunk)
{
    mqtt_ws_limits lim = {.max_frame_len = 1 << 20};
    mqtt_limits mlim = {.max_packet_len = 1 << 16};
    mqtt_ws_decoder *d = mqtt_ws_decoder_create(&lim);
    mqtt_framer *mf = mqtt_framer_create(&mlim);
    size_t out_total = 0;

    for (size_t off = 0; off < size; off += chunk) {
        mqtt_ws_event ev;
        hm_err err;
        mqtt_ws_decoder_push(d, data + off,
                             size - off < chunk ? size - off : chunk);
        while ((err = mqtt_ws_decoder_next(d, &ev, NULL)) == HM_OK) {
            if (ev.kind != MQTT_WS_EV_DATA)
                continue;
            out_total += ev.payload.len;
            if (out_total > size)
                abort();
            mqtt_framer_push(mf, ev.payload.ptr, ev.payload.len);
            drain_mqtt(mf);
        }
        if (err != HM_EAGAIN)
            break;
    }
    mqtt_framer_destroy(mf);
    mqtt_ws_decoder_destroy(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqtt_ws_handshake hs;
    size_t chunk;

    if (size < 1)
        return 0;
    chunk = (size_t)data[0] % 31 + 1;
    data++;
    size--;
    if (mqtt_ws_handshake_parse(data, size, &hs) != HM_OK)
        return 0;
    if (hs.response_len >= sizeof hs.response ||
        strlen(hs.response) != hs.response_len || hs.request_len > size)
        abort();
    if (hs.accepted)
        run_frames(data + hs.request_len, size - hs.request_len, chunk);
    return 0;
}
