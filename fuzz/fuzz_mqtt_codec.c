/* fuzz/fuzz_mqtt_codec.c: libFuzzer target for the MQTT framer, decoder and
 * encoder.
 *
 * The input is a byte stream as a client would send it. The first byte
 * picks a read size, so the framer sees the stream split at varied points;
 * every packet it delimits is decoded, and every packet that decodes is
 * encoded again and decoded again, which must succeed and give the same
 * bytes (decode . encode is the identity on valid packets). Sanitizers
 * catch overreads; the asserts catch codec disagreements. */
#include "apps/mqtt/codec.h"
#include "apps/mqtt/framer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The length of the fixed header at `p` (a framed packet). */
static size_t header_len(const uint8_t *p)
{
    size_t i = 1;
    while (p[i] & 0x80)
        i++;
    return i + 1;
}

static void check_roundtrip(const mqtt_bytes *pkt, const mqtt_packet *p)
{
    size_t len, in_hdr = header_len(pkt->ptr), out_hdr;
    uint8_t *buf;
    mqtt_packet again;

    if (mqtt_encoded_len(p, &len) != HM_OK)
        abort(); /* whatever decodes must be encodable */
    buf = malloc(len);
    if (mqtt_encode(p, buf, len, &len) != HM_OK)
        abort();
    if (mqtt_decode(buf, len, NULL, &again, NULL) != HM_OK)
        abort();
    /* Same first byte and body; only a non-minimal remaining length on
     * input may differ, since the encoder writes the minimal form. */
    out_hdr = header_len(buf);
    if (again.type != p->type || buf[0] != pkt->ptr[0] ||
        len - out_hdr != pkt->len - in_hdr ||
        memcmp(buf + out_hdr, pkt->ptr + in_hdr, len - out_hdr) != 0)
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqtt_limits lim = {.max_packet_len = 1 << 16};
    mqtt_framer *f;
    size_t chunk;

    if (size < 1)
        return 0;
    chunk = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    f = mqtt_framer_create(&lim);
    for (size_t off = 0; off < size; off += chunk) {
        mqtt_bytes pkt;
        mqtt_packet p;
        hm_err err;
        size_t n = size - off < chunk ? size - off : chunk;
        mqtt_framer_push(f, data + off, n);
        while ((err = mqtt_framer_next(f, &pkt, NULL)) == HM_OK)
            if (mqtt_decode(pkt.ptr, pkt.len, &lim, &p, NULL) == HM_OK)
                check_roundtrip(&pkt, &p);
        if (err != HM_EAGAIN)
            break;
    }
    mqtt_framer_destroy(f);
    return 0;
}
