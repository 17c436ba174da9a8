/* apps/mqtt/session_state.c: the binary session record.
 *
 * Layout (big-endian; docs/adr/0110):
 *
 *   "HMQS" u8 version
 *   u32 move generation (version 2 only; a version 1 record has none and
 *       decodes with generation 0)
 *   u16 client id length, client id
 *   u16 next packet id
 *   u32 subscription count, each: u16 filter length, filter, u8 QoS
 *   u32 in-flight count, each: u8 QoS, u8 stage, u16 packet id, u8 flags
 *       (bit 0 DUP, bit 1 RETAIN), and unless the stage is AWAIT_PUBCOMP:
 *       u16 topic length, topic, u32 payload length, payload
 *   u32 queued count, each: u8 QoS, u8 flags, u16 topic length, topic,
 *       u32 payload length, payload
 *   u32 inbound QoS 2 id count, each: u16 id
 *
 * One validation function serves both directions, so an encoder bug shows
 * up as HM_EINVAL at save time rather than as an unreadable record at the
 * next start. The decoder checks each count against the bytes left before
 * it allocates, so a forged count cannot make it allocate more than the
 * input's size. */
#include "apps/mqtt/session_state.h"
#include "apps/mqtt/put_impl.h"

#include "apps/mqtt/topic.h"
#include "runtime/alloc.h"

#include <string.h>

#define FLAG_DUP 0x01u
#define FLAG_RETAIN 0x02u
#define HEADER_LEN 5u
/* The smallest encodings, to bound counts by the bytes left. */
#define MIN_SUB_LEN 4u      /* u16 length, 1-byte filter, u8 QoS */
#define MIN_INFLIGHT_LEN 5u /* a PUBREL-only entry */
#define MIN_QUEUED_LEN 9u   /* u8, u8, u16, 1-byte topic, u32 */

/* ------------------------------------------------------------- checks */

/* A bitmap of the 65536 packet ids, to find duplicates in O(n). */
typedef struct id_set {
    uint8_t bits[65536 / 8];
} id_set;

static bool id_set_add(id_set *s, uint16_t id)
{
    uint8_t mask = (uint8_t)(1u << (id & 7));

    if (s->bits[id >> 3] & mask)
        return false;
    s->bits[id >> 3] |= mask;
    return true;
}

static const char *check_msg(const mqtt_state_msg *m, bool inflight)
{
    if (m->qos < 1 || m->qos > 2)
        return "message QoS is not 1 or 2";
    if (inflight) {
        if (m->packet_id == 0)
            return "in-flight message without a packet id";
        if (m->stage == MQTT_STAGE_AWAIT_PUBACK ? m->qos != 1
            : m->stage == MQTT_STAGE_AWAIT_PUBREC ||
                    m->stage == MQTT_STAGE_AWAIT_PUBCOMP
                ? m->qos != 2
                : true)
            return "in-flight stage does not fit its QoS";
        if (m->stage == MQTT_STAGE_AWAIT_PUBCOMP)
            return m->topic.len || m->payload.len
                       ? "a PUBREL-only entry carries a message"
                       : NULL;
    } else if (m->stage != 0 || m->packet_id != 0 || m->dup) {
        return "queued message with a stage or packet id";
    }
    if (!mqtt_topic_name_is_valid((const char *)m->topic.ptr, m->topic.len))
        return "invalid topic name";
    if (m->payload.len > UINT32_MAX)
        return "payload too large";
    return NULL;
}

static const char *check(const mqtt_session_state *st)
{
    id_set *ids = hm_calloc(1, sizeof *ids);
    const char *why = NULL;

    if (st->client_id.len == 0 || st->client_id.len > 65535 ||
        memchr(st->client_id.ptr, 0, st->client_id.len))
        why = "client id empty, too long or with a NUL";
    else if (st->next_packet_id == 0)
        why = "next packet id is 0";
    for (size_t i = 0; !why && i < st->sub_count; i++) {
        const mqtt_state_sub *s = &st->subs[i];

        if (!mqtt_topic_filter_is_valid((const char *)s->filter.ptr,
                                        s->filter.len))
            why = "invalid topic filter";
        else if (s->qos > 2)
            why = "subscription QoS above 2";
    }
    for (size_t i = 0; !why && i < st->inflight_count; i++) {
        why = check_msg(&st->inflight[i], true);
        if (!why && !id_set_add(ids, st->inflight[i].packet_id))
            why = "two in-flight messages share a packet id";
    }
    for (size_t i = 0; !why && i < st->queued_count; i++)
        why = check_msg(&st->queued[i], false);
    for (size_t i = 0; !why && i < st->in_qos2_count; i++)
        if (st->in_qos2[i] == 0 || (i > 0 && st->in_qos2[i] <= st->in_qos2[i - 1]))
            why = "inbound QoS 2 ids not increasing or 0";
    if (!why && (st->sub_count > UINT32_MAX || st->inflight_count > UINT32_MAX ||
                 st->queued_count > UINT32_MAX || st->in_qos2_count > UINT32_MAX))
        why = "too many entries";
    hm_free(ids);
    return why;
}

