/* net/frame.h: the pluggable framer interface and the frame reader.
 *
 * A framer turns a byte stream into frames. It is a pure function over the
 * bytes received so far: it never reads a socket, never allocates and keeps
 * no state of its own, so it can be unit-tested byte by byte and fuzzed. HP
 * plugs in the line framer (net/line.h); MQTT plugs in its own (fixed header
 * plus remaining length) through the same two fields.
 *
 * The frame reader is the buffer a connection reads into: bytes go in at the
 * end, whole frames come out at the front, in order. It is the only place
 * that knows how a frame can straddle two reads, and it is pure as well
 * (no I/O), so "a line split at every byte position" is a unit test. */
#ifndef HM_NET_FRAME_H
#define HM_NET_FRAME_H

#include "runtime/err.h"

#include <stddef.h>
#include <stdint.h>

/* Where one frame lies in the bytes given to a framer. */
typedef struct hm_frame {
    size_t offset;   /* first payload byte, from the start of the buffer */
    size_t len;      /* payload bytes (delimiters and headers excluded) */
    size_t consumed; /* bytes this frame takes from the stream, in total */
} hm_frame;

/* Looks for the first complete frame in buf[0, len). `arg` is the framer's
 * configuration (borrowed). `*resume` is an in/out hint: the first `*resume`
 * bytes are already known not to complete a frame (0 on a fresh buffer);
 * the framer may raise it when it returns HM_EAGAIN so the next call does
 * not rescan them. Pure: no I/O, no globals, never reads past buf[len-1].
 * Returns HM_OK and fills `out`, HM_EAGAIN (need more bytes), HM_ETOOBIG
 * (the frame being received is over the framer's limit) or HM_EPROTO
 * (malformed). After an error the stream cannot be resynchronised. */
typedef hm_err (*hm_framer_next_fn)(const void *arg, const uint8_t *buf,
                                    size_t len, size_t *resume, hm_frame *out);

typedef struct hm_framer {
    const char *name;       /* "line", "mqtt": for logs */
    hm_framer_next_fn next; /* required */
    const void *arg;        /* borrowed by whoever holds the framer */
    /* The largest number of bytes one frame can take from the stream
     * (consumed), so a reader knows how much it may have to buffer. */
    size_t max_frame_len;
} hm_framer;

/* ------------------------------------------------------------ the reader */

typedef struct hm_frame_reader hm_frame_reader;

/* Creates a reader for `framer` (borrowed for the reader's life). The buffer
 * is allocated on the first read and returned to a small size when it
 * empties, so an idle connection holds no large buffer. Returns owned. */
hm_frame_reader *hm_frame_reader_create(const hm_framer *framer);
/* Frees the reader. Accepts NULL. */
void hm_frame_reader_destroy(hm_frame_reader *r);

/* Space to read into: returns borrowed memory valid until the next call on
 * `r`, and its size in `*avail` (at least 1 unless the reader is holding a
 * frame over the limit, which next() reports first). */
uint8_t *hm_frame_reader_space(hm_frame_reader *r, size_t *avail);
/* Records that `len` bytes were written into the space. */
void hm_frame_reader_commit(hm_frame_reader *r, size_t len);
/* Copies up to `len` bytes in (borrowed): space() and commit() in a loop.
 * Returns the bytes taken, fewer than `len` only when the buffer is at its
 * bound (call next() to drain it, or to learn the framing error). */
size_t hm_frame_reader_feed(hm_frame_reader *r, const uint8_t *buf, size_t len);

/* The next complete frame: on HM_OK `*frame` (returns borrowed, valid until
 * the next call on `r`) and `*len` hold its payload. HM_EAGAIN: no complete
 * frame buffered. Any other error is the framer's and is sticky. */
hm_err hm_frame_reader_next(hm_frame_reader *r, const uint8_t **frame,
                            size_t *len);
/* Bytes buffered and not yet returned as frames. */
size_t hm_frame_reader_buffered(const hm_frame_reader *r);
/* Frees the read buffer if it holds no byte not yet returned as a frame (the
 * last frame returned by next() becomes invalid), so an idle connection
 * costs no read memory; the next space() allocates again. */
void hm_frame_reader_trim(hm_frame_reader *r);

#endif
