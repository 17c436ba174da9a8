/* apps/mqtt/inbuf_impl.h: the input buffer of an incremental decoder,
 * shared by the MQTT framer (framer.c) and the WebSocket decoder (ws.c).
 *
 * One growable buffer: [start, end) holds bytes pushed and not yet
 * consumed. What a decoder hands out points into it and stays valid until
 * the next push, which is when the buffer compacts (a memmove of the
 * unconsumed tail to the front), so a caller may take every complete unit
 * of one read and decode each in place. The decoder advances `start` as it
 * consumes; the buffer never holds more than one incomplete unit plus the
 * last read. No file outside apps/mqtt/ may include it (STYLE 2). */
#ifndef HM_APPS_MQTT_INBUF_IMPL_H
#define HM_APPS_MQTT_INBUF_IMPL_H

#include "runtime/alloc.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct mqtt_inbuf {
    uint8_t *buf; /* owned (hm_alloc); NULL until the first push */
    size_t cap;
    size_t start; /* first byte not yet consumed */
    size_t end;   /* one past the last byte pushed */
} mqtt_inbuf;

/* Appends `len` bytes of `data` (borrowed; copied), compacting first:
 * everything before `start` is dead once the caller pushes. */
static inline void mqtt_inbuf_push(mqtt_inbuf *b, const void *data, size_t len)
{
    if (b->start > 0) {
        memmove(b->buf, b->buf + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end < len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->end < len)
            cap *= 2;
        b->buf = hm_realloc(b->buf, cap);
        b->cap = cap;
    }
    memcpy(b->buf + b->end, data, len);
    b->end += len;
}

/* Frees the buffer (the struct is the caller's). */
static inline void mqtt_inbuf_fini(mqtt_inbuf *b)
{
    hm_free(b->buf);
    b->buf = NULL;
}

#endif
