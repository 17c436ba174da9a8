/* tests/apps/mqtt/test_persist_redis.c: how the Redis backend of the MQTT
 * store reads what a broken or hostile server answers. The test plays the
 * server: its whole answer (RESP bytes) is queued on one end of a socket
 * pair before the store asks, and the store reads the other end through
 * hiredis (mqtt_persist_open_redis_fd). Each case is a bug
 * fuzz/fuzz_mqtt_persist_redis.c found or guards: a reply of the wrong
 * type must be a load error naming the store, never a crash. */
#include "apps/mqtt/persist_impl.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct seen {
    int sessions, retained, inbound;
    uint16_t last_id;
} seen;

static const char *on_session(void *arg, const char *id, const uint8_t *rec,
                              size_t len)
{
    (void)id;
    (void)rec;
    (void)len;
    ((seen *)arg)->sessions++;
    return NULL;
}

static const char *on_retained(void *arg, const char *topic, size_t tlen,
                               const uint8_t *payload, size_t plen,
                               uint8_t qos)
{
    (void)topic;
    (void)tlen;
    (void)payload;
    (void)plen;
    (void)qos;
    ((seen *)arg)->retained++;
    return NULL;
}

static const char *on_inbound(void *arg, const char *id, uint16_t pid)
{
    (void)id;
    ((seen *)arg)->inbound++;
    ((seen *)arg)->last_id = pid;
    return NULL;
}

static int peer = -1;

/* A store whose server has already answered `resp` and then hung up. */
static mqtt_persist *store(const char *resp, const char *node)
{
    int sv[2];
    mqtt_persist *p = NULL;
    size_t len = strlen(resp);

    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(write(sv[1], resp, len), (ssize_t)len);
    shutdown(sv[1], SHUT_WR);
    peer = sv[1];
    cr_assert_eq(mqtt_persist_open_redis_fd(sv[0], "k:", node, &p), HM_OK);
    return p;
}

static hm_err load(const char *resp, const char *node, seen *s,
                   mqtt_file_error *err)
{
    mqtt_persist *p = store(resp, node);
    mqtt_persist_visitor v = {on_session, on_retained, on_inbound, s};
    hm_err e = mqtt_persist_load(p, &v, err);

    mqtt_persist_close(p);
    close(peer);
    return e;
}

Test(persist_redis, a_well_formed_store_loads)
{
    seen s = {0};
    mqtt_file_error err;

    cr_assert_eq(load("*2\r\n$2\r\nc1\r\n$1\r\nR\r\n"  /* sessions */
                      "*2\r\n$2\r\n12\r\n$5\r\n65535\r\n" /* inbound:c1 */
                      "*2\r\n$3\r\na/b\r\n$3\r\n\1hi\r\n", /* retained */
                      NULL, &s, &err),
                 HM_OK, "%s", err.text);
    cr_assert_eq(s.sessions, 1);
    cr_assert_eq(s.inbound, 2);
    cr_assert_eq(s.retained, 1);
}

/* Found by the fuzzer: a commit that lost the connection left it NULL and
 * the next load passed NULL to hiredis. */
Test(persist_redis, a_load_after_a_lost_commit_is_an_error)
{
    mqtt_persist *p = store("+OK\r\n+QUE", NULL);
    mqtt_persist_visitor v = {on_session, on_retained, on_inbound, NULL};
    mqtt_file_error err;
    static const uint8_t rec[] = {1};

    cr_assert_eq(mqtt_persist_begin(p), HM_OK);
    cr_assert_eq(mqtt_persist_put_session(p, "c1", rec, 1), HM_OK);
    cr_assert_eq(mqtt_persist_commit(p), HM_ESTORE);
    cr_assert_eq(mqtt_persist_load(p, &v, &err), HM_ESTORE);
    cr_assert(strncmp(err.text, "redis", 5) == 0, "%s", err.text);
    mqtt_persist_close(p);
    close(peer);
}

