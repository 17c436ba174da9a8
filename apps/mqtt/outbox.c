/* apps/mqtt/outbox.c: a session's outgoing QoS state and incoming QoS 2
 * packet ids.
 *
 * The queue is a ring of (msg, qos). The inflight window is an array kept
 * in send order, which is also the order resends must keep; finding an
 * entry by packet id scans it, which is O(window) per acknowledgement: the
 * window is 20 by default (mosquitto's max_inflight_messages) and a scan of
 * a few dozen entries beats maintaining an index. Packet ids come from a
 * rolling counter that skips ids still in flight [MQTT-2.3.1-2]. */
#include "apps/mqtt/outbox.h"

#include "runtime/alloc.h"

#include <string.h>

enum { WAIT_PUBACK, WAIT_PUBREC, WAIT_PUBCOMP };

typedef struct inflight {
    void *msg; /* NULL once PUBREC released it */
    uint8_t qos;
    uint8_t state;
    uint16_t packet_id;
    bool sent;      /* transmitted at least once: a resend carries DUP */
    bool need_send; /* to be (re)transmitted by mqtt_outbox_next() */
} inflight;

typedef struct queued {
    void *msg;
    uint8_t qos;
} queued;

struct mqtt_outbox {
    mqtt_outbox_config cfg;
    bool online;
    queued *queue; /* ring */
    size_t q_head, q_count, q_cap;
    inflight *win;
    size_t w_count, w_cap;
    uint16_t next_id;
};

mqtt_outbox *mqtt_outbox_create(const mqtt_outbox_config *cfg)
{
    mqtt_outbox *o = hm_calloc(1, sizeof *o);
    o->cfg = *cfg;
    if (o->cfg.max_inflight == 0 || o->cfg.max_inflight > 65535)
        o->cfg.max_inflight = 65535;
    o->next_id = 1;
    return o;
}

static void release(const mqtt_outbox *o, void *msg)
{
    if (msg && o->cfg.release)
        o->cfg.release(msg);
}

static queued queue_pop(mqtt_outbox *o)
{
    queued q = o->queue[o->q_head];
    o->q_head = (o->q_head + 1) % o->q_cap;
    o->q_count--;
    return q;
}

void mqtt_outbox_destroy(mqtt_outbox *o)
{
    if (!o)
        return;
    while (o->q_count > 0)
        release(o, queue_pop(o).msg);
    for (size_t i = 0; i < o->w_count; i++)
        release(o, o->win[i].msg);
    hm_free(o->queue);
    hm_free(o->win);
    hm_free(o);
}

static void queue_push(mqtt_outbox *o, void *msg, uint8_t qos)
{
    if (o->q_count == o->q_cap) {
        size_t cap = o->q_cap ? o->q_cap * 2 : 16;
        queued *q = hm_alloc(cap * sizeof *q);
        for (size_t i = 0; i < o->q_count; i++)
            q[i] = o->queue[(o->q_head + i) % o->q_cap];
        hm_free(o->queue);
        o->queue = q;
        o->q_cap = cap;
        o->q_head = 0;
    }
    o->queue[(o->q_head + o->q_count++) % o->q_cap] = (queued){msg, qos};
}

hm_err mqtt_outbox_push(mqtt_outbox *o, void *msg, uint8_t qos)
{
    if (qos > 2)
        return HM_EINVAL;
    if (qos == 0 && !o->online) {
        release(o, msg);
        return HM_OK;
    }
    if (o->cfg.max_queued && o->q_count >= o->cfg.max_queued)
        return HM_EFULL;
    queue_push(o, msg, qos);
    return HM_OK;
}

static bool id_in_use(const mqtt_outbox *o, uint16_t id)
{
    for (size_t i = 0; i < o->w_count; i++)
        if (o->win[i].packet_id == id)
            return true;
    return false;
}

