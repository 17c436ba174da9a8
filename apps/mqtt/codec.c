/* apps/mqtt/codec.c: the MQTT 3.1.1 decoder, encoder and framer.
 *
 * Decoding is a cursor (`reader`) over one whole packet. Every read checks
 * the bytes left, so a truncated field is a MALFORMED fault rather than an
 * overread, and every packet must be consumed exactly: trailing bytes are
 * malformed too. Each failing check names its normative statement in the
 * fault's `rule`, which is also what the tests assert on. Checks happen in
 * the order the bytes arrive, with one deliberate exception: an unaccepted
 * protocol level is reported before anything after it is read, because a
 * client speaking another version (MQTT 5 adds properties) lays the rest of
 * its CONNECT out differently, and it must still get CONNACK 0x01. */
#include "apps/mqtt/codec.h"
#include "apps/mqtt/put_impl.h"

#include "apps/mqtt/topic.h"
#include "runtime/alloc.h"

#include <string.h>

typedef struct reader {
    const uint8_t *pos;
    const uint8_t *end;
} reader;

static hm_err fail(mqtt_fault *why, mqtt_fault_kind kind, const char *rule)
{
    if (why) {
        why->kind = kind;
        why->rule = rule;
    }
    return kind == MQTT_FAULT_TOO_BIG ? HM_ETOOBIG : HM_EPROTO;
}

#define MALFORMED(why, rule) fail((why), MQTT_FAULT_MALFORMED, (rule))
#define VIOLATION(why, rule) fail((why), MQTT_FAULT_PROTOCOL, (rule))
#define TRUNCATED "[MQTT-1.5.3] a field runs past the end of the packet"

static size_t reader_left(const reader *r)
{
    return (size_t)(r->end - r->pos);
}

static bool read_u8(reader *r, uint8_t *out)
{
    if (reader_left(r) < 1)
        return false;
    *out = *r->pos++;
    return true;
}

static bool read_u16(reader *r, uint16_t *out)
{
    if (reader_left(r) < 2)
        return false;
    *out = (uint16_t)(r->pos[0] << 8 | r->pos[1]);
    r->pos += 2;
    return true;
}

/* A two-byte length followed by that many bytes (section 1.5.3). */
static bool read_binary(reader *r, mqtt_bytes *out)
{
    uint16_t len;
    if (!read_u16(r, &len) || reader_left(r) < len)
        return false;
    out->ptr = r->pos;
    out->len = len;
    r->pos += len;
    return true;
}

/* A length-prefixed string: binary data that must also be valid UTF-8. */
static hm_err read_string(reader *r, mqtt_bytes *out, mqtt_fault *why)
{
    if (!read_binary(r, out))
        return MALFORMED(why, TRUNCATED);
    if (!mqtt_utf8_is_valid(out->ptr, out->len))
        return MALFORMED(why, "[MQTT-1.5.3-1] a string is not well-formed "
                              "UTF-8 or contains U+0000 [MQTT-1.5.3-2]");
    return HM_OK;
}

/* Continuation bytes of a UTF-8 sequence lie in 80..BF, except right after
 * E0 (no overlong 3-byte forms), ED (no surrogates D800..DFFF), F0 (no
 * overlong 4-byte forms) and F4 (nothing above U+10FFFF): RFC 3629
 * section 4's table, checked byte by byte. */
bool mqtt_utf8_is_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c == 0x00)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false; /* 80..C1 and F5..FF never start a sequence */
        }
        if (len - i - 1 < need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        i += need + 1;
    }
    return true;
}

/* ------------------------------------------------------------- framing */

static size_t limit_of(const mqtt_limits *limits)
{
    size_t max = MQTT_MAX_REMAINING_LEN + MQTT_MAX_FIXED_HEADER_LEN;
    if (limits && limits->max_packet_len && limits->max_packet_len < max)
        max = limits->max_packet_len;
    return max;
}

/* Parse the fixed header at `buf`: on HM_OK the header's length and the
 * remaining length. HM_EAGAIN if the header itself is incomplete. */
static hm_err parse_fixed_header(const uint8_t *buf, size_t len,
                                 size_t *header_len, size_t *remaining,
                                 mqtt_fault *why)
{
    size_t value = 0;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= len)
            return HM_EAGAIN;
        value |= (size_t)(buf[i] & 0x7F) << (7 * (i - 1));
        if (!(buf[i] & 0x80)) {
            *header_len = i + 1;
            *remaining = value;
            return HM_OK;
        }
    }
    return MALFORMED(why, "[MQTT-2.2.3] the remaining length takes more "
                          "than 4 bytes");
}