/* ----------------------------------------------------------- encoding */

static size_t msg_len(const mqtt_state_msg *m, bool inflight)
{
    size_t n = inflight ? 5 : 2;

    if (inflight && m->stage == MQTT_STAGE_AWAIT_PUBCOMP)
        return n;
    return n + 2 + m->topic.len + 4 + m->payload.len;
}

static void put_msg(mqtt_put *w, const mqtt_state_msg *m, bool inflight)
{
    uint8_t flags = (uint8_t)((m->dup ? FLAG_DUP : 0) |
                              (m->retain ? FLAG_RETAIN : 0));

    mqtt_put_u8(w, m->qos);
    if (inflight) {
        mqtt_put_u8(w, m->stage);
        mqtt_put_u16(w, m->packet_id);
    }
    mqtt_put_u8(w, flags);
    if (inflight && m->stage == MQTT_STAGE_AWAIT_PUBCOMP)
        return;
    mqtt_put_field(w, m->topic);
    mqtt_put_u32(w, (uint32_t)m->payload.len);
    mqtt_put_raw(w, m->payload);
}

static size_t encoded_len(const mqtt_session_state *st)
{
    size_t n = HEADER_LEN + 4 + 2 + st->client_id.len + 2 + 4 * 4;

    for (size_t i = 0; i < st->sub_count; i++)
        n += 2 + st->subs[i].filter.len + 1;
    for (size_t i = 0; i < st->inflight_count; i++)
        n += msg_len(&st->inflight[i], true);
    for (size_t i = 0; i < st->queued_count; i++)
        n += msg_len(&st->queued[i], false);
    return n + 2 * st->in_qos2_count;
}

hm_err mqtt_session_state_encode(const mqtt_session_state *st,
                                 uint8_t **data_out, size_t *len_out)
{
    size_t len;
    mqtt_put w;
    uint8_t *buf;

    if (check(st))
        return HM_EINVAL;
    len = encoded_len(st);
    buf = hm_alloc(len);
    w.pos = buf;
    memcpy(w.pos, MQTT_SESSION_STATE_MAGIC, 4);
    w.pos += 4;
    mqtt_put_u8(&w, MQTT_SESSION_STATE_VERSION);
    mqtt_put_u32(&w, st->gen);
    mqtt_put_field(&w, st->client_id);
    mqtt_put_u16(&w, st->next_packet_id);
    mqtt_put_u32(&w, (uint32_t)st->sub_count);
    for (size_t i = 0; i < st->sub_count; i++) {
        mqtt_put_field(&w, st->subs[i].filter);
        mqtt_put_u8(&w, st->subs[i].qos);
    }
    mqtt_put_u32(&w, (uint32_t)st->inflight_count);
    for (size_t i = 0; i < st->inflight_count; i++)
        put_msg(&w, &st->inflight[i], true);
    mqtt_put_u32(&w, (uint32_t)st->queued_count);
    for (size_t i = 0; i < st->queued_count; i++)
        put_msg(&w, &st->queued[i], false);
    mqtt_put_u32(&w, (uint32_t)st->in_qos2_count);
    for (size_t i = 0; i < st->in_qos2_count; i++)
        mqtt_put_u16(&w, st->in_qos2[i]);
    HM_ASSERT((size_t)(w.pos - buf) == len);
    *data_out = buf;
    *len_out = len;
    return HM_OK;
}

/* ----------------------------------------------------------- decoding */

typedef struct reader {
    const uint8_t *p, *end;
    bool short_read; /* set by any read past the end */
} reader;

static size_t left(const reader *r)
{
    return (size_t)(r->end - r->p);
}

