/* bench/bench_mqtt_wire.h: the MQTT 3.1.1 client side of the load
 * generator, written by hand: a growable byte buffer, the encoders for the
 * packets a client sends, and a decoder for the packets a broker sends.
 *
 * The key decision: none of this shares code with apps/mqtt. The generator
 * is the referee between two brokers, so a bug in the broker's codec must
 * not be able to hide itself by being on both ends of the wire. Only the
 * subset a benchmark client needs is here: CONNECT (clean session, no will,
 * no credentials), SUBSCRIBE with one filter, PUBLISH at QoS 0-2, the four
 * acknowledgements, PINGREQ and DISCONNECT. Decoding is a pure function
 * over bytes; a malformed packet is reported, never asserted on. */
#ifndef HM_BENCH_MQTT_WIRE_H
#define HM_BENCH_MQTT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Packet types, as the high nibble of the first byte ([MQTT-2.2.1]). */
enum {
    WIRE_CONNECT = 1,
    WIRE_CONNACK = 2,
    WIRE_PUBLISH = 3,
    WIRE_PUBACK = 4,
    WIRE_PUBREC = 5,
    WIRE_PUBREL = 6,
    WIRE_PUBCOMP = 7,
    WIRE_SUBSCRIBE = 8,
    WIRE_SUBACK = 9,
    WIRE_PINGREQ = 12,
    WIRE_PINGRESP = 13,
    WIRE_DISCONNECT = 14,
};

/* The largest packet the generator accepts from a broker (its own payloads
 * are small; anything bigger is a broker fault). */
#define WIRE_MAX_PACKET (64u * 1024u)

/* A growable byte buffer: bytes [off, len) are pending. Owned by its
 * connection; `data` is NULL until the first append. */
typedef struct wire_buf {
    uint8_t *data;
    size_t off, len, cap;
} wire_buf;

/* Returns a pointer to `n` writable bytes at the end of `b` (to be
 * committed by adding to b->len). Aborts on out of memory. */
static inline uint8_t *wire_reserve(wire_buf *b, size_t n)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;

        if (b->off > 0) { /* slide the pending bytes down first */
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        while (b->len + n > cap)
            cap *= 2;
        if (cap != b->cap) {
            b->data = realloc(b->data, cap);
            if (b->data == NULL)
                abort();
            b->cap = cap;
        }
    }
    return b->data + b->len;
}

static inline void wire_append(wire_buf *b, const void *p, size_t n)
{
    memcpy(wire_reserve(b, n), p, n);
    b->len += n;
}

static inline size_t wire_pending(const wire_buf *b)
{
    return b->len - b->off;
}

