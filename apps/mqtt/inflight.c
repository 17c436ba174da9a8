/* apps/mqtt/inflight.c: the outbound window, its queue, and the inbound
 * QoS 2 id set (see inflight.h).
 *
 * The window is a small array in send order: it holds at most `window`
 * entries (20 by default, like mosquitto's max_inflight_messages), so a
 * linear search by packet id beats any index, and removing from the middle
 * with memmove keeps the order that a resumed session resends in. The queue
 * is a growable ring. Packet ids come from a rolling counter that skips ids
 * still in the window. */
#include "apps/mqtt/inflight.h"

#include "runtime/alloc.h"

#include <string.h>

typedef struct out_entry {
    void *item; /* NULL once PUBREC released it */
    uint16_t pid;
    uint8_t qos;
    uint8_t state; /* mqtt_out_state */
} out_entry;

typedef struct queued {
    void *item;
    uint8_t qos;
} queued;

struct mqtt_inflight {
    mqtt_item_release_fn release;
    uint32_t window;
    uint32_t queue_limit;
    out_entry *out; /* [window], entries [0, out_count) in send order */
    size_t out_count;
    queued *ring; /* the queue: ring[(head + i) % ring_cap] */
    size_t ring_cap, head, queued_count;
    uint16_t last_pid;
};

mqtt_inflight *mqtt_inflight_create(uint32_t window, uint32_t queue_limit,
                                    mqtt_item_release_fn release)
{
    mqtt_inflight *f = hm_calloc(1, sizeof *f);

    if (window == 0)
        window = 1;
    if (window > 65535)
        window = 65535;
    f->window = window;
    f->queue_limit = queue_limit;
    f->release = release;
    f->out = hm_calloc(window, sizeof *f->out);
    return f;
}

static void release_item(mqtt_inflight *f, void *item)
{
    if (item && f->release)
        f->release(item);
}

void mqtt_inflight_clear(mqtt_inflight *f)
{
    for (size_t i = 0; i < f->out_count; i++)
        release_item(f, f->out[i].item);
    f->out_count = 0;
    for (size_t i = 0; i < f->queued_count; i++)
        release_item(f, f->ring[(f->head + i) % f->ring_cap].item);
    f->queued_count = 0;
    f->head = 0;
}

void mqtt_inflight_destroy(mqtt_inflight *f)
{
    if (!f)
        return;
    mqtt_inflight_clear(f);
    hm_free(f->ring);
    hm_free(f->out);
    hm_free(f);
}

static bool pid_in_use(const mqtt_inflight *f, uint16_t pid)
{
    for (size_t i = 0; i < f->out_count; i++)
        if (f->out[i].pid == pid)
            return true;
    return false;
}

/* The next id not in the window. Terminates: the window holds fewer than
 * 65535 entries whenever this is called (it has room). */
static uint16_t take_pid(mqtt_inflight *f)
{
    do {
        f->last_pid = f->last_pid == 65535 ? 1 : (uint16_t)(f->last_pid + 1);
    } while (pid_in_use(f, f->last_pid));
    return f->last_pid;
}

static uint16_t enter_window(mqtt_inflight *f, void *item, uint8_t qos)
{
    out_entry *e = &f->out[f->out_count++];

    e->item = item;
    e->qos = qos;
    e->pid = take_pid(f);
    e->state = qos == 1 ? MQTT_OUT_WAIT_PUBACK : MQTT_OUT_WAIT_PUBREC;
    return e->pid;
}

static void grow_ring(mqtt_inflight *f)
{
    size_t cap = f->ring_cap ? f->ring_cap * 2 : 16;
    queued *ring = hm_alloc(cap * sizeof *ring);

    for (size_t i = 0; i < f->queued_count; i++)
        ring[i] = f->ring[(f->head + i) % f->ring_cap];
    hm_free(f->ring);
    f->ring = ring;
    f->ring_cap = cap;
    f->head = 0;
}

mqtt_offer mqtt_inflight_offer(mqtt_inflight *f, void *item, uint8_t qos,
                               bool online, uint16_t *pid_out)
{
    if (online && f->queued_count == 0 && f->out_count < f->window) {
        *pid_out = enter_window(f, item, qos);
        return MQTT_OFFER_SEND;
    }
    if (f->queue_limit && f->queued_count >= f->queue_limit)
        return MQTT_OFFER_DROPPED;
    if (f->queued_count == f->ring_cap)
        grow_ring(f);
    f->ring[(f->head + f->queued_count++) % f->ring_cap] =
        (queued){.item = item, .qos = qos};
    return MQTT_OFFER_QUEUED;
}