hm_err mqtt_frame(const uint8_t *buf, size_t len, const mqtt_limits *limits,
                  size_t *packet_len_out, mqtt_fault *why)
{
    size_t header_len, remaining;
    hm_err err = parse_fixed_header(buf, len, &header_len, &remaining, why);
    if (err != HM_OK)
        return err;
    if (header_len + remaining > limit_of(limits))
        return fail(why, MQTT_FAULT_TOO_BIG,
                    "the packet is larger than max_packet_size");
    if (len < header_len + remaining)
        return HM_EAGAIN;
    *packet_len_out = header_len + remaining;
    return HM_OK;
}

/* ------------------------------------------------------------ decoding */

/* The fixed-header flag nibble that Table 2.2 requires of each type, or -1
 * where the flags carry information (PUBLISH). */
static int required_flags(int type)
{
    switch (type) {
    case MQTT_PUBLISH:
        return -1;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return 0x2;
    default:
        return 0x0;
    }
}

static const char *flags_rule(int type)
{
    switch (type) {
    case MQTT_PUBREL:
        return "[MQTT-3.6.1-1] PUBREL fixed header flags must be 0010";
    case MQTT_SUBSCRIBE:
        return "[MQTT-3.8.1-1] SUBSCRIBE fixed header flags must be 0010";
    case MQTT_UNSUBSCRIBE:
        return "[MQTT-3.10.1-1] UNSUBSCRIBE fixed header flags must be 0010";
    default:
        return "[MQTT-2.2.2-1] reserved fixed header flags must be 0000 "
               "[MQTT-2.2.2-2]";
    }
}

/* Protocol name and level, then the connect flags. */
static hm_err decode_connect_header(reader *r, mqtt_connect *c, uint8_t *flags,
                                    mqtt_fault *why)
{
    mqtt_bytes name;
    hm_err err;

    if ((err = read_string(r, &name, why)) != HM_OK)
        return err;
    if (!read_u8(r, &c->protocol_level))
        return MALFORMED(why, TRUNCATED);
    if (name.len == 4 && memcmp(name.ptr, "MQTT", 4) == 0) {
        if (c->protocol_level != 4)
            return fail(why, MQTT_FAULT_BAD_PROTOCOL_LEVEL,
                        "[MQTT-3.1.2-2] unsupported protocol level");
    } else if (name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0) {
        /* MQTT 3.1, which mosquitto accepts too: same packet layout. */
        if (c->protocol_level != 3)
            return fail(why, MQTT_FAULT_BAD_PROTOCOL_LEVEL,
                        "[MQTT-3.1.2-2] unsupported protocol level");
    } else {
        return VIOLATION(why, "[MQTT-3.1.2-1] the protocol name is not MQTT");
    }
    if (!read_u8(r, flags) || !read_u16(r, &c->keepalive_s))
        return MALFORMED(why, TRUNCATED);
    if (*flags & 0x01)
        return MALFORMED(why, "[MQTT-3.1.2-3] the CONNECT reserved flag "
                              "is not zero");
    c->clean_session = *flags & 0x02;
    c->will = *flags & 0x04;
    c->will_qos = (*flags >> 3) & 0x03;
    c->will_retain = *flags & 0x20;
    c->has_password = *flags & 0x40;
    c->has_username = *flags & 0x80;
    if (!c->will && c->will_qos != 0)
        return MALFORMED(why, "[MQTT-3.1.2-13] will QoS set without will "
                              "[MQTT-3.1.2-11]");
    if (c->will && c->will_qos == 3)
        return MALFORMED(why, "[MQTT-3.1.2-14] will QoS is 3");
    if (!c->will && c->will_retain)
        return MALFORMED(why, "[MQTT-3.1.2-15] will retain set without will "
                              "[MQTT-3.1.2-11]");
    if (!c->has_username && c->has_password)
        return MALFORMED(why, "[MQTT-3.1.2-22] password flag set without "
                              "user name flag");
    return HM_OK;
}

static bool has_wildcard(mqtt_bytes s)
{
    return memchr(s.ptr, '+', s.len) || memchr(s.ptr, '#', s.len);
}

