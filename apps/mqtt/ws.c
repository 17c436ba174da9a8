/* apps/mqtt/ws.c: RFC 6455 handshake and frame codec for MQTT over
 * WebSocket.
 *
 * The handshake parser is deliberately narrow: it reads only the request
 * line and the handful of headers RFC 6455 4.2.1 names, and answers
 * anything it does not like with an HTTP error rather than guessing. The
 * frame decoder is a small state machine over a compacting buffer (like
 * framer.c): between frames it waits for a whole header; inside a data
 * frame it unmasks and hands out whatever payload bytes it has, carrying
 * the mask offset across reads. SHA-1 and base64 come from libcrypto
 * (docs/adr/0004). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, for builds without the Makefile flags */
#endif
#include "apps/mqtt/ws.h"
#include "apps/mqtt/inbuf_impl.h"

#include "runtime/alloc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ handshake */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void mqtt_ws_accept_key(const char *key, size_t len, char out[29])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    HM_ASSERT(ctx != NULL);
    EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    EVP_DigestUpdate(ctx, key, len);
    EVP_DigestUpdate(ctx, WS_GUID, sizeof WS_GUID - 1);
    EVP_DigestFinal_ex(ctx, digest, &digest_len);
    EVP_MD_CTX_free(ctx);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len);
}

typedef struct span {
    const char *ptr;
    size_t len;
} span;

static span trim(const char *p, size_t len)
{
    while (len > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return (span){p, len};
}

static bool span_ieq(span s, const char *lit)
{
    return s.len == strlen(lit) && strncasecmp(s.ptr, lit, s.len) == 0;
}

/* Whether the comma-separated list `v` holds `token` (case-insensitive). */
static bool list_has(span v, const char *token)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (span_ieq(trim(p, (size_t)(stop - p)), token))
            return true;
        p = stop + 1;
    }
    return false;
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 16 bytes in base64: 22 characters and "==" (RFC 6455 4.1). */
static bool key_is_valid(span k)
{
    if (k.len != 24 || k.ptr[22] != '=' || k.ptr[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64_char(k.ptr[i]))
            return false;
    return true;
}

/* What the request said, header by header. */
typedef struct request {
    bool host, upgrade, connection, version13, version_seen;
    const char *subprotocol; /* the one we select, or NULL */
    span key;
} request;

static void note_header(request *r, span name, span value)
{
    if (span_ieq(name, "Host")) {
        r->host = true;
    } else if (span_ieq(name, "Upgrade")) {
        r->upgrade |= list_has(value, "websocket");
    } else if (span_ieq(name, "Connection")) {
        r->connection |= list_has(value, "Upgrade");
    } else if (span_ieq(name, "Sec-WebSocket-Version")) {
        r->version_seen = true;
        r->version13 = span_ieq(value, "13");
    } else if (span_ieq(name, "Sec-WebSocket-Key")) {
        r->key = value;
    } else if (span_ieq(name, "Sec-WebSocket-Protocol")) {
        if (list_has(value, "mqtt"))
            r->subprotocol = "mqtt";
        else if (!r->subprotocol && list_has(value, "mqttv3.1"))
            r->subprotocol = "mqttv3.1";
    }
}

static void respond_error(mqtt_ws_handshake *out, int status,
                          const char *reason)
{
    const char *text = status == 405   ? "Method Not Allowed"
                       : status == 426 ? "Upgrade Required"
                                       : "Bad Request";
    int n = snprintf(out->response, sizeof out->response,
                     "HTTP/1.1 %d %s\r\n%sConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n",
                     status, text,
                     status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "");
    out->accepted = false;
    out->reason = reason;
    out->response_len = (size_t)n;
}

static void respond_ok(mqtt_ws_handshake *out, const request *r)
{
    char accept[29];
    int n;
    mqtt_ws_accept_key(r->key.ptr, r->key.len, accept);
    n = snprintf(out->response, sizeof out->response,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n"
                 "Sec-WebSocket-Protocol: %s\r\n\r\n",
                 accept, r->subprotocol);
    out->accepted = true;
    out->reason = NULL;
    out->response_len = (size_t)n;
}

/* Check the request line; NULL if fine, else why not. */
static const char *check_request_line(span line, int *status)
{
    const char *sp1 = memchr(line.ptr, ' ', line.len), *sp2;
    *status = 400;
    if (!sp1)
        return "malformed request line";
    sp2 = memchr(sp1 + 1, ' ', (size_t)(line.ptr + line.len - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1)
        return "malformed request line";
    if (!span_ieq((span){line.ptr, (size_t)(sp1 - line.ptr)}, "GET")) {
        *status = 405;
        return "method is not GET";
    }
    if (!span_ieq((span){sp2 + 1, (size_t)(line.ptr + line.len - sp2 - 1)},
                  "HTTP/1.1"))
        return "not HTTP/1.1";
    return NULL;
}

static const char *check_request(const request *r, int *status)
{
    *status = 400;
    if (!r->host)
        return "no Host header";
    if (!r->upgrade)
        return "no Upgrade: websocket";
    if (!r->connection)
        return "no Connection: Upgrade";
    if (!r->version_seen || !r->version13) {
        *status = 426;
        return "Sec-WebSocket-Version is not 13";
    }
    if (!key_is_valid(r->key))
        return "Sec-WebSocket-Key is not 16 base64 bytes";
    if (!r->subprotocol)
        return "subprotocol mqtt not offered [MQTT-6.0.0-3]";
    return NULL;
}

static const char *parse_headers(const char *p, const char *end, request *r)
{
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        const char *colon;
        if (!eol)
            eol = end;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p || p[0] == ' ' || p[0] == '\t')
            return "malformed header line";
        note_header(r, (span){p, (size_t)(colon - p)},
                    trim(colon + 1, (size_t)(eol - colon - 1)));
        p = eol + 2;
    }
    return NULL;
}