bool mqtt_inflight_next(mqtt_inflight *f, void **item_out, uint8_t *qos_out,
                        uint16_t *pid_out)
{
    queued q;

    if (f->queued_count == 0 || f->out_count >= f->window)
        return false;
    q = f->ring[f->head];
    f->head = (f->head + 1) % f->ring_cap;
    f->queued_count--;
    *pid_out = enter_window(f, q.item, q.qos);
    *item_out = q.item;
    *qos_out = q.qos;
    return true;
}

static out_entry *find(mqtt_inflight *f, uint16_t pid)
{
    for (size_t i = 0; i < f->out_count; i++)
        if (f->out[i].pid == pid)
            return &f->out[i];
    return NULL;
}

static void remove_entry(mqtt_inflight *f, out_entry *e)
{
    size_t i = (size_t)(e - f->out);

    release_item(f, e->item);
    memmove(&f->out[i], &f->out[i + 1],
            (f->out_count - i - 1) * sizeof *f->out);
    f->out_count--;
}

hm_err mqtt_inflight_puback(mqtt_inflight *f, uint16_t pid)
{
    out_entry *e = find(f, pid);

    if (!e || e->state != MQTT_OUT_WAIT_PUBACK)
        return HM_ENOTFOUND;
    remove_entry(f, e);
    return HM_OK;
}

hm_err mqtt_inflight_pubrec(mqtt_inflight *f, uint16_t pid)
{
    out_entry *e = find(f, pid);

    if (!e || e->state == MQTT_OUT_WAIT_PUBACK)
        return HM_ENOTFOUND;
    if (e->state == MQTT_OUT_WAIT_PUBREC) {
        release_item(f, e->item);
        e->item = NULL;
        e->state = MQTT_OUT_WAIT_PUBCOMP;
    }
    return HM_OK;
}

hm_err mqtt_inflight_pubcomp(mqtt_inflight *f, uint16_t pid)
{
    out_entry *e = find(f, pid);

    if (!e || e->state != MQTT_OUT_WAIT_PUBCOMP)
        return HM_ENOTFOUND;
    remove_entry(f, e);
    return HM_OK;
}

void mqtt_inflight_each(const mqtt_inflight *f, mqtt_inflight_fn fn,
                        void *arg)
{
    for (size_t i = 0; i < f->out_count; i++) {
        const out_entry *e = &f->out[i];

        fn(arg, e->item, e->qos, e->pid, (mqtt_out_state)e->state);
    }
}

size_t mqtt_inflight_count(const mqtt_inflight *f)
{
    return f->out_count;
}

size_t mqtt_inflight_queued(const mqtt_inflight *f)
{
    return f->queued_count;
}

/* ------------------------------------------------- inbound QoS 2 ids */

struct mqtt_pidset {
    uint16_t *ids; /* sorted ascending */
    size_t count, cap;
};

mqtt_pidset *mqtt_pidset_create(void)
{
    return hm_calloc(1, sizeof(mqtt_pidset));
}

void mqtt_pidset_destroy(mqtt_pidset *s)
{
    if (!s)
        return;
    hm_free(s->ids);
    hm_free(s);
}

/* The index of the first id >= pid. */
static size_t lower_bound(const mqtt_pidset *s, uint16_t pid)
{
    size_t lo = 0, hi = s->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (s->ids[mid] < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool mqtt_pidset_contains(const mqtt_pidset *s, uint16_t pid)
{
    size_t i = lower_bound(s, pid);

    return i < s->count && s->ids[i] == pid;
}

bool mqtt_pidset_add(mqtt_pidset *s, uint16_t pid)
{
    size_t i = lower_bound(s, pid);

    if (i < s->count && s->ids[i] == pid)
        return false;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->ids = hm_realloc(s->ids, s->cap * sizeof *s->ids);
    }
    memmove(&s->ids[i + 1], &s->ids[i], (s->count - i) * sizeof *s->ids);
    s->ids[i] = pid;
    s->count++;
    return true;
}

bool mqtt_pidset_remove(mqtt_pidset *s, uint16_t pid)
{
    size_t i = lower_bound(s, pid);

    if (i >= s->count || s->ids[i] != pid)
        return false;
    memmove(&s->ids[i], &s->ids[i + 1], (s->count - i - 1) * sizeof *s->ids);
    s->count--;
    return true;
}

size_t mqtt_pidset_count(const mqtt_pidset *s)
{
    return s->count;
}
