/* fuzz/fuzz_mqtt_persist_redis.c: libFuzzer target for the MQTT broker's
 * reading of Redis replies (apps/mqtt/persist_redis.c).
 *
 * The target plays the Redis server: byte 0 picks what the broker does
 * (load, load as cluster node "n1", load a dead node's sessions, or a batch
 * and its commit then a load), the rest is the server's whole answer as
 * RESP bytes, written into a socket pair whose other end the store reads
 * through hiredis (mqtt_persist_open_redis_fd). The answer can be anything
 * a broken or hostile server sends: nested arrays where strings belong,
 * nils, integers, odd element counts, truncation. Checked: no sanitizer
 * report, no leak, no hang; every load error names the store; whatever
 * reaches the visitor is what its contract promises (a NUL-terminated
 * client id, a valid retained topic and QoS, an inbound id in 1..65535),
 * and each session record goes through the real record decoder. */
#include "apps/mqtt/persist_impl.h"
#include "apps/mqtt/session_state.h"
#include "apps/mqtt/topic.h"
#include "fuzz/fuzz_common.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (64 * 1024) /* well under a socket pair's buffer */

static const char *on_session(void *arg, const char *id, const uint8_t *rec,
                              size_t len)
{
    mqtt_session_state st;
    const char *why = NULL;

    (void)arg;
    if (!id || !rec)
        abort();
    (void)strlen(id); /* NUL-terminated, or ASan says so */
    if (mqtt_session_state_decode(rec, len, &st, &why) != HM_OK)
        return why ? why : "bad record";
    mqtt_session_state_fini(&st);
    return NULL;
}

static const char *on_retained(void *arg, const char *topic, size_t topic_len,
                               const uint8_t *payload, size_t payload_len,
                               uint8_t qos)
{
    (void)arg;
    if (!mqtt_topic_name_is_valid(topic, topic_len) || qos > 2 || !payload ||
        payload_len == 0)
        abort(); /* the store promised to check these */
    return NULL;
}

static const char *on_inbound(void *arg, const char *id, uint16_t pid)
{
    (void)arg;
    if (!id || pid == 0)
        abort();
    (void)strlen(id);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN); /* as the broker does (main.c) */
    hm_log_set_sink(quiet_log, NULL); /* refusals are expected here */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t record[] = {0};
    const mqtt_persist_visitor v = {on_session, on_retained, on_inbound,
                                    NULL};
    mqtt_persist *p;
    mqtt_file_error err;
    int sv[2];
    hm_err e = HM_OK;
    uint8_t mode;

    if (size < 1 || size > MAX_INPUT)
        return 0;
    mode = data[0] & 3;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    /* The whole answer is queued before the store asks; then end of file. */
    if (size > 1 && write(sv[1], data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    shutdown(sv[1], SHUT_WR);
    if (mqtt_persist_open_redis_fd(sv[0], "k:", mode == 1 ? "n1" : NULL,
                                   &p) != HM_OK)
        abort();
    memset(&err, 0, sizeof err);
    if (mode == 2) {
        e = mqtt_persist_load_node(p, "n2", &v, &err);
    } else if (mode == 3) {
        if (mqtt_persist_begin(p) == HM_OK &&
            mqtt_persist_put_session(p, "c1", record, sizeof record) == HM_OK &&
            mqtt_persist_put_retained(p, "a/b", 3, record, 1, 1) == HM_OK &&
            mqtt_persist_inbound(p, "c1", 7, true) == HM_OK)
            (void)mqtt_persist_commit(p);
        e = mqtt_persist_load(p, &v, &err);
    } else {
        e = mqtt_persist_load(p, &v, &err);
    }
    if (e != HM_OK && strncmp(err.text, "redis", 5) != 0)
        abort(); /* a load error names the store */
    mqtt_persist_close(p);
    close(sv[1]);
    return 0;
}
