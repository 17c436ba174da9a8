/* fuzz/fuzz_runtime_store_redis.c: libFuzzer target for the runtime's
 * Redis store (runtime/store_redis.c) reading replies it did not expect.
 *
 * As fuzz_mqtt_persist_redis.c, the target plays the server: byte 0 picks
 * what the runtime does (load a state, list the reminders as the runtime
 * does at start, or save, remove, then load and list), the rest is the
 * server's whole answer as RESP bytes, queued in a socket pair whose other
 * end the store reads through hiredis (hm_store_open_redis_fd). The answer
 * can be anything: nested arrays where strings belong, nils, integers,
 * huge "*N" or "$N" headers, odd element counts, truncation.
 * Checked (the contract the runtime relies on, runtime/durable.c): no
 * sanitizer report, leak or hang; a call ends in HM_OK, HM_ENOTFOUND or
 * HM_ESTORE; loaded bytes are NULL exactly when empty and are, byte for
 * byte, a bulk string the server sent; every reminder listed has a
 * receiver of 1..HM_ADDR_MAX_LEN bytes and a non-empty name, a due time
 * that is not negative as an int64 and a period that fits, and is, byte for
 * byte, a field ("<receiver>\0<name>") and value ("<due> <period>", as
 * reminder_put writes it) that the server sent side by side: nothing
 * truncated at a NUL, nothing read past a string, nothing reformatted. */
#include "runtime/runtime.h"
#include "runtime/store.h"

#include "fuzz/fuzz_common.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (64 * 1024) /* well under a socket pair's buffer */

static const uint8_t *answer; /* the server's bytes, for the oracles */
static size_t answer_len;

/* Where "$<len>\r\n<bytes>" and two more bytes start in the answer,
 * searching from `from`; or -1. (hiredis 0.14 skips the two bytes after a
 * bulk string without checking that they are "\r\n".) */
static long find_bulk(const void *bytes, size_t len, size_t from)
{
    char head[32];
    int hl = snprintf(head, sizeof head, "$%zu\r\n", len);
    size_t need = (size_t)hl + len + 2;

    for (size_t i = from; i + need <= answer_len; i++)
        if (memcmp(answer + i, head, (size_t)hl) == 0 &&
            (len == 0 || memcmp(answer + i + hl, bytes, len) == 0))
            return (long)i;
    return -1;
}

/* Whether the pair (field, value) was sent as two adjacent bulk strings. */
static bool sent_as_pair(const char *field, size_t field_len,
                         const char *value)
{
    size_t vlen = strlen(value);
    char head[32];
    int hl = snprintf(head, sizeof head, "$%zu\r\n", field_len);

    for (long at = find_bulk(field, field_len, 0); at >= 0;
         at = find_bulk(field, field_len, (size_t)at + 1)) {
        size_t next = (size_t)at + (size_t)hl + field_len + 2;
        if (find_bulk(value, vlen, next) == (long)next)
            return true;
    }
    return false;
}

static void on_reminder(void *arg, const hm_store_reminder *r)
{
    char field[2 * HM_ADDR_MAX_LEN + 2], value[48];
    size_t rl, nl;

    (void)arg;
    check(r->receiver && r->name);
    rl = strlen(r->receiver);
    nl = strlen(r->name);
    check(rl >= 1 && rl <= HM_ADDR_MAX_LEN && nl >= 1 &&
          rl + nl + 1 <= sizeof field);
    check(r->due_unix_ms <= INT64_MAX);
    memcpy(field, r->receiver, rl + 1);
    memcpy(field + rl + 1, r->name, nl);
    snprintf(value, sizeof value, "%" PRIu64 " %" PRIu32, r->due_unix_ms,
             r->period_ms);
    check(sent_as_pair(field, rl + 1 + nl, value));
}

static void load(hm_store *s, const char *key)
{
    void *bytes = NULL;
    size_t len = 0;
    hm_err e = hm_store_load(s, key, &bytes, &len);

    check(e == HM_OK || e == HM_ENOTFOUND || e == HM_ESTORE);
    if (e == HM_OK) {
        check((len == 0) == (bytes == NULL));
        check(find_bulk(bytes, len, 0) >= 0);
        free(bytes);
    }
}

static void each(hm_store *s)
{
    hm_err e = hm_store_reminder_each(s, on_reminder, NULL);

    check(e == HM_OK || e == HM_ESTORE);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    hm_log_set_sink(quiet_log, NULL); /* refusals are expected here */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_store *s;
    int sv[2];
    hm_err e;

    if (size < 1 || size > MAX_INPUT)
        return 0;
    answer = data + 1;
    answer_len = size - 1;
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    /* The whole answer is queued before the store asks; then end of file. */
    if (size > 1 && write(sv[1], data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    shutdown(sv[1], SHUT_WR);
    check(hm_store_open_redis_fd(sv[0], "k:", &s) == HM_OK);
    switch (data[0] & 3) {
    case 0:
        load(s, "a");
        break;
    case 1:
        each(s);
        break;
    case 2:
        load(s, "a");
        each(s);
        break;
    default:
        e = hm_store_save(s, "a", "x", 1);
        check(e == HM_OK || e == HM_ESTORE);
        e = hm_store_remove(s, "b");
        check(e == HM_OK || e == HM_ESTORE);
        load(s, "a");
        each(s);
        break;
    }
    hm_store_destroy(s);
    close(sv[1]);
    return 0;
}