/* A free packet id; the window never holds all 65535. */
static uint16_t take_id(mqtt_outbox *o)
{
    while (id_in_use(o, o->next_id))
        o->next_id = o->next_id == 65535 ? 1 : o->next_id + 1;
    uint16_t id = o->next_id;
    o->next_id = id == 65535 ? 1 : id + 1;
    return id;
}

static void fill_action(const inflight *e, mqtt_out_action *out)
{
    memset(out, 0, sizeof *out);
    out->packet_id = e->packet_id;
    if (e->state == WAIT_PUBCOMP) {
        out->kind = MQTT_OUT_PUBREL;
        return;
    }
    out->kind = MQTT_OUT_PUBLISH;
    out->msg = e->msg;
    out->qos = e->qos;
    out->dup = e->sent;
}

bool mqtt_outbox_next(mqtt_outbox *o, mqtt_out_action *out)
{
    queued q;
    inflight *e;

    if (!o->online)
        return false;
    for (size_t i = 0; i < o->w_count; i++) {
        if (o->win[i].need_send) {
            fill_action(&o->win[i], out);
            o->win[i].need_send = false;
            o->win[i].sent = true;
            return true;
        }
    }
    if (o->q_count == 0)
        return false;
    if (o->queue[o->q_head].qos > 0 && o->w_count >= o->cfg.max_inflight)
        return false; /* keep order: nothing overtakes a blocked message */
    q = queue_pop(o);
    if (q.qos == 0) {
        *out = (mqtt_out_action){
            .kind = MQTT_OUT_PUBLISH, .msg = q.msg, .caller_owns_msg = true};
        return true;
    }
    if (o->w_count == o->w_cap) {
        o->w_cap = o->w_cap ? o->w_cap * 2 : 8;
        o->win = hm_realloc(o->win, o->w_cap * sizeof *o->win);
    }
    e = &o->win[o->w_count++];
    *e = (inflight){.msg = q.msg,
                    .qos = q.qos,
                    .state = q.qos == 1 ? WAIT_PUBACK : WAIT_PUBREC,
                    .packet_id = take_id(o),
                    .sent = true};
    fill_action(e, out);
    out->dup = false;
    return true;
}

static void remove_at(mqtt_outbox *o, size_t i)
{
    memmove(&o->win[i], &o->win[i + 1], (o->w_count - i - 1) * sizeof *o->win);
    o->w_count--;
}

hm_err mqtt_outbox_ack(mqtt_outbox *o, int packet_type, uint16_t packet_id)
{
    for (size_t i = 0; i < o->w_count; i++) {
        inflight *e = &o->win[i];
        if (e->packet_id != packet_id)
            continue;
        if (packet_type == 4 && e->state == WAIT_PUBACK) {
            release(o, e->msg);
            remove_at(o, i);
            return HM_OK;
        }
        if (packet_type == 5 &&
            (e->state == WAIT_PUBREC || e->state == WAIT_PUBCOMP)) {
            /* [MQTT-4.3.3-1]: the message is delivered; from now on only
             * the PUBREL matters, so the payload can go. */
            release(o, e->msg);
            e->msg = NULL;
            e->state = WAIT_PUBCOMP;
            e->need_send = true;
            e->sent = false;
            return HM_OK;
        }
        if (packet_type == 7 && e->state == WAIT_PUBCOMP) {
            remove_at(o, i);
            return HM_OK;
        }
        return HM_ENOTFOUND;
    }
    return HM_ENOTFOUND;
}

void mqtt_outbox_go_offline(mqtt_outbox *o)
{
    size_t n = o->q_count;
    o->online = false;
    /* Rotate the ring once, dropping QoS 0 and keeping the order of the
     * rest: each pop frees the slot the push needs. */
    for (size_t i = 0; i < n; i++) {
        queued q = queue_pop(o);
        if (q.qos == 0)
            release(o, q.msg);
        else
            queue_push(o, q.msg, q.qos);
    }
    for (size_t i = 0; i < o->w_count; i++)
        o->win[i].need_send = true;
}

