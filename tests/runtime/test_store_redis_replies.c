/* tests/runtime/test_store_redis_replies.c: the runtime's Redis store
 * (runtime/store_redis.c) against replies a broken or hostile server
 * sends, one test per bug fuzz/fuzz_runtime_store_redis.c found. The test
 * plays the server in-process: the whole answer is queued in a socket
 * pair whose other end the store reads (hm_store_open_redis_fd), so no
 * server, no port, and any bytes. */
#include "runtime/log.h"
#include "runtime/redis_bound.h"
#include "runtime/store.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int peer = -1; /* the server's end */

static void quiet(void *arg, hm_log_level level, const char *id,
                  const char *line)
{
    (void)arg;
    (void)level;
    (void)id;
    (void)line;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    hm_log_set_sink(quiet, NULL); /* the refusals log, by design */
}

static void teardown(void)
{
    if (peer >= 0)
        close(peer);
    peer = -1;
}

TestSuite(store_redis_replies, .init = setup, .fini = teardown,
          .timeout = 30);

/* A store whose server's whole answer is `len` bytes at `answer`. */
static hm_store *store_answering(const void *answer, size_t len)
{
    int sv[2];
    hm_store *s;

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(write(sv[1], answer, len), (ssize_t)len);
    shutdown(sv[1], SHUT_WR);
    peer = sv[1];
    cr_assert_eq(hm_store_open_redis_fd(sv[0], "k:", &s), HM_OK);
    return s;
}

typedef struct listed {
    int count;
    char text[8][96]; /* "receiver|name|due|period" */
} listed;

static void collect(void *arg, const hm_store_reminder *r)
{
    listed *l = arg;

    cr_assert_lt(l->count, 8);
    snprintf(l->text[l->count++], sizeof l->text[0], "%s|%s|%llu|%u",
             r->receiver, r->name, (unsigned long long)r->due_unix_ms,
             r->period_ms);
}

#define S(lit) lit, sizeof lit - 1

/* Appends `len` bytes at `p` to `buf` (at `*n`, room checked). */
static void put(char *buf, size_t cap, size_t *n, const void *p, size_t len)
{
    cr_assert_leq(*n + len, cap);
    memcpy(buf + *n, p, len);
    *n += len;
}

/* Appends a bulk string. */
static void put_bulk(char *buf, size_t cap, size_t *n, const void *p,
                     size_t len)
{
    char head[32];
    int hl = snprintf(head, sizeof head, "$%zu\r\n", len);

    put(buf, cap, n, head, (size_t)hl);
    put(buf, cap, n, p, len);
    put(buf, cap, n, "\r\n", 2);
}

/* A valid pair around each bad one, so the test sees the bad one skipped
 * and the others still listed. */
static void expect_skipped(const char *bad_field, size_t field_len,
                           const char *bad_value)
{
    char answer[2048];
    size_t n = 0;
    hm_store *s;
    listed l = {0};

    put(answer, sizeof answer, &n, "*6\r\n", 4);
    put_bulk(answer, sizeof answer, &n, "a\0b", 3);
    put_bulk(answer, sizeof answer, &n, "1 2", 3);
    put_bulk(answer, sizeof answer, &n, bad_field, field_len);
    put_bulk(answer, sizeof answer, &n, bad_value, strlen(bad_value));
    put_bulk(answer, sizeof answer, &n, "c\0d", 3);
    put_bulk(answer, sizeof answer, &n, "3 0", 3);
    s = store_answering(answer, n);
    cr_assert_eq(hm_store_reminder_each(s, collect, &l), HM_OK);
    cr_assert_eq(l.count, 2, "the bad entry was listed: %s",
                 l.count > 1 ? l.text[1] : "");
    cr_assert_str_eq(l.text[0], "a|b|1|2");
    cr_assert_str_eq(l.text[1], "c|d|3|0");
    hm_store_destroy(s);
}

/* Found first: "173330000000  1000" (two spaces) was read as a reminder;
 * sscanf also took a sign, a leading space and trailing junk. */
Test(store_redis_replies, a_reminder_value_not_in_our_form_is_skipped)
{
    static const char *const bad[] = {
        "173330000000  1000", "-1 0", "+5 0", " 5 0", "5 0 ", "5 0x",
        "05 0", "5", "5 ", "5 4294967296", "9223372036854775808 0",
        "99999999999999999999 0", ""};

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_skipped(S("r\0n"), bad[i]);
        teardown();
    }
}

