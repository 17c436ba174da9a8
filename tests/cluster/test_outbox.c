/* tests/cluster/test_outbox.c: per-peer buffering, replay after a
 * reconnection, duplicate filtering and discard on death. A small model of
 * a link drives the outbox and the inbox together. */
#include "cluster/outbox.h"

#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static void push(hm_outbox *o, int n, uint64_t *seq)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "m%d", n);
    cr_assert_eq(hm_outbox_push(o, buf, (size_t)len, seq), HM_OK);
}

/* The receiver's end: what it delivered, in order. */
typedef struct {
    hm_inbox in;
    char got[64][16];
    int count;
} receiver;

/* Write everything unsent; `lose_after` lines arrive, the rest are lost
 * with the link (-1: all arrive). */
static void flush(hm_outbox *o, receiver *r, int lose_after)
{
    const char *line;
    size_t len;
    uint64_t seq;
    int n = 0;
    while (hm_outbox_next(o, &line, &len, &seq)) {
        if (lose_after >= 0 && n++ >= lose_after)
            continue;
        if (hm_inbox_accept(&r->in, seq))
            snprintf(r->got[r->count++], sizeof r->got[0], "%.*s", (int)len,
                     line);
    }
}

Test(outbox, messages_are_numbered_and_written_in_order)
{
    hm_outbox *o = hm_outbox_create(NULL);
    receiver r = {0};
    uint64_t seq;
    for (int i = 1; i <= 3; i++) {
        push(o, i, &seq);
        cr_expect_eq(seq, (uint64_t)i);
    }
    flush(o, &r, -1);
    cr_assert_eq(r.count, 3);
    cr_expect_str_eq(r.got[0], "m1");
    cr_expect_str_eq(r.got[2], "m3");
    hm_outbox_destroy(o);
}

Test(outbox, reconnection_replays_unacked_messages_without_duplicates)
{
    hm_outbox *o = hm_outbox_create(NULL);
    receiver r = {0};
    uint64_t seq, ack;
    for (int i = 1; i <= 6; i++)
        push(o, i, &seq);
    flush(o, &r, 4); /* m1..m4 arrive, m5 and m6 die with the link */
    cr_assert(hm_inbox_ack_due(&r.in, 1000, &ack));
    cr_expect_eq(ack, 4);
    cr_expect_eq(hm_outbox_ack(o, 2), HM_OK); /* only an older ack arrived */
    hm_outbox_rewind(o);                      /* the link came back */
    flush(o, &r, -1);                         /* m3..m6 go again */
    cr_assert_eq(r.count, 6, "delivered %d", r.count);
    for (int i = 0; i < 6; i++) {
        char want[16];
        snprintf(want, sizeof want, "m%d", i + 1);
        cr_expect_str_eq(r.got[i], want);
    }
    hm_outbox_destroy(o);
}

Test(outbox, ack_frees_what_it_covers)
{
    hm_outbox *o = hm_outbox_create(NULL);
    receiver r = {0};
    uint64_t seq;
    for (int i = 1; i <= 5; i++)
        push(o, i, &seq);
    flush(o, &r, -1);
    cr_expect_eq(hm_outbox_ack(o, 3), HM_OK);
    cr_expect_eq(hm_outbox_count(o), 2);
    cr_expect_eq(hm_outbox_bytes(o), 4);
    cr_expect_eq(hm_outbox_ack(o, 3), HM_OK, "a repeated ack is harmless");
    cr_expect_eq(hm_outbox_ack(o, 9), HM_EPROTO, "acks what was not sent");
    hm_outbox_destroy(o);
}

Test(outbox, full_outbox_refuses)
{
    hm_outbox *o = hm_outbox_create(
        &(hm_outbox_config){.max_count = 2, .max_bytes = 1000});
    uint64_t seq;
    push(o, 1, &seq);
    push(o, 2, &seq);
    char *line = hm_strdup("m3");
    cr_expect_eq(hm_outbox_push(o, line, 2, &seq), HM_EFULL);
    hm_free(line);
    hm_outbox *b =
        hm_outbox_create(&(hm_outbox_config){.max_count = 100, .max_bytes = 5});
    push(b, 1, &seq);
    line = hm_strdup("m222");
    cr_expect_eq(hm_outbox_push(b, line, 4, &seq), HM_EFULL);
    hm_free(line);
    hm_outbox_destroy(o);
    hm_outbox_destroy(b);
}

static void count_drop(void *arg, const char *line, size_t len, uint64_t seq)
{
    (*(int *)arg)++;
}

Test(outbox, discard_hands_over_every_held_message_once)
{
    hm_outbox *o = hm_outbox_create(NULL);
    receiver r = {0};
    uint64_t seq;
    int dropped = 0;
    for (int i = 1; i <= 5; i++)
        push(o, i, &seq);
    flush(o, &r, 2);
    cr_expect_eq(hm_outbox_discard(o, count_drop, &dropped), 5);
    cr_expect_eq(dropped, 5);
    cr_expect_eq(hm_outbox_count(o), 0);
    push(o, 6, &seq);
    cr_expect_eq(seq, 6, "numbering continues after a discard");
    hm_outbox_destroy(o);
}

