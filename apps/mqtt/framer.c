/* apps/mqtt/framer.c: the incremental framer over mqtt_frame().
 *
 * One growable buffer (inbuf_impl.h): [start, end) holds bytes pushed and
 * not yet handed out. Packets handed out stay valid until the next push,
 * which is when the buffer compacts (memmove of the partial tail to the
 * front), so a caller may pull every complete packet of one read and
 * decode each in place. */
#include "apps/mqtt/framer.h"
#include "apps/mqtt/inbuf_impl.h"

#include "runtime/alloc.h"

#include <string.h>

struct mqtt_framer {
    mqtt_limits limits;
    mqtt_inbuf in; /* start: the first byte not yet returned as a packet */
    hm_err sticky;
    mqtt_fault sticky_why;
};

mqtt_framer *mqtt_framer_create(const mqtt_limits *limits)
{
    mqtt_framer *f = hm_calloc(1, sizeof *f);
    if (limits)
        f->limits = *limits;
    f->sticky = HM_OK;
    return f;
}

void mqtt_framer_destroy(mqtt_framer *f)
{
    if (!f)
        return;
    mqtt_inbuf_fini(&f->in);
    hm_free(f);
}

void mqtt_framer_push(mqtt_framer *f, const void *data, size_t len)
{
    if (f->sticky != HM_OK || len == 0)
        return;
    /* Returned packets are dead now, so the buffer holds at most one
     * partial packet plus this read. */
    mqtt_inbuf_push(&f->in, data, len);
}

hm_err mqtt_framer_next(mqtt_framer *f, mqtt_bytes *packet_out, mqtt_fault *why)
{
    size_t packet_len;
    hm_err err;

    if (f->sticky != HM_OK) {
        if (why)
            *why = f->sticky_why;
        return f->sticky;
    }
    err = mqtt_frame(f->in.buf + f->in.start, f->in.end - f->in.start,
                     &f->limits, &packet_len, &f->sticky_why);
    if (err == HM_EAGAIN)
        return HM_EAGAIN;
    if (err != HM_OK) {
        f->sticky = err;
        if (why)
            *why = f->sticky_why;
        return err;
    }
    packet_out->ptr = f->in.buf + f->in.start;
    packet_out->len = packet_len;
    f->in.start += packet_len;
    return HM_OK;
}

size_t mqtt_framer_pending(const mqtt_framer *f)
{
    return f->in.end - f->in.start;
}