static hm_err decode_connect(reader *r, mqtt_connect *c, mqtt_fault *why)
{
    uint8_t flags;
    hm_err err;

    memset(c, 0, sizeof *c);
    if ((err = decode_connect_header(r, c, &flags, why)) != HM_OK)
        return err;
    if ((err = read_string(r, &c->client_id, why)) != HM_OK)
        return err;
    if (c->will) {
        if ((err = read_string(r, &c->will_topic, why)) != HM_OK)
            return err;
        if (!mqtt_topic_name_is_valid((const char *)c->will_topic.ptr,
                                      c->will_topic.len))
            return VIOLATION(why, "[MQTT-3.3.2-2] the will topic is not a "
                                  "valid topic name [MQTT-4.7.1-1]");
        if (!read_binary(r, &c->will_payload))
            return MALFORMED(why, TRUNCATED);
    }
    if (c->has_username && (err = read_string(r, &c->username, why)) != HM_OK)
        return err;
    if (c->has_password && !read_binary(r, &c->password))
        return MALFORMED(why, TRUNCATED);
    if (reader_left(r) != 0)
        return MALFORMED(why, "[MQTT-3.1.3-1] bytes after the last CONNECT "
                              "payload field");
    /* Last: a rejected client id gets a CONNACK, which a malformed packet
     * must not. */
    if (c->client_id.len == 0 && !c->clean_session)
        return fail(why, MQTT_FAULT_ID_REJECTED,
                    "[MQTT-3.1.3-8] empty client id without clean session");
    if (c->client_id.len == 0 && c->protocol_level == 3)
        return fail(why, MQTT_FAULT_ID_REJECTED,
                    "MQTT 3.1 requires a client id of 1 to 23 bytes");
    return HM_OK;
}

static hm_err decode_publish(reader *r, uint8_t flags, mqtt_publish *p,
                             mqtt_fault *why)
{
    hm_err err;

    memset(p, 0, sizeof *p);
    p->dup = flags & 0x08;
    p->qos = (flags >> 1) & 0x03;
    p->retain = flags & 0x01;
    if (p->qos == 3)
        return MALFORMED(why, "[MQTT-3.3.1-4] PUBLISH QoS is 3");
    if (p->qos == 0 && p->dup)
        return MALFORMED(why, "[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH");
    if ((err = read_string(r, &p->topic, why)) != HM_OK)
        return err;
    if (p->topic.len == 0)
        return MALFORMED(why, "[MQTT-4.7.3-1] empty PUBLISH topic name");
    if (has_wildcard(p->topic))
        return MALFORMED(why, "[MQTT-3.3.2-2] wildcard in a PUBLISH topic");
    if (p->qos > 0) {
        if (!read_u16(r, &p->packet_id))
            return MALFORMED(why, TRUNCATED);
        if (p->packet_id == 0)
            return MALFORMED(why, "[MQTT-2.3.1-1] packet id is zero");
    }
    p->payload.ptr = r->pos;
    p->payload.len = reader_left(r);
    r->pos = r->end;
    return HM_OK;
}

static hm_err decode_subscribe(reader *r, bool with_qos, mqtt_subscribe *s,
                               mqtt_fault *why)
{
    hm_err err;

    memset(s, 0, sizeof *s);
    if (!read_u16(r, &s->packet_id))
        return MALFORMED(why, TRUNCATED);
    if (s->packet_id == 0)
        return MALFORMED(why, "[MQTT-2.3.1-1] packet id is zero");
    s->wire.ptr = r->pos;
    s->wire.len = reader_left(r);
    while (reader_left(r) > 0) {
        mqtt_bytes filter;
        uint8_t qos;
        if ((err = read_string(r, &filter, why)) != HM_OK)
            return err;
        if (!mqtt_topic_filter_is_valid((const char *)filter.ptr, filter.len))
            return MALFORMED(why, "[MQTT-4.7.1-2] invalid topic filter "
                                  "(wildcard placement [MQTT-4.7.1-3] or "
                                  "empty [MQTT-4.7.3-1])");
        if (with_qos) {
            if (!read_u8(r, &qos))
                return MALFORMED(why, TRUNCATED);
            if (qos > 2)
                return MALFORMED(why, "[MQTT-3-8.3-4] requested QoS byte "
                                      "has reserved bits or QoS 3");
        }
        s->count++;
    }
    if (s->count == 0)
        return VIOLATION(why, with_qos ? "[MQTT-3.8.3-3] SUBSCRIBE with no "
                                         "topic filter"
                                       : "[MQTT-3.10.3-2] UNSUBSCRIBE with "
                                         "no topic filter");
    return HM_OK;
}