hm_err mqtt_ws_handshake_parse(const uint8_t *buf, size_t len,
                               mqtt_ws_handshake *out)
{
    size_t scan = len < MQTT_WS_MAX_REQUEST_LEN ? len : MQTT_WS_MAX_REQUEST_LEN;
    const char *text = (const char *)buf;
    const char *head_end = memmem(text, scan, "\r\n\r\n", 4);
    const char *line_end, *why;
    request r;
    int status;

    if (!head_end)
        return len >= MQTT_WS_MAX_REQUEST_LEN ? HM_ETOOBIG : HM_EAGAIN;
    memset(out, 0, sizeof *out);
    memset(&r, 0, sizeof r);
    out->request_len = (size_t)(head_end - text) + 4;
    line_end = memmem(text, (size_t)(head_end - text) + 2, "\r\n", 2);
    why = check_request_line((span){text, (size_t)(line_end - text)}, &status);
    if (!why)
        why = parse_headers(line_end + 2, head_end, &r);
    if (!why)
        why = check_request(&r, &status);
    if (why)
        respond_error(out, status, why);
    else
        respond_ok(out, &r);
    return HM_OK;
}

/* --------------------------------------------------------------- frames */

struct mqtt_ws_decoder {
    mqtt_ws_limits limits;
    mqtt_inbuf in;      /* inbuf_impl.h */
    bool in_data;       /* inside a data frame's payload */
    uint64_t remaining; /* payload bytes of that frame still to come */
    uint8_t mask[4];
    size_t mask_pos;
    bool data_fin;   /* that frame ends its message */
    bool in_message; /* a fragmented message awaits continuations */
    hm_err sticky;
    mqtt_ws_fault sticky_why;
};

typedef struct frame_header {
    bool fin;
    uint8_t opcode;
    uint64_t len;
    uint8_t mask[4];
    size_t header_len;
} frame_header;

mqtt_ws_decoder *mqtt_ws_decoder_create(const mqtt_ws_limits *limits)
{
    mqtt_ws_decoder *d = hm_calloc(1, sizeof *d);
    if (limits)
        d->limits = *limits;
    d->sticky = HM_OK;
    return d;
}

void mqtt_ws_decoder_destroy(mqtt_ws_decoder *d)
{
    if (!d)
        return;
    mqtt_inbuf_fini(&d->in);
    hm_free(d);
}

void mqtt_ws_decoder_push(mqtt_ws_decoder *d, const void *data, size_t len)
{
    if (d->sticky != HM_OK || len == 0)
        return;
    mqtt_inbuf_push(&d->in, data, len);
}