void mqtt_outbox_go_online(mqtt_outbox *o)
{
    o->online = true;
}

size_t mqtt_outbox_inflight_count(const mqtt_outbox *o)
{
    return o->w_count;
}

size_t mqtt_outbox_queued_count(const mqtt_outbox *o)
{
    return o->q_count;
}

/* -------------------------------------------- saving and restoring */

void mqtt_outbox_foreach(const mqtt_outbox *o,
                         void (*fn)(void *arg, const mqtt_out_entry *e),
                         void *arg)
{
    for (size_t i = 0; i < o->w_count; i++) {
        const inflight *w = &o->win[i];

        fn(arg, &(mqtt_out_entry){.msg = w->msg,
                                  .qos = w->qos,
                                  .stage = (uint8_t)(w->state + 1),
                                  .packet_id = w->packet_id,
                                  .sent = w->sent});
    }
    for (size_t i = 0; i < o->q_count; i++) {
        const queued *q = &o->queue[(o->q_head + i) % o->q_cap];

        if (q->qos > 0)
            fn(arg, &(mqtt_out_entry){.msg = q->msg, .qos = q->qos});
    }
}

uint16_t mqtt_outbox_next_id(const mqtt_outbox *o)
{
    return o->next_id;
}

void mqtt_outbox_set_next_id(mqtt_outbox *o, uint16_t id)
{
    o->next_id = id ? id : 1;
}

hm_err mqtt_outbox_restore(mqtt_outbox *o, const mqtt_out_entry *e)
{
    inflight *w;

    if (e->qos < 1 || e->qos > 2 || e->stage > 3)
        return HM_EINVAL;
    if (e->stage == 0) {
        if (!e->msg || e->packet_id != 0)
            return HM_EINVAL;
        queue_push(o, e->msg, e->qos);
        return HM_OK;
    }
    if (e->packet_id == 0 || id_in_use(o, e->packet_id) ||
        (e->qos == 1) != (e->stage == 1) || (e->stage == 3) != !e->msg)
        return HM_EINVAL;
    if (o->w_count == o->w_cap) {
        o->w_cap = o->w_cap ? o->w_cap * 2 : 8;
        o->win = hm_realloc(o->win, o->w_cap * sizeof *o->win);
    }
    w = &o->win[o->w_count++];
    *w = (inflight){.msg = e->msg,
                    .qos = e->qos,
                    .state = (uint8_t)(e->stage - 1),
                    .packet_id = e->packet_id,
                    .sent = e->sent && e->stage != 3,
                    .need_send = true};
    return HM_OK;
}

/* ------------------------------------------------------ incoming QoS 2 */

/* The index where `id` is or would go in the sorted array. */
static size_t lower_bound(const mqtt_qos2_ids *s, uint16_t id)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool mqtt_qos2_ids_receive(mqtt_qos2_ids *s, uint16_t packet_id)
{
    size_t i = lower_bound(s, packet_id);
    if (i < s->count && s->ids[i] == packet_id)
        return false;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->ids = hm_realloc(s->ids, s->cap * sizeof *s->ids);
    }
    memmove(&s->ids[i + 1], &s->ids[i], (s->count - i) * sizeof *s->ids);
    s->ids[i] = packet_id;
    s->count++;
    return true;
}

bool mqtt_qos2_ids_release(mqtt_qos2_ids *s, uint16_t packet_id)
{
    size_t i = lower_bound(s, packet_id);
    if (i == s->count || s->ids[i] != packet_id)
        return false;
    memmove(&s->ids[i], &s->ids[i + 1], (s->count - i - 1) * sizeof *s->ids);
    s->count--;
    return true;
}

void mqtt_qos2_ids_fini(mqtt_qos2_ids *s)
{
    if (!s)
        return;
    hm_free(s->ids);
    memset(s, 0, sizeof *s);
}
