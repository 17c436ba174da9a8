/* fuzz/fuzz_line.c: libFuzzer target for the line framer and frame reader.
 *
 * The first input byte picks a line limit (so short limits are exercised
 * too) and a chunk size; the rest is fed to a reader in chunks, draining
 * frames between feeds, exactly as a connection does. Checks the invariants
 * a connection relies on: every frame is within the limit and holds no
 * newline, the bytes buffered never exceed the framer's bound plus one read,
 * and an error is sticky. */
#include "net/frame.h"
#include "net/line.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_line_config cfg;
    hm_framer fr;
    hm_frame_reader *r;
    size_t chunk, pos = 1;
    hm_err err = HM_EAGAIN;

    if (size < 1)
        return 0;
    cfg.max_line_len = 1 + (data[0] & 0x3f);
    chunk = 1 + (data[0] >> 6) * 7;
    hm_line_framer_init(&fr, &cfg);
    r = hm_frame_reader_create(&fr);
    while (pos < size && (err == HM_EAGAIN || err == HM_OK)) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        const uint8_t *f;
        size_t len;

        pos += hm_frame_reader_feed(r, data + pos, n);
        while ((err = hm_frame_reader_next(r, &f, &len)) == HM_OK) {
            check(len <= cfg.max_line_len);
            check(memchr(f, '\n', len) == NULL);
        }
        check(hm_frame_reader_buffered(r) <= fr.max_frame_len + 4096);
    }
    if (err != HM_EAGAIN && err != HM_OK) {
        const uint8_t *f;
        size_t len;

        check(err == HM_ETOOBIG);
        check(hm_frame_reader_next(r, &f, &len) == err);
    }
    hm_frame_reader_destroy(r);
    return 0;
}