static hm_err ws_fail(mqtt_ws_decoder *d, uint16_t code, const char *reason,
                      mqtt_ws_fault *why)
{
    d->sticky = HM_EPROTO;
    d->sticky_why = (mqtt_ws_fault){code, reason};
    if (why)
        *why = d->sticky_why;
    return HM_EPROTO;
}

/* Read a frame header at the buffer's start: HM_EAGAIN until complete. */
static hm_err read_header(const mqtt_ws_decoder *d, frame_header *h,
                          uint8_t *b0_out, bool *masked_out)
{
    const uint8_t *p = d->in.buf + d->in.start;
    size_t avail = d->in.end - d->in.start, need = 2;
    uint8_t len7;

    if (avail < 2)
        return HM_EAGAIN;
    len7 = p[1] & 0x7F;
    need += len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    need += (p[1] & 0x80) ? 4 : 0;
    if (avail < need)
        return HM_EAGAIN;
    *b0_out = p[0];
    *masked_out = p[1] & 0x80;
    h->fin = p[0] & 0x80;
    h->opcode = p[0] & 0x0F;
    h->len = len7;
    p += 2;
    if (len7 == 126) {
        h->len = (uint64_t)p[0] << 8 | p[1];
        p += 2;
    } else if (len7 == 127) {
        h->len = 0;
        for (int i = 0; i < 8; i++)
            h->len = h->len << 8 | p[i];
        p += 8;
    }
    if (*masked_out)
        memcpy(h->mask, p, 4);
    h->header_len = need;
    return HM_OK;
}

static bool is_control(uint8_t opcode)
{
    return opcode & 0x8;
}

/* RFC 6455 5.2-5.5 and MQTT section 6 on a complete header. */
static hm_err check_header(mqtt_ws_decoder *d, const frame_header *h,
                           uint8_t b0, bool masked, mqtt_ws_fault *why)
{
    uint8_t op = h->opcode;
    if (b0 & 0x70)
        return ws_fail(d, 1002, "reserved bits set (no extension agreed)", why);
    if (op > 0xA || (op > 0x2 && op < 0x8))
        return ws_fail(d, 1002, "reserved opcode", why);
    if (!masked)
        return ws_fail(d, 1002, "client frame not masked (RFC 6455 5.1)", why);
    if (h->len >> 63)
        return ws_fail(d, 1002, "frame length has its top bit set", why);
    if (is_control(op) && (h->len > 125 || !h->fin))
        return ws_fail(d, 1002,
                       "control frame over 125 bytes or "
                       "fragmented",
                       why);
    if (op == MQTT_WS_OP_TEXT)
        return ws_fail(d, 1003, "[MQTT-6.0.0-1] text frame", why);
    if (op == MQTT_WS_OP_CONTINUATION && !d->in_message)
        return ws_fail(d, 1002, "continuation without a message", why);
    if (op == MQTT_WS_OP_BINARY && d->in_message)
        return ws_fail(d, 1002, "new message inside a fragmented one", why);
    if (!is_control(op) && d->limits.max_frame_len &&
        h->len > d->limits.max_frame_len)
        return ws_fail(d, 1009, "frame larger than the limit", why);
    return HM_OK;
}

static void unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        p[i] ^= mask[(offset + i) & 3];
}

static bool close_code_is_valid(uint16_t c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
           (c >= 3000 && c <= 4999);
}

/* A whole control frame is buffered right after its header. */
static hm_err take_control(mqtt_ws_decoder *d, const frame_header *h,
                           mqtt_ws_event *ev, mqtt_ws_fault *why)
{
    uint8_t *payload = d->in.buf + d->in.start + h->header_len;
    size_t len = (size_t)h->len;

    unmask(payload, len, h->mask, 0);
    d->in.start += h->header_len + len;
    ev->payload = (mqtt_bytes){payload, len};
    ev->close_code = 0;
    if (h->opcode == MQTT_WS_OP_PING) {
        ev->kind = MQTT_WS_EV_PING;
        return HM_OK;
    }
    if (h->opcode == MQTT_WS_OP_PONG) {
        ev->kind = MQTT_WS_EV_PONG;
        return HM_OK;
    }
    ev->kind = MQTT_WS_EV_CLOSE;
    ev->close_code = 1005; /* "no status received" */
    if (len == 1)
        return ws_fail(d, 1002, "close payload of one byte", why);
    if (len >= 2) {
        ev->close_code = (uint16_t)(payload[0] << 8 | payload[1]);
        ev->payload = (mqtt_bytes){payload + 2, len - 2};
        if (!close_code_is_valid(ev->close_code))
            return ws_fail(d, 1002, "invalid close code", why);
        if (!mqtt_utf8_is_valid(payload + 2, len - 2))
            return ws_fail(d, 1007, "close reason is not UTF-8", why);
    }
    d->sticky = HM_ECLOSED;
    d->sticky_why = (mqtt_ws_fault){MQTT_WS_CLOSE_NORMAL, "closed by peer"};
    return HM_OK;
}

