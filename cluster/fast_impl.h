/* cluster/fast_impl.h: what the routed-message encoder (fast_encode.c) and
 * decoders (fast_decode.c) must agree on byte for byte: the head of an
 * acknowledgement line, which one writes and the other matches, and the
 * bytes a plain JSON string may not hold, which the encoder tests before
 * it skips escaping and the decoder stops its scan at. No file outside
 * cluster/ may include it (STYLE 2). */
#ifndef HM_CLUSTER_FAST_IMPL_H
#define HM_CLUSTER_FAST_IMPL_H

#include <stdbool.h>

/* An acknowledgement line up to its sequence number. */
#define ACK_HEAD                                                             \
    "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"cl.ack\",\"data\":{\"v\":1,"   \
    "\"t\":\"cl.ack\",\"seq\":"

/* Bytes that end a plain string's scan: its quote, or what it may not
 * hold (an escape, a control byte). */
static const bool plain_stop[256] = {
    [0 ... 0x1f] = true, ['"'] = true, ['\\'] = true,
};

#endif