static uint32_t get(reader *r, size_t n)
{
    uint32_t v = 0;

    if (left(r) < n) {
        r->short_read = true;
        r->p = r->end;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        v = v << 8 | *r->p++;
    return v;
}

static mqtt_bytes get_bytes(reader *r, size_t n)
{
    mqtt_bytes b = {r->p, n};

    if (left(r) < n) {
        r->short_read = true;
        r->p = r->end;
        return (mqtt_bytes){r->end, 0};
    }
    r->p += n;
    return b;
}

/* A count of entries at least `min_len` bytes each; 0 and `*bad` set if
 * the bytes left cannot hold that many. */
static size_t get_count(reader *r, size_t min_len, bool *bad)
{
    size_t n = get(r, 4);

    if (n > left(r) / min_len)
        *bad = true;
    return *bad ? 0 : n;
}

static void get_msg(reader *r, mqtt_state_msg *m, bool inflight)
{
    uint8_t flags;

    memset(m, 0, sizeof *m);
    m->qos = (uint8_t)get(r, 1);
    if (inflight) {
        m->stage = (uint8_t)get(r, 1);
        m->packet_id = (uint16_t)get(r, 2);
    }
    flags = (uint8_t)get(r, 1);
    m->dup = flags & FLAG_DUP;
    m->retain = flags & FLAG_RETAIN;
    if ((flags & ~(FLAG_DUP | FLAG_RETAIN)) != 0)
        m->qos = 0xFF; /* unknown flags: refused by check_msg() */
    if (inflight && m->stage == MQTT_STAGE_AWAIT_PUBCOMP)
        return;
    m->topic = get_bytes(r, get(r, 2));
    m->payload = get_bytes(r, get(r, 4));
}

/* Fills `st` from `r`; the message of the first problem, or NULL. */
static const char *read_body(reader *r, mqtt_session_state *st)
{
    bool bad = false;

    st->client_id = get_bytes(r, get(r, 2));
    st->next_packet_id = (uint16_t)get(r, 2);
    st->sub_count = get_count(r, MIN_SUB_LEN, &bad);
    if (bad)
        return "subscription count larger than the record";
    st->subs = hm_calloc(st->sub_count ? st->sub_count : 1, sizeof *st->subs);
    for (size_t i = 0; i < st->sub_count; i++) {
        st->subs[i].filter = get_bytes(r, get(r, 2));
        st->subs[i].qos = (uint8_t)get(r, 1);
    }
    st->inflight_count = get_count(r, MIN_INFLIGHT_LEN, &bad);
    if (bad)
        return "in-flight count larger than the record";
    st->inflight = hm_calloc(st->inflight_count ? st->inflight_count : 1,
                             sizeof *st->inflight);
    for (size_t i = 0; i < st->inflight_count; i++)
        get_msg(r, &st->inflight[i], true);
    st->queued_count = get_count(r, MIN_QUEUED_LEN, &bad);
    if (bad)
        return "queued count larger than the record";
    st->queued =
        hm_calloc(st->queued_count ? st->queued_count : 1, sizeof *st->queued);
    for (size_t i = 0; i < st->queued_count; i++)
        get_msg(r, &st->queued[i], false);
    st->in_qos2_count = get_count(r, 2, &bad);
    if (bad)
        return "inbound QoS 2 id count larger than the record";
    st->in_qos2 = hm_calloc(st->in_qos2_count ? st->in_qos2_count : 1,
                            sizeof *st->in_qos2);
    for (size_t i = 0; i < st->in_qos2_count; i++)
        st->in_qos2[i] = (uint16_t)get(r, 2);
    if (r->short_read)
        return "truncated record";
    if (left(r) != 0)
        return "trailing bytes after the record";
    return NULL;
}

hm_err mqtt_session_state_decode(const uint8_t *data, size_t len,
                                 mqtt_session_state *out, const char **why)
{
    reader r = {data, data + len, false};
    mqtt_session_state st = {0};
    const char *msg = NULL;

    if (len < HEADER_LEN || memcmp(data, MQTT_SESSION_STATE_MAGIC, 4) != 0)
        msg = "not a session record";
    else if (data[4] != 1 && data[4] != MQTT_SESSION_STATE_VERSION)
        msg = "unknown session record version";
    if (!msg) {
        r.p += HEADER_LEN;
        if (data[4] >= 2)
            st.gen = get(&r, 4);
        msg = read_body(&r, &st);
    }
    if (!msg)
        msg = check(&st);
    if (msg) {
        mqtt_session_state_fini(&st);
        if (why)
            *why = msg;
        return HM_EPROTO;
    }
    *out = st;
    return HM_OK;
}

void mqtt_session_state_fini(mqtt_session_state *st)
{
    if (!st)
        return;
    hm_free(st->subs);
    hm_free(st->inflight);
    hm_free(st->queued);
    hm_free(st->in_qos2);
    memset(st, 0, sizeof *st);
}
