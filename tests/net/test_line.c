/* tests/net/test_line.c: the line framer and the frame reader, pure. */
#include "net/frame.h"
#include "net/line.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Drains every complete frame from `r` into `out` as "frame|frame|";
 * returns the reader's last status (HM_EAGAIN when simply out of bytes). */
static hm_err drain(hm_frame_reader *r, char *out, size_t cap)
{
    const uint8_t *f;
    size_t len;
    hm_err err;

    while ((err = hm_frame_reader_next(r, &f, &len)) == HM_OK) {
        size_t used = strlen(out);

        cr_assert_lt(used + len + 2, cap);
        memcpy(out + used, f, len);
        out[used + len] = '|';
        out[used + len + 1] = '\0';
    }
    return err;
}

Test(line, frame_is_the_bytes_before_the_newline)
{
    const uint8_t in[] = "hello\nrest";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(NULL, in, 10, &resume, &f), HM_OK);
    cr_assert_eq(f.offset, 0);
    cr_assert_eq(f.len, 5);
    cr_assert_eq(f.consumed, 6);
}

Test(line, incomplete_line_asks_for_more_and_advances_the_hint)
{
    const uint8_t in[] = "partial";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(NULL, in, 7, &resume, &f), HM_EAGAIN);
    cr_assert_eq(resume, 7);
}

Test(line, carriage_return_before_newline_is_dropped)
{
    const uint8_t in[] = "a\r\n";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(NULL, in, 3, &resume, &f), HM_OK);
    cr_assert_eq(f.len, 1);
    cr_assert_eq(f.consumed, 3);
}

Test(line, empty_line_is_an_empty_frame)
{
    const uint8_t in[] = "\n";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(NULL, in, 1, &resume, &f), HM_OK);
    cr_assert_eq(f.len, 0);
    cr_assert_eq(f.consumed, 1);
}

Test(line, line_of_exactly_the_limit_is_accepted)
{
    hm_line_config cfg = {.max_line_len = 4};
    const uint8_t in[] = "abcd\r\n";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(&cfg, in, 6, &resume, &f), HM_OK);
    cr_assert_eq(f.len, 4);
}

Test(line, line_one_byte_over_the_limit_is_too_big)
{
    hm_line_config cfg = {.max_line_len = 4};
    const uint8_t in[] = "abcde\n";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(&cfg, in, 6, &resume, &f), HM_ETOOBIG);
}

Test(line, unterminated_line_past_the_limit_is_too_big_without_a_newline)
{
    hm_line_config cfg = {.max_line_len = 4};
    const uint8_t in[] = "abcdef";
    size_t resume = 0;
    hm_frame f;

    cr_assert_eq(hm_line_next(&cfg, in, 6, &resume, &f), HM_ETOOBIG);
}

Test(line, default_limit_is_one_mebibyte)
{
    hm_framer fr;

    hm_line_framer_init(&fr, NULL);
    cr_assert_eq(fr.max_frame_len, 1024u * 1024u + 2);
}

Test(frame_reader, many_lines_in_one_read_come_out_in_order)
{
    hm_framer fr;
    hm_frame_reader *r;
    char out[256] = "";
    const char *in = "one\ntwo\r\n\nthree\nfour";

    hm_line_framer_init(&fr, NULL);
    r = hm_frame_reader_create(&fr);
    hm_frame_reader_feed(r, (const uint8_t *)in, strlen(in));
    cr_assert_eq(drain(r, out, sizeof out), HM_EAGAIN);
    cr_assert_str_eq(out, "one|two||three|");
    cr_assert_eq(hm_frame_reader_buffered(r), 4);
    hm_frame_reader_destroy(r);
}

