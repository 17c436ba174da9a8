/* net/line.h: the line framer, `\n`-terminated frames (HP v1's framing).
 *
 * A frame is the bytes before a `\n`; one `\r` right before the `\n` is
 * dropped too, so lines typed into nc or telnet frame the same way. The
 * limit counts payload bytes: a line longer than `max_line_len` is an error
 * (HM_ETOOBIG) as soon as max_line_len + 2 bytes have arrived without a
 * newline, so a peer cannot make us buffer more than that. Pure functions
 * only (STYLE 10). */
#ifndef HM_NET_LINE_H
#define HM_NET_LINE_H

#include "net/frame.h"

#define HM_NET_MAX_LINE (1024u * 1024u) /* default payload limit, bytes */

typedef struct hm_line_config {
    size_t max_line_len; /* payload bytes; 0 means HM_NET_MAX_LINE */
} hm_line_config;

/* The hm_framer_next_fn of the line framer; `arg` is a const
 * hm_line_config * (NULL: the defaults). */
hm_err hm_line_next(const void *arg, const uint8_t *buf, size_t len,
                    size_t *resume, hm_frame *out);

/* Fills `out` with a line framer configured by `cfg` (borrowed: it must
 * outlive the framer; NULL: the defaults). */
void hm_line_framer_init(hm_framer *out, const hm_line_config *cfg);

#endif
