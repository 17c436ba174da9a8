/* apps/mqtt/put_impl.h: big-endian writers into a buffer sized beforehand,
 * shared by the packet encoder (codec.c) and the session record encoder
 * (session_state.c), which write the same integers and length-prefixed
 * strings the same way (MQTT 3.1.1 section 1.5: big-endian, a string is a
 * 16-bit length and its bytes).
 *
 * The caller computes the exact length first and allocates it; the writers
 * check nothing and the caller asserts at the end that the cursor moved by
 * that length. Static inline: both encoders are on hot paths (every
 * outgoing packet, every session save), and each call compiles to a store.
 * No file outside apps/mqtt/ may include it (STYLE 2). */
#ifndef HM_APPS_MQTT_PUT_IMPL_H
#define HM_APPS_MQTT_PUT_IMPL_H

#include "apps/mqtt/codec.h"

#include <stdint.h>
#include <string.h>

/* A write cursor; `pos` borrows the caller's buffer. */
typedef struct mqtt_put {
    uint8_t *pos;
} mqtt_put;

static inline void mqtt_put_u8(mqtt_put *w, uint8_t v)
{
    *w->pos++ = v;
}

static inline void mqtt_put_u16(mqtt_put *w, uint16_t v)
{
    mqtt_put_u8(w, (uint8_t)(v >> 8));
    mqtt_put_u8(w, (uint8_t)v);
}

static inline void mqtt_put_u32(mqtt_put *w, uint32_t v)
{
    mqtt_put_u16(w, (uint16_t)(v >> 16));
    mqtt_put_u16(w, (uint16_t)v);
}

/* `b`'s bytes as they are (`b.ptr` borrowed; may be NULL if `b.len` is 0). */
static inline void mqtt_put_raw(mqtt_put *w, mqtt_bytes b)
{
    if (b.len)
        memcpy(w->pos, b.ptr, b.len);
    w->pos += b.len;
}

/* A string: its 16-bit length, then its bytes (the caller checked that the
 * length fits). */
static inline void mqtt_put_field(mqtt_put *w, mqtt_bytes b)
{
    mqtt_put_u16(w, (uint16_t)b.len);
    mqtt_put_raw(w, b);
}

#endif