static hm_err decode_suback(reader *r, mqtt_suback *s, mqtt_fault *why)
{
    if (!read_u16(r, &s->packet_id))
        return MALFORMED(why, TRUNCATED);
    if (s->packet_id == 0)
        return MALFORMED(why, "[MQTT-2.3.1-7] SUBACK packet id is zero");
    s->codes.ptr = r->pos;
    s->codes.len = reader_left(r);
    if (s->codes.len == 0)
        return MALFORMED(why, "[MQTT-3.9.3-1] SUBACK with no return code");
    for (size_t i = 0; i < s->codes.len; i++) {
        uint8_t c = s->codes.ptr[i];
        if (c > 2 && c != MQTT_SUBACK_FAILURE)
            return MALFORMED(why, "[MQTT-3.9.3-2] SUBACK return code is not "
                                  "0, 1, 2 or 0x80");
    }
    r->pos = r->end;
    return HM_OK;
}

static hm_err decode_connack(reader *r, mqtt_connack *c, mqtt_fault *why)
{
    uint8_t ack, code;
    if (!read_u8(r, &ack) || !read_u8(r, &code))
        return MALFORMED(why, TRUNCATED);
    if (ack & 0xFE)
        return MALFORMED(why, "[MQTT-3.2.2-1] CONNACK reserved bits set");
    if (code > MQTT_CONNACK_NOT_AUTHORIZED)
        return MALFORMED(why, "[MQTT-3.2.2] unknown CONNACK return code");
    c->session_present = ack & 0x01;
    c->return_code = code;
    return HM_OK;
}

static hm_err decode_ack(reader *r, uint16_t *packet_id, mqtt_fault *why)
{
    if (!read_u16(r, packet_id))
        return MALFORMED(why, TRUNCATED);
    if (*packet_id == 0)
        return MALFORMED(why, "[MQTT-2.3.1-1] packet id is zero");
    return HM_OK;
}

static hm_err decode_body(reader *r, uint8_t flags, mqtt_packet *out,
                          mqtt_fault *why)
{
    switch (out->type) {
    case MQTT_CONNECT:
        return decode_connect(r, &out->u.connect, why);
    case MQTT_CONNACK:
        return decode_connack(r, &out->u.connack, why);
    case MQTT_PUBLISH:
        return decode_publish(r, flags, &out->u.publish, why);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return decode_ack(r, &out->u.packet_id, why);
    case MQTT_SUBSCRIBE:
        return decode_subscribe(r, true, &out->u.subscribe, why);
    case MQTT_UNSUBSCRIBE:
        return decode_subscribe(r, false, &out->u.subscribe, why);
    case MQTT_SUBACK:
        return decode_suback(r, &out->u.suback, why);
    default: /* PINGREQ, PINGRESP, DISCONNECT: no variable header */
        return HM_OK;
    }
}

hm_err mqtt_decode(const uint8_t *buf, size_t len, const mqtt_limits *limits,
                   mqtt_packet *out, mqtt_fault *why)
{
    size_t header_len, remaining;
    hm_err err;
    uint8_t type, flags;
    mqtt_packet pkt;
    reader r;

    err = parse_fixed_header(buf, len, &header_len, &remaining, why);
    if (err == HM_EAGAIN || (err == HM_OK && header_len + remaining != len))
        return MALFORMED(why, "[MQTT-2.2.3] the remaining length does not "
                              "match the packet's size");
    if (err != HM_OK)
        return err;
    if (len > limit_of(limits))
        return fail(why, MQTT_FAULT_TOO_BIG,
                    "the packet is larger than max_packet_size");
    type = buf[0] >> 4;
    flags = buf[0] & 0x0F;
    if (type == 0 || type == 15)
        return MALFORMED(why, "[MQTT-2.2.1] reserved control packet type");
    if (required_flags(type) >= 0 && flags != required_flags(type))
        return MALFORMED(why, flags_rule(type));
    memset(&pkt, 0, sizeof pkt);
    pkt.type = (mqtt_packet_type)type;
    r.pos = buf + header_len;
    r.end = buf + len;
    if ((err = decode_body(&r, flags, &pkt, why)) != HM_OK)
        return err;
    if (reader_left(&r) != 0)
        return MALFORMED(why, "[MQTT-2.2.3] bytes after the packet's last "
                              "field");
    *out = pkt;
    return HM_OK;
}