Test(persist_redis, a_session_that_is_not_a_string_is_refused)
{
    static const char *const bad[] = {
        "*2\r\n$-1\r\n$1\r\nR\r\n",     /* nil client id */
        "*2\r\n:5\r\n$1\r\nR\r\n",      /* integer client id */
        "*2\r\n$2\r\nc1\r\n*0\r\n",     /* array record */
        "*2\r\n*1\r\n:1\r\n$1\r\nR\r\n", /* nested array id */
    };

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        seen s = {0};
        mqtt_file_error err;

        cr_assert_eq(load(bad[i], NULL, &s, &err), HM_ESTORE, "case %zu", i);
        cr_assert(strstr(err.text, "not a string"), "%s", err.text);
        cr_assert_eq(s.sessions, 0);
    }
    /* The same in a cluster, where the ids go on into HMGET holder. */
    seen s = {0};
    mqtt_file_error err;
    cr_assert_eq(load("*2\r\n$-1\r\n$1\r\nR\r\n", "n1", &s, &err), HM_ESTORE);
}

Test(persist_redis, an_inbound_id_that_is_not_a_decimal_string_is_refused)
{
    static const char *const bad[] = {"$-1", ":7", "*0", "$5\r\n12abc",
                                      "$0\r\n", "$5\r\n65536", "$1\r\n0"};

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char resp[200];
        seen s = {0};
        mqtt_file_error err;

        snprintf(resp, sizeof resp, "*2\r\n$2\r\nc1\r\n$1\r\nR\r\n*1\r\n%s\r\n",
                 bad[i]);
        cr_assert_eq(load(resp, NULL, &s, &err), HM_ESTORE, "case %zu", i);
        cr_assert(strstr(err.text, "inbound QoS 2 id"), "%s", err.text);
        cr_assert_eq(s.inbound, 0);
    }
}

Test(persist_redis, a_retained_message_that_is_not_a_string_is_refused)
{
    seen s = {0};
    mqtt_file_error err;

    cr_assert_eq(load("*0\r\n*2\r\n$-1\r\n$3\r\n\1hi\r\n", NULL, &s, &err),
                 HM_ESTORE);
    cr_assert(strstr(err.text, "not a string"), "%s", err.text);
    cr_assert_eq(load("*0\r\n*2\r\n$3\r\na/b\r\n:3\r\n", NULL, &s, &err),
                 HM_ESTORE);
    cr_assert_eq(s.retained, 0);
}

Test(persist_redis, a_dead_nodes_holder_that_is_not_a_string_is_refused)
{
    mqtt_persist *p = store("*2\r\n$2\r\nc1\r\n*0\r\n", NULL);
    mqtt_persist_visitor v = {on_session, on_retained, on_inbound, NULL};
    mqtt_file_error err;

    cr_assert_eq(mqtt_persist_load_node(p, "", &v, &err), HM_ESTORE);
    cr_assert(strstr(err.text, "not a string"), "%s", err.text);
    mqtt_persist_close(p);
    close(peer);
}

/* A command Redis queued can still fail when EXEC runs it. */
Test(persist_redis, a_command_failing_inside_exec_fails_the_commit)
{
    mqtt_persist *p = store("+OK\r\n+QUEUED\r\n*1\r\n-WRONGTYPE no\r\n", NULL);
    static const uint8_t rec[] = {1};

    cr_assert_eq(mqtt_persist_begin(p), HM_OK);
    cr_assert_eq(mqtt_persist_put_session(p, "c1", rec, 1), HM_OK);
    cr_assert_eq(mqtt_persist_commit(p), HM_ESTORE);
    mqtt_persist_close(p);
    close(peer);
}

/* Found by the fuzzer: hiredis allocated an array's element pointers as
 * soon as it read "*N", so a server could make the broker ask for
 * gigabytes (under ASan, `make asan`, the allocation itself fails the
 * test). Now a load error. */
Test(persist_redis, a_huge_array_header_is_refused_before_it_is_allocated)
{
    static const char *const bad[] = {"*2147483647\r\n", "*277777777\r\n"};

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        seen s = {0};
        mqtt_file_error err;

        cr_assert_eq(load(bad[i], NULL, &s, &err), HM_ESTORE, "case %zu", i);
        cr_assert(strncmp(err.text, "redis", 5) == 0, "%s", err.text);
    }
}