static inline void wire_buf_free(wire_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ encoding */

/* Writes the fixed header (first byte and remaining length, [MQTT-2.2.3])
 * at `p`; returns its length (2 to 5 bytes). */
static inline size_t wire_put_header(uint8_t *p, uint8_t first,
                                     uint32_t remaining)
{
    size_t n = 0;

    p[n++] = first;
    do {
        uint8_t digit = remaining % 128;

        remaining /= 128;
        p[n++] = remaining > 0 ? (uint8_t)(digit | 0x80) : digit;
    } while (remaining > 0);
    return n;
}

static inline size_t wire_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static inline size_t wire_put_str(uint8_t *p, const char *s, size_t len)
{
    wire_put_u16(p, (uint16_t)len);
    memcpy(p + 2, s, len);
    return 2 + len;
}

/* CONNECT with protocol "MQTT" level 4, no will, no credentials, and a
 * clean session unless `persistent`. `client_id` is at most 64 bytes. */
static inline void wire_connect_session(wire_buf *b, const char *client_id,
                                        uint16_t keepalive_s, bool persistent)
{
    size_t idlen = strlen(client_id);
    uint32_t rem = 10 + 2 + (uint32_t)idlen;
    uint8_t *p = wire_reserve(b, 5 + rem);
    size_t n = wire_put_header(p, WIRE_CONNECT << 4, rem);

    n += wire_put_str(p + n, "MQTT", 4);
    p[n++] = 4;    /* protocol level 3.1.1 */
    p[n++] = persistent ? 0x00 : 0x02; /* clean session */
    n += wire_put_u16(p + n, keepalive_s);
    n += wire_put_str(p + n, client_id, idlen);
    b->len += n;
}

/* CONNECT with a clean session. */
static inline void wire_connect(wire_buf *b, const char *client_id,
                                uint16_t keepalive_s)
{
    wire_connect_session(b, client_id, keepalive_s, false);
}

/* SUBSCRIBE to one filter at `qos` ([MQTT-3.8.1-1]: flags 0010). */
static inline void wire_subscribe(wire_buf *b, uint16_t packet_id,
                                  const char *filter, uint8_t qos)
{
    size_t flen = strlen(filter);
    uint32_t rem = 2 + 2 + (uint32_t)flen + 1;
    uint8_t *p = wire_reserve(b, 5 + rem);
    size_t n = wire_put_header(p, (WIRE_SUBSCRIBE << 4) | 0x02, rem);

    n += wire_put_u16(p + n, packet_id);
    n += wire_put_str(p + n, filter, flen);
    p[n++] = qos;
    b->len += n;
}

/* PUBLISH `payload` to `topic` at `qos`; `packet_id` is ignored at QoS 0. */
static inline void wire_publish(wire_buf *b, const char *topic, uint8_t qos,
                                uint16_t packet_id, const void *payload,
                                size_t payload_len)
{
    size_t tlen = strlen(topic);
    uint32_t rem =
        2 + (uint32_t)tlen + (qos > 0 ? 2 : 0) + (uint32_t)payload_len;
    uint8_t *p = wire_reserve(b, 5 + rem);
    size_t n = wire_put_header(p, (uint8_t)((WIRE_PUBLISH << 4) | (qos << 1)),
                               rem);

    n += wire_put_str(p + n, topic, tlen);
    if (qos > 0)
        n += wire_put_u16(p + n, packet_id);
    memcpy(p + n, payload, payload_len);
    b->len += n + payload_len;
}

/* PUBACK, PUBREC, PUBREL (flags 0010, [MQTT-3.6.1-1]) or PUBCOMP. */
static inline void wire_ack(wire_buf *b, uint8_t type, uint16_t packet_id)
{
    uint8_t *p = wire_reserve(b, 4);

    p[0] = (uint8_t)((type << 4) | (type == WIRE_PUBREL ? 0x02 : 0));
    p[1] = 2;
    wire_put_u16(p + 2, packet_id);
    b->len += 4;
}

/* PINGREQ or DISCONNECT: a type and a zero remaining length. */
static inline void wire_empty(wire_buf *b, uint8_t type)
{
    uint8_t p[2] = {(uint8_t)(type << 4), 0};

    wire_append(b, p, 2);
}

/* ------------------------------------------------------------ decoding */

/* One packet from a broker, borrowed from the bytes it was decoded from. */
typedef struct wire_packet {
    uint8_t type, flags;
    uint16_t packet_id;    /* acks and QoS > 0 PUBLISH */
    uint8_t code;          /* CONNACK return code, SUBACK first code */
    const uint8_t *topic;  /* PUBLISH */
    size_t topic_len;
    const uint8_t *payload; /* PUBLISH */
    size_t payload_len;
} wire_packet;

/* The variable header and payload of a PUBLISH (`v[0..rem)`) into `out`,
 * whose flags are set; false if they do not fit. */
static inline bool wire_decode_publish(const uint8_t *v, uint32_t rem,
                                       wire_packet *out)
{
    uint8_t qos = (out->flags >> 1) & 3;
    size_t need;

    if (qos == 3 || rem < 2) /* [MQTT-3.3.1-4] */
        return false;
    out->topic_len = (size_t)(v[0] << 8 | v[1]);
    need = 2 + out->topic_len + (qos > 0 ? 2 : 0);
    if (need > rem)
        return false;
    out->topic = v + 2;
    if (qos > 0)
        out->packet_id =
            (uint16_t)(v[2 + out->topic_len] << 8 | v[3 + out->topic_len]);
    out->payload = v + need;
    out->payload_len = rem - need;
    return true;
}

/* Decodes one packet from `p[0..len)`. Returns its total length, 0 if more
 * bytes are needed, or -1 if the bytes are not a packet a broker may send
 * to this client. Pure: no I/O, no state. */
static inline long wire_decode(const uint8_t *p, size_t len, wire_packet *out)
{
    uint32_t rem = 0, mult = 1;
    size_t h = 1;
    const uint8_t *v;

    if (len < 2)
        return 0;
    for (;;) {
        if (h >= len)
            return 0;
        rem += (uint32_t)(p[h] & 0x7f) * mult;
        if ((p[h++] & 0x80) == 0)
            break;
        if ((mult *= 128) > 128u * 128u * 128u)
            return -1;
    }
    if (rem > WIRE_MAX_PACKET)
        return -1;
    if (len < h + rem)
        return 0;
    memset(out, 0, sizeof *out);
    out->type = p[0] >> 4;
    out->flags = p[0] & 0x0f;
    v = p + h;
    switch (out->type) {
    case WIRE_CONNACK:
        if (rem != 2)
            return -1;
        out->code = v[1];
        break;
    case WIRE_SUBACK:
        if (rem < 3)
            return -1;
        out->packet_id = (uint16_t)(v[0] << 8 | v[1]);
        out->code = v[2];
        break;
    case WIRE_PUBACK:
    case WIRE_PUBREC:
    case WIRE_PUBREL:
    case WIRE_PUBCOMP:
        if (rem != 2)
            return -1;
        out->packet_id = (uint16_t)(v[0] << 8 | v[1]);
        break;
    case WIRE_PINGRESP:
        if (rem != 0)
            return -1;
        break;
    case WIRE_PUBLISH:
        return wire_decode_publish(v, rem, out) ? (long)(h + rem) : -1;
    default:
        return -1;
    }
    return (long)(h + rem);
}

#endif
