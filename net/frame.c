/* net/frame.c: the frame reader, a read buffer that yields whole frames.
 *
 * Bytes live in buf[start, end). Frames are handed out as pointers into the
 * buffer, so a frame costs no copy here; the buffer is compacted (memmove of
 * the unreturned tail) only when a read needs room at the end. The buffer
 * never grows past the framer's max_frame_len plus one read chunk: that is
 * the per-connection memory bound on the read side. */
#include "net/frame.h"

#include "runtime/alloc.h"

#include <string.h>

#define READ_CHUNK 4096u    /* first allocation and least read space */
#define SHRINK_ABOVE 65536u /* an empty buffer this large is released */

struct hm_frame_reader {
    const hm_framer *framer; /* borrowed */
    uint8_t *buf;            /* owned; NULL until the first read */
    size_t cap;
    size_t start;  /* first byte not yet returned as a frame */
    size_t end;    /* one past the last byte read */
    size_t resume; /* framer's hint, relative to start */
    hm_err err;    /* sticky framing error, HM_OK if none */
};

hm_frame_reader *hm_frame_reader_create(const hm_framer *framer)
{
    hm_frame_reader *r = hm_calloc(1, sizeof *r);

    r->framer = framer;
    r->err = HM_OK;
    return r;
}

void hm_frame_reader_destroy(hm_frame_reader *r)
{
    if (!r)
        return;
    hm_free(r->buf);
    hm_free(r);
}

static size_t reader_cap_limit(const hm_frame_reader *r)
{
    return r->framer->max_frame_len + READ_CHUNK;
}

uint8_t *hm_frame_reader_space(hm_frame_reader *r, size_t *avail)
{
    if (r->start == r->end) {
        r->start = r->end = 0;
        if (r->cap > SHRINK_ABOVE) {
            hm_free(r->buf);
            r->buf = NULL;
            r->cap = 0;
        }
    }
    if (!r->buf) {
        r->cap = READ_CHUNK;
        r->buf = hm_alloc(r->cap);
    }
    if (r->cap - r->end < READ_CHUNK && r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->cap - r->end < READ_CHUNK && r->cap < reader_cap_limit(r)) {
        size_t cap = r->cap * 2;

        if (cap > reader_cap_limit(r))
            cap = reader_cap_limit(r);
        r->buf = hm_realloc(r->buf, cap);
        r->cap = cap;
    }
    *avail = r->cap - r->end;
    return r->buf + r->end;
}

void hm_frame_reader_commit(hm_frame_reader *r, size_t len)
{
    HM_ASSERT(len <= r->cap - r->end);
    r->end += len;
}

size_t hm_frame_reader_feed(hm_frame_reader *r, const uint8_t *buf, size_t len)
{
    size_t taken = 0;

    while (taken < len) {
        size_t avail;
        uint8_t *space = hm_frame_reader_space(r, &avail);
        size_t n = len - taken < avail ? len - taken : avail;

        if (n == 0)
            break;
        memcpy(space, buf + taken, n);
        hm_frame_reader_commit(r, n);
        taken += n;
    }
    return taken;
}

hm_err hm_frame_reader_next(hm_frame_reader *r, const uint8_t **frame,
                            size_t *len)
{
    size_t have = r->end - r->start;
    hm_frame f;
    hm_err err;

    if (r->err != HM_OK)
        return r->err;
    if (have == 0)
        return HM_EAGAIN;
    err = r->framer->next(r->framer->arg, r->buf + r->start, have, &r->resume,
                          &f);
    if (err == HM_EAGAIN) {
        /* A framer that keeps asking for more past its own limit would let
         * a peer grow the buffer without bound: enforce the limit here. */
        if (have >= r->framer->max_frame_len)
            r->err = HM_ETOOBIG;
        return r->err == HM_OK ? HM_EAGAIN : r->err;
    }
    if (err != HM_OK) {
        r->err = err;
        return err;
    }
    HM_ASSERT(f.consumed > 0 && f.consumed <= have);
    HM_ASSERT(f.offset + f.len <= f.consumed);
    *frame = r->buf + r->start + f.offset;
    *len = f.len;
    r->start += f.consumed;
    r->resume = 0;
    return HM_OK;
}

size_t hm_frame_reader_buffered(const hm_frame_reader *r)
{
    return r->end - r->start;
}

void hm_frame_reader_trim(hm_frame_reader *r)
{
    if (r->start != r->end || !r->buf)
        return;
    hm_free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    r->start = r->end = 0;
}
