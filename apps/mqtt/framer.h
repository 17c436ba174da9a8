/* apps/mqtt/framer.h: turns a connection's byte stream into whole MQTT
 * packets.
 *
 * TCP delivers bytes, not packets: one read may end in the middle of a
 * fixed header, or hold a hundred small PUBLISHes. The framer buffers what
 * each read returned and hands out complete packets (views into its
 * buffer) for mqtt_decode(). The key decision is that the size limit is
 * applied as soon as a fixed header is complete, before the body arrives,
 * so a peer announcing a 256 MB packet is refused after 5 bytes and the
 * buffer never holds more than one partial packet of at most the limit. */
#ifndef HM_APPS_MQTT_FRAMER_H
#define HM_APPS_MQTT_FRAMER_H

#include "apps/mqtt/codec.h"

/* An incremental framer: a connection pushes what each read returned, and
 * pulls out complete packets, so reads split at any byte and many packets
 * in one read both work. It buffers at most one incomplete packet, which is
 * never larger than the limit. Not thread-safe: one owner. */
typedef struct mqtt_framer mqtt_framer;

/* Returns owned; never NULL. Borrows `limits` (NULL: protocol maxima); its
 * values are copied. */
mqtt_framer *mqtt_framer_create(const mqtt_limits *limits);
/* Accepts NULL. */
void mqtt_framer_destroy(mqtt_framer *f);
/* Append `len` bytes (borrowed; copied). Invalidates the packets returned
 * by mqtt_framer_next() so far. */
void mqtt_framer_push(mqtt_framer *f, const void *data, size_t len);
/* The next complete packet: on HM_OK writes a view of its bytes (fixed
 * header included) to `*packet_out`, returns borrowed until the next
 * mqtt_framer_push() or mqtt_framer_destroy(). Errors: HM_EAGAIN (no
 * complete packet buffered), HM_EPROTO, HM_ETOOBIG as for mqtt_frame();
 * errors are sticky (the stream cannot be resynchronised). */
hm_err mqtt_framer_next(mqtt_framer *f, mqtt_bytes *packet_out,
                        mqtt_fault *why);
/* Bytes buffered and not yet returned as packets. */
size_t mqtt_framer_pending(const mqtt_framer *f);

#endif
