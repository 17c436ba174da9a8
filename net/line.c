/* net/line.c: the line framer.
 *
 * One memchr over the bytes not scanned before: the `resume` hint makes a
 * line that arrives one byte per read cost O(n) in total, not O(n^2). The
 * limit is checked on the bytes in hand, never on a length the peer claims,
 * so the reader buffers at most max_line_len + 2 bytes of one line. */
#include "net/line.h"

#include <string.h>

static size_t line_limit(const void *arg)
{
    const hm_line_config *cfg = arg;

    if (cfg && cfg->max_line_len)
        return cfg->max_line_len;
    return HM_NET_MAX_LINE;
}

hm_err hm_line_next(const void *arg, const uint8_t *buf, size_t len,
                    size_t *resume, hm_frame *out)
{
    size_t max = line_limit(arg);
    size_t window = len < max + 2 ? len : max + 2; /* payload + "\r\n" */
    size_t from = *resume < window ? *resume : window;
    const uint8_t *nl = memchr(buf + from, '\n', window - from);
    size_t payload;

    if (!nl) {
        if (len >= max + 2)
            return HM_ETOOBIG;
        *resume = len;
        return HM_EAGAIN;
    }
    payload = (size_t)(nl - buf);
    if (payload > 0 && buf[payload - 1] == '\r')
        payload--;
    if (payload > max)
        return HM_ETOOBIG;
    out->offset = 0;
    out->len = payload;
    out->consumed = (size_t)(nl - buf) + 1;
    *resume = 0;
    return HM_OK;
}

void hm_line_framer_init(hm_framer *out, const hm_line_config *cfg)
{
    out->name = "line";
    out->next = hm_line_next;
    out->arg = cfg;
    out->max_frame_len = line_limit(cfg) + 2;
}