void mqtt_sub_iter_init(mqtt_sub_iter *it, mqtt_packet_type type,
                        const mqtt_subscribe *s)
{
    it->pos = s->wire.ptr;
    it->end = s->wire.ptr + s->wire.len;
    it->with_qos = type == MQTT_SUBSCRIBE;
}

bool mqtt_sub_iter_next(mqtt_sub_iter *it, mqtt_sub_req *req)
{
    reader r = {it->pos, it->end};
    req->qos = 0;
    if (!read_binary(&r, &req->filter))
        return false;
    if (it->with_qos && !read_u8(&r, &req->qos))
        return false;
    it->pos = r.pos;
    return true;
}

/* ------------------------------------------------------------ encoding */

/* Adds a length-prefixed field's size to `*len`; false if over 65535. */
static bool add_field(size_t *len, mqtt_bytes b)
{
    if (b.len > 0xFFFF)
        return false;
    *len += 2 + b.len;
    return true;
}

static hm_err connect_body_len(const mqtt_connect *c, size_t *len)
{
    bool ok;
    if (c->will_qos > 2 || (c->has_password && !c->has_username))
        return HM_EINVAL;
    *len = (c->protocol_level == 3 ? 8 : 6) + 1 + 1 + 2;
    ok = add_field(len, c->client_id);
    if (c->will)
        ok = ok && add_field(len, c->will_topic) &&
             add_field(len, c->will_payload);
    if (c->has_username)
        ok = ok && add_field(len, c->username);
    if (c->has_password)
        ok = ok && add_field(len, c->password);
    return ok ? HM_OK : HM_EINVAL;
}

static hm_err subscribe_body_len(mqtt_packet_type type, const mqtt_subscribe *s,
                                 size_t *len)
{
    if (s->packet_id == 0 || s->count == 0)
        return HM_EINVAL;
    if (!s->reqs) {
        *len = 2 + s->wire.len;
        return HM_OK;
    }
    *len = 2;
    for (size_t i = 0; i < s->count; i++) {
        if (!add_field(len, s->reqs[i].filter) || s->reqs[i].qos > 2)
            return HM_EINVAL;
        if (type == MQTT_SUBSCRIBE)
            *len += 1;
    }
    return HM_OK;
}

static hm_err body_len(const mqtt_packet *p, size_t *len)
{
    const mqtt_publish *pub = &p->u.publish;
    switch (p->type) {
    case MQTT_CONNECT:
        return connect_body_len(&p->u.connect, len);
    case MQTT_CONNACK:
        *len = 2;
        return HM_OK;
    case MQTT_PUBLISH:
        *len = pub->payload.len + (pub->qos > 0 ? 2 : 0);
        if (pub->qos > 2 || (pub->qos > 0 && pub->packet_id == 0) ||
            !add_field(len, pub->topic))
            return HM_EINVAL;
        return HM_OK;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        *len = 2;
        return p->u.packet_id ? HM_OK : HM_EINVAL;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return subscribe_body_len(p->type, &p->u.subscribe, len);
    case MQTT_SUBACK:
        *len = 2 + p->u.suback.codes.len;
        return p->u.suback.packet_id && p->u.suback.codes.len ? HM_OK
                                                              : HM_EINVAL;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        *len = 0;
        return HM_OK;
    default:
        return HM_EINVAL;
    }
}

static size_t varint_len(size_t value)
{
    return value < 128 ? 1 : value < 16384 ? 2 : value < 2097152 ? 3 : 4;
}

hm_err mqtt_encoded_len(const mqtt_packet *p, size_t *len_out)
{
    size_t len;
    hm_err err = body_len(p, &len);
    if (err != HM_OK)
        return err;
    if (len > MQTT_MAX_REMAINING_LEN)
        return HM_ETOOBIG;
    *len_out = 1 + varint_len(len) + len;
    return HM_OK;
}