Test(store_redis_replies, the_largest_due_time_and_period_are_read)
{
    static const char answer[] = "*2\r\n$3\r\nr\0n\r\n$30\r\n"
                                 "9223372036854775807 4294967295\r\n";
    hm_store *s = store_answering(answer, sizeof answer - 1);
    listed l = {0};

    cr_assert_eq(hm_store_reminder_each(s, collect, &l), HM_OK);
    cr_assert_eq(l.count, 1);
    cr_assert_str_eq(l.text[0], "r|n|9223372036854775807|4294967295");
    hm_store_destroy(s);
}

/* A second NUL cut the name short ("r\0n\0x" was r's reminder "n", the
 * same as the field "r\0n"); an empty receiver or name, or a receiver
 * longer than a runtime name, cannot be a reminder either. */
Test(store_redis_replies, a_reminder_field_not_receiver_nul_name_is_skipped)
{
    char longname[HM_ADDR_MAX_LEN + 3];

    expect_skipped(S("r\0n\0x"), "5 0");
    teardown();
    expect_skipped(S("\0n"), "5 0");
    teardown();
    expect_skipped(S("r\0"), "5 0");
    teardown();
    expect_skipped(S("rn"), "5 0");
    teardown();
    memset(longname, 'x', sizeof longname);
    longname[HM_ADDR_MAX_LEN + 1] = '\0'; /* receiver of 1025 bytes */
    expect_skipped(longname, sizeof longname, "5 0");
}

/* An answer to HGETALL that is not an array listed nothing and said
 * HM_OK: the runtime then started believing it had no reminders. */
Test(store_redis_replies, a_reminders_answer_that_is_not_an_array_fails)
{
    static const char *const answers[] = {":5\r\n", "$3\r\nabc\r\n",
                                          "+OK\r\n", "$-1\r\n"};

    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        hm_store *s = store_answering(answers[i], strlen(answers[i]));
        listed l = {0};

        cr_assert_eq(hm_store_reminder_each(s, collect, &l), HM_ESTORE,
                     "answer %zu", i);
        cr_assert_eq(l.count, 0);
        hm_store_destroy(s);
        teardown();
    }
}

/* "*277777777" made hiredis allocate 2 GB of element pointers before a
 * single element came. A bounded reader refuses the header at once; an
 * unbounded one takes it and waits for the elements. */
Test(store_redis_replies, an_array_header_above_the_bound_is_refused_at_once)
{
    static const char huge[] = "*277777777\r\n";
    char ok[32];
    int sv[2];
    redisContext *c;
    void *reply = NULL;

    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer = sv[1];
    c = redisConnectFd(sv[0]);
    cr_assert(c && !c->err);
    hm_redis_bound_replies(c);
    cr_assert_eq(redisReaderFeed(c->reader, huge, sizeof huge - 1),
                 REDIS_OK);
    cr_assert_eq(redisReaderGetReply(c->reader, &reply), REDIS_ERR);
    cr_assert_null(reply);
    redisFree(c);

    /* At the bound: taken (elements still to come). */
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(peer);
    peer = sv[1];
    c = redisConnectFd(sv[0]);
    hm_redis_bound_replies(c);
    snprintf(ok, sizeof ok, "*%d\r\n", HM_REDIS_MAX_ELEMENTS);
    cr_assert_eq(redisReaderFeed(c->reader, ok, strlen(ok)), REDIS_OK);
    cr_assert_eq(redisReaderGetReply(c->reader, &reply), REDIS_OK);
    cr_assert_null(reply);
    redisFree(c);

    /* Through the store: the listing fails, nothing is listed. */
    {
        hm_store *s = store_answering(huge, sizeof huge - 1);
        listed l = {0};

        cr_assert_eq(hm_store_reminder_each(s, collect, &l), HM_ESTORE);
        cr_assert_eq(l.count, 0);
        hm_store_destroy(s);
    }
}

/* The store over a socket has no address to dial: after the connection
 * is lost, calls fail (they do not dial NULL). */
Test(store_redis_replies, a_lost_socket_is_not_dialled_again)
{
    static const char answer[] = "$3\r\nabc\r\n";
    hm_store *s = store_answering(answer, sizeof answer - 1);
    void *bytes = NULL;
    size_t len = 0;

    cr_assert_eq(hm_store_load(s, "a", &bytes, &len), HM_OK);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(bytes, "abc", 3), 0);
    free(bytes);
    /* End of file now: the connection is dropped, then not re-made. */
    cr_assert_eq(hm_store_load(s, "a", &bytes, &len), HM_ESTORE);
    cr_assert_eq(hm_store_load(s, "a", &bytes, &len), HM_ESTORE);
    hm_store_destroy(s);
}