/* Payload bytes of the current data frame, as many as are buffered. */
static hm_err take_data(mqtt_ws_decoder *d, mqtt_ws_event *ev)
{
    size_t avail = d->in.end - d->in.start;
    size_t n = d->remaining < avail ? (size_t)d->remaining : avail;
    uint8_t *p = d->in.buf + d->in.start;

    if (n == 0)
        return HM_EAGAIN;
    unmask(p, n, d->mask, d->mask_pos);
    d->mask_pos += n;
    d->remaining -= n;
    d->in.start += n;
    if (d->remaining == 0)
        d->in_data = false;
    ev->kind = MQTT_WS_EV_DATA;
    ev->payload = (mqtt_bytes){p, n};
    ev->close_code = 0;
    return HM_OK;
}

hm_err mqtt_ws_decoder_next(mqtt_ws_decoder *d, mqtt_ws_event *ev,
                            mqtt_ws_fault *why)
{
    for (;;) {
        frame_header h;
        uint8_t b0;
        bool masked;
        hm_err err;

        if (d->sticky != HM_OK) {
            if (why)
                *why = d->sticky_why;
            return d->sticky;
        }
        if (d->in_data)
            return take_data(d, ev);
        if ((err = read_header(d, &h, &b0, &masked)) != HM_OK)
            return err;
        if ((err = check_header(d, &h, b0, masked, why)) != HM_OK)
            return err;
        if (is_control(h.opcode)) {
            if (d->in.end - d->in.start < h.header_len + h.len)
                return HM_EAGAIN;
            return take_control(d, &h, ev, why);
        }
        d->in.start += h.header_len;
        d->in_message = !h.fin;
        d->in_data = h.len > 0;
        d->remaining = h.len;
        d->mask_pos = 0;
        memcpy(d->mask, h.mask, 4);
    }
}

/* ------------------------------------------------------------- encoding */

size_t mqtt_ws_frame_header(const mqtt_ws_frame *f,
                            uint8_t out[MQTT_WS_MAX_HEADER_LEN])
{
    size_t n = 0;
    uint64_t len = f->payload.len;
    uint8_t mask_bit = f->masked ? 0x80 : 0;

    out[n++] = (uint8_t)((f->fin ? 0x80 : 0) | (f->opcode & 0x0F));
    if (len < 126) {
        out[n++] = (uint8_t)(mask_bit | len);
    } else if (len <= 0xFFFF) {
        out[n++] = mask_bit | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = mask_bit | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (f->masked) {
        memcpy(out + n, f->mask_key, 4);
        n += 4;
    }
    return n;
}

hm_err mqtt_ws_encode(const mqtt_ws_frame *f, uint8_t *buf, size_t cap,
                      size_t *len_out)
{
    uint8_t header[MQTT_WS_MAX_HEADER_LEN];
    size_t hlen;

    if (is_control(f->opcode) && (f->payload.len > 125 || !f->fin))
        return HM_EINVAL;
    hlen = mqtt_ws_frame_header(f, header);
    if (cap < hlen || cap - hlen < f->payload.len)
        return HM_ETOOBIG;
    memcpy(buf, header, hlen);
    if (f->payload.len)
        memcpy(buf + hlen, f->payload.ptr, f->payload.len);
    if (f->masked)
        unmask(buf + hlen, f->payload.len, f->mask_key, 0);
    *len_out = hlen + f->payload.len;
    return HM_OK;
}

size_t mqtt_ws_encode_close(uint16_t code, uint8_t buf[4])
{
    buf[0] = 0x80 | MQTT_WS_OP_CLOSE;
    buf[1] = 2;
    buf[2] = (uint8_t)(code >> 8);
    buf[3] = (uint8_t)code;
    return 4;
}