static void put_connect(mqtt_put *w, const mqtt_connect *c)
{
    bool v31 = c->protocol_level == 3;
    mqtt_bytes name = {(const uint8_t *)(v31 ? "MQIsdp" : "MQTT"),
                       v31 ? 6u : 4u};
    mqtt_put_field(w, name);
    mqtt_put_u8(w, v31 ? 3 : 4);
    mqtt_put_u8(w, (uint8_t)((c->has_username ? 0x80 : 0) |
                        (c->has_password ? 0x40 : 0) |
                        (c->will && c->will_retain ? 0x20 : 0) |
                        (c->will ? c->will_qos << 3 | 0x04 : 0) |
                        (c->clean_session ? 0x02 : 0)));
    mqtt_put_u16(w, c->keepalive_s);
    mqtt_put_field(w, c->client_id);
    if (c->will) {
        mqtt_put_field(w, c->will_topic);
        mqtt_put_field(w, c->will_payload);
    }
    if (c->has_username)
        mqtt_put_field(w, c->username);
    if (c->has_password)
        mqtt_put_field(w, c->password);
}

static void put_subscribe(mqtt_put *w, mqtt_packet_type type,
                          const mqtt_subscribe *s)
{
    mqtt_put_u16(w, s->packet_id);
    if (!s->reqs) {
        mqtt_put_raw(w, s->wire);
        return;
    }
    for (size_t i = 0; i < s->count; i++) {
        mqtt_put_field(w, s->reqs[i].filter);
        if (type == MQTT_SUBSCRIBE)
            mqtt_put_u8(w, s->reqs[i].qos);
    }
}

static uint8_t first_byte(const mqtt_packet *p)
{
    const mqtt_publish *pub = &p->u.publish;
    uint8_t flags = (uint8_t)(required_flags(p->type) & 0x0F);
    if (p->type == MQTT_PUBLISH)
        flags = (uint8_t)((pub->dup ? 0x08 : 0) | pub->qos << 1 |
                          (pub->retain ? 0x01 : 0));
    return (uint8_t)(p->type << 4 | flags);
}

static void put_body(mqtt_put *w, const mqtt_packet *p)
{
    switch (p->type) {
    case MQTT_CONNECT:
        put_connect(w, &p->u.connect);
        break;
    case MQTT_CONNACK:
        mqtt_put_u8(w, p->u.connack.session_present ? 1 : 0);
        mqtt_put_u8(w, p->u.connack.return_code);
        break;
    case MQTT_PUBLISH:
        mqtt_put_field(w, p->u.publish.topic);
        if (p->u.publish.qos > 0)
            mqtt_put_u16(w, p->u.publish.packet_id);
        mqtt_put_raw(w, p->u.publish.payload);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        put_subscribe(w, p->type, &p->u.subscribe);
        break;
    case MQTT_SUBACK:
        mqtt_put_u16(w, p->u.suback.packet_id);
        mqtt_put_raw(w, p->u.suback.codes);
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        break;
    default: /* the acks */
        mqtt_put_u16(w, p->u.packet_id);
        break;
    }
}

hm_err mqtt_encode(const mqtt_packet *p, uint8_t *buf, size_t cap,
                   size_t *len_out)
{
    size_t total, remaining = 0;
    mqtt_put w = {buf};
    hm_err err = mqtt_encoded_len(p, &total);
    if (err != HM_OK)
        return err;
    if (total > cap)
        return HM_ETOOBIG;
    body_len(p, &remaining); /* cannot fail: mqtt_encoded_len() passed */
    mqtt_put_u8(&w, first_byte(p));
    do {
        uint8_t b = remaining & 0x7F;
        remaining >>= 7;
        mqtt_put_u8(&w, remaining ? b | 0x80 : b);
    } while (remaining);
    put_body(&w, p);
    HM_ASSERT((size_t)(w.pos - buf) == total);
    *len_out = total;
    return HM_OK;
}

int mqtt_fault_connack_code(mqtt_fault_kind kind)
{
    switch (kind) {
    case MQTT_FAULT_BAD_PROTOCOL_LEVEL:
        return MQTT_CONNACK_BAD_PROTOCOL_LEVEL;
    case MQTT_FAULT_ID_REJECTED:
        return MQTT_CONNACK_ID_REJECTED;
    default:
        return -1;
    }
}

const char *mqtt_packet_type_name(int type)
{
    static const char *const names[16] = {
        "RESERVED",  "CONNECT",  "CONNACK",     "PUBLISH",
        "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
        "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ",   "PINGRESP", "DISCONNECT",  "RESERVED"};
    return type >= 0 && type < 16 ? names[type] : "RESERVED";
}