Test(outbox, ring_grows_past_its_first_capacity_in_order)
{
    hm_outbox *o = hm_outbox_create(NULL);
    uint64_t seq, written = 0, acked = 0;
    const char *line;
    size_t len;
    /* Interleave pushes, writes and acks so the ring wraps and grows. */
    for (int i = 1; i <= 200; i++) {
        push(o, i, &seq);
        if (i % 3 == 0)
            while (hm_outbox_next(o, &line, &len, &seq))
                written = seq;
        if (i % 7 == 0) {
            cr_assert_eq(hm_outbox_ack(o, written), HM_OK);
            acked = written;
        }
    }
    hm_outbox_rewind(o);
    uint64_t expect = acked + 1;
    while (hm_outbox_next(o, &line, &len, &seq)) {
        char want[16];
        snprintf(want, sizeof want, "m%llu", (unsigned long long)expect);
        cr_assert_eq(seq, expect);
        cr_assert_eq(strncmp(line, want, len), 0);
        expect++;
    }
    cr_expect_eq(expect, 201);
    hm_outbox_destroy(o);
}

Test(outbox, inbox_acknowledges_in_batches)
{
    hm_inbox in = {0};
    uint64_t seq;
    cr_assert(hm_inbox_accept(&in, 1));
    cr_expect(hm_inbox_ack_due(&in, 1000, &seq));
    for (uint64_t s = 2; s <= 10; s++)
        cr_assert(hm_inbox_accept(&in, s));
    cr_expect_not(hm_inbox_ack_due(&in, 1050, &seq), "too soon, too few");
    cr_expect(hm_inbox_ack_due(&in, 1100, &seq));
    cr_expect_eq(seq, 10);
    for (uint64_t s = 11; s < 11 + HM_INBOX_ACK_EVERY; s++)
        cr_assert(hm_inbox_accept(&in, s));
    cr_expect(hm_inbox_ack_due(&in, 1101, &seq), "enough to acknowledge");
    cr_expect_not(hm_inbox_accept(&in, 5), "a replay is dropped");
}

/* Lines are copied into shared chunks: many lines (and one longer than a
 * chunk) survive acks that free the chunks behind them, a rewind replays
 * the same bytes, and discard frees the rest (ASan's leak check). */
Test(outbox, lines_keep_their_bytes_across_chunks)
{
    hm_outbox *o = hm_outbox_create(
        &(hm_outbox_config){.max_count = 100000, .max_bytes = 64u << 20});
    static char big[200 * 1024];
    char buf[64];
    const char *line;
    size_t len, count = 0;
    uint64_t seq, next = 1;

    memset(big, 'b', sizeof big);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5000; i++) {
            int n = snprintf(buf, sizeof buf, "line %d.%d", round, i);
            cr_assert_eq(hm_outbox_push(o, buf, (size_t)n, &seq), HM_OK);
            if (i == 2500)
                cr_assert_eq(hm_outbox_push(o, big, sizeof big, &seq), HM_OK);
        }
        for (int pass = 0; pass < 2; pass++) { /* a rewind replays */
            count = 0;
            while (hm_outbox_next(o, &line, &len, &seq)) {
                if (len == sizeof big) {
                    cr_assert_eq(memcmp(line, big, len), 0);
                    continue;
                }
                count++;
                cr_assert(len < sizeof buf && memcmp(line, "line ", 5) == 0,
                          "%.*s", (int)len, line);
            }
            cr_assert_eq(count, 5000);
            if (pass == 0)
                hm_outbox_rewind(o);
        }
        next += 5001;
        cr_assert_eq(hm_outbox_ack(o, next - 1000), HM_OK); /* most */
        cr_assert_eq(hm_outbox_count(o), 999);
        hm_outbox_rewind(o);
        count = 0;
        while (hm_outbox_next(o, &line, &len, &seq)) {
            int n = snprintf(buf, sizeof buf, "line %d.%d", round,
                             5000 - 999 + (int)count);
            cr_assert_eq(len, (size_t)n);
            cr_assert_eq(memcmp(line, buf, len), 0, "%.*s", (int)len, line);
            count++;
        }
        cr_assert_eq(hm_outbox_ack(o, next - 1), HM_OK); /* all */
        cr_assert_eq(hm_outbox_count(o), 0);
        cr_assert_eq(hm_outbox_bytes(o), 0);
    }
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(hm_outbox_push(o, big, 100, &seq), HM_OK);
    cr_assert_eq(hm_outbox_discard(o, NULL, NULL), 3000);
    hm_outbox_destroy(o);
}