Test(frame_reader, trim_keeps_a_partial_frame_and_frees_an_empty_buffer)
{
    hm_framer fr;
    hm_frame_reader *r;
    char out[256] = "";

    hm_line_framer_init(&fr, NULL);
    r = hm_frame_reader_create(&fr);
    hm_frame_reader_feed(r, (const uint8_t *)"one\ntw", 6);
    drain(r, out, sizeof out);
    hm_frame_reader_trim(r); /* "tw" is unfinished: kept */
    hm_frame_reader_feed(r, (const uint8_t *)"o\n", 2);
    drain(r, out, sizeof out);
    cr_assert_str_eq(out, "one|two|");
    hm_frame_reader_trim(r); /* empty: freed, and reading goes on */
    cr_assert_eq(hm_frame_reader_buffered(r), 0);
    hm_frame_reader_feed(r, (const uint8_t *)"three\n", 6);
    drain(r, out, sizeof out);
    cr_assert_str_eq(out, "one|two|three|");
    hm_frame_reader_destroy(r);
}

Test(frame_reader, lines_split_at_every_byte_position_reassemble)
{
    const char *in = "{\"v\":1,\"type\":\"ping\"}\nsecond line\r\nx\n";
    size_t n = strlen(in);
    hm_framer fr;

    hm_line_framer_init(&fr, NULL);
    for (size_t cut1 = 0; cut1 <= n; cut1++) {
        for (size_t cut2 = cut1; cut2 <= n; cut2++) {
            hm_frame_reader *r = hm_frame_reader_create(&fr);
            char out[256] = "";

            hm_frame_reader_feed(r, (const uint8_t *)in, cut1);
            drain(r, out, sizeof out);
            hm_frame_reader_feed(r, (const uint8_t *)in + cut1, cut2 - cut1);
            drain(r, out, sizeof out);
            hm_frame_reader_feed(r, (const uint8_t *)in + cut2, n - cut2);
            cr_assert_eq(drain(r, out, sizeof out), HM_EAGAIN);
            cr_assert_str_eq(out, "{\"v\":1,\"type\":\"ping\"}|second line|x|",
                             "cuts at %zu and %zu", cut1, cut2);
            hm_frame_reader_destroy(r);
        }
    }
}

Test(frame_reader, one_byte_per_read_reassembles_a_long_line)
{
    hm_framer fr;
    hm_frame_reader *r;
    size_t n = 100000;
    char *line = malloc(n + 1);
    const uint8_t *f;
    size_t len;

    memset(line, 'a', n);
    line[n] = '\n';
    hm_line_framer_init(&fr, NULL);
    r = hm_frame_reader_create(&fr);
    for (size_t i = 0; i < n; i++) {
        hm_frame_reader_feed(r, (const uint8_t *)line + i, 1);
        cr_assert_eq(hm_frame_reader_next(r, &f, &len), HM_EAGAIN);
    }
    hm_frame_reader_feed(r, (const uint8_t *)line + n, 1);
    cr_assert_eq(hm_frame_reader_next(r, &f, &len), HM_OK);
    cr_assert_eq(len, n);
    hm_frame_reader_destroy(r);
    free(line);
}

Test(frame_reader, over_long_line_is_a_sticky_error_and_memory_stays_bounded)
{
    hm_line_config cfg = {.max_line_len = 1000};
    hm_framer fr;
    hm_frame_reader *r;
    uint8_t chunk[512];
    const uint8_t *f;
    size_t len, taken = 0;
    hm_err err = HM_EAGAIN;

    memset(chunk, 'z', sizeof chunk);
    hm_line_framer_init(&fr, &cfg);
    r = hm_frame_reader_create(&fr);
    for (int i = 0; i < 100 && err == HM_EAGAIN; i++) {
        taken += hm_frame_reader_feed(r, chunk, sizeof chunk);
        err = hm_frame_reader_next(r, &f, &len);
    }
    cr_assert_eq(err, HM_ETOOBIG);
    cr_assert_leq(taken, 1002 + sizeof chunk);
    hm_frame_reader_feed(r, (const uint8_t *)"\n", 1);
    cr_assert_eq(hm_frame_reader_next(r, &f, &len), HM_ETOOBIG);
    hm_frame_reader_destroy(r);
}
