/* apps/mqtt/persist_redis.c: the broker's durable state in Redis, so the
 * persistent sessions of a cluster outlive the node that held them.
 *
 * Keys: the hash "<prefix>sessions" (client id -> session record), the
 * hash "<prefix>holder" (client id -> the cluster node that saved the
 * record last; absent outside a cluster), the hash "<prefix>retained"
 * (topic -> one QoS byte then the payload) and one set per client,
 * "<prefix>inbound:<client id>", of the inbound QoS 2 ids (decimal). The
 * holder is what a fail-over reads to find a dead node's sessions, and
 * what a restarting node reads to restore only its own (docs/adr/0160). The key decision is that a batch is one MULTI ... EXEC sent
 * as a pipeline: the commands are buffered by hiredis (redisAppendCommand)
 * and written with EXEC at commit, so a batch costs one round trip and is
 * applied whole or not at all. How durable a commit is depends on the
 * server (appendonly, appendfsync): Redis decides, as in docs/adr/0091. The
 * broker ignores SIGPIPE (main.c), so a reset connection is an error here,
 * not a dead process. A failed connection is made again by the next
 * batch. */
#include "apps/mqtt/persist_impl.h"

#include "apps/mqtt/topic.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/redis_bound.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MS 2000

typedef struct rd {
    redisContext *c; /* NULL while disconnected */
    char *host;
    int port;
    char *prefix;
    char *node; /* files saved sessions under it; NULL: no cluster */
    char *where;
    size_t queued; /* commands appended in this batch (MULTI included) */
} rd;

static hm_err rd_connect(rd *s, char *why, size_t len)
{
    struct timeval tv = {TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000};
    redisContext *c;

    if (!s->host) { /* mqtt_persist_open_redis_fd(): no address to dial */
        snprintf(why, len, "connection lost");
        return HM_ESTORE;
    }
    c = redisConnectWithTimeout(s->host, s->port, tv);

    if (!c || c->err) {
        snprintf(why, len, "cannot connect: %s",
                 c ? c->errstr : "out of memory");
        redisFree(c);
        return HM_ESTORE;
    }
    redisSetTimeout(c, tv);
    hm_redis_bound_replies(c); /* runtime/redis_bound.h */
    s->c = c;
    return HM_OK;
}

static hm_err rd_fail(rd *s, const char *what)
{
    HM_LOG_ERROR("MQTT-PERSIST", "%s: %s: %s", s->where, what,
                 s->c ? s->c->errstr : "not connected");
    redisFree(s->c);
    s->c = NULL;
    s->queued = 0;
    return HM_ESTORE;
}

static hm_err rd_begin(void *impl)
{
    rd *s = impl;
    char why[256];

    if (!s->c && rd_connect(s, why, sizeof why) != HM_OK) {
        HM_LOG_ERROR("MQTT-PERSIST", "%s: %s", s->where, why);
        return HM_ESTORE;
    }
    s->queued = 0;
    if (redisAppendCommand(s->c, "MULTI") != REDIS_OK)
        return rd_fail(s, "MULTI");
    s->queued++;
    return HM_OK;
}

static hm_err rd_put_session(void *impl, const char *client_id,
                             const uint8_t *record, size_t len)
{
    rd *s = impl;
    size_t id_len = strlen(client_id);
    int rc;

    if (record) {
        rc = redisAppendCommand(s->c, "HSET %ssessions %b %b", s->prefix,
                                client_id, id_len, record, len);
        s->queued++;
        if (rc == REDIS_OK && s->node) {
            rc = redisAppendCommand(s->c, "HSET %sholder %b %s", s->prefix,
                                    client_id, id_len, s->node);
            s->queued++;
        }
    } else {
        rc = redisAppendCommand(s->c, "HDEL %ssessions %b", s->prefix,
                                client_id, id_len);
        if (rc == REDIS_OK)
            rc = redisAppendCommand(s->c, "DEL %sinbound:%b", s->prefix,
                                    client_id, id_len);
        if (rc == REDIS_OK)
            rc = redisAppendCommand(s->c, "HDEL %sholder %b", s->prefix,
                                    client_id, id_len);
        s->queued += 3;
    }
    return rc == REDIS_OK ? HM_OK : rd_fail(s, "session");
}

static hm_err rd_put_retained(void *impl, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len,
                              uint8_t qos)
{
    rd *s = impl;
    uint8_t *value;
    int rc;

    if (payload_len == 0) {
        rc = redisAppendCommand(s->c, "HDEL %sretained %b", s->prefix, topic,
                                topic_len);
    } else {
        value = hm_alloc(payload_len + 1);
        value[0] = qos;
        memcpy(value + 1, payload, payload_len);
        rc = redisAppendCommand(s->c, "HSET %sretained %b %b", s->prefix,
                                topic, topic_len, value, payload_len + 1);
        hm_free(value);
    }
    s->queued++;
    return rc == REDIS_OK ? HM_OK : rd_fail(s, "retained");
}

static hm_err rd_inbound(void *impl, const char *client_id,
                         uint16_t packet_id, bool add)
{
    rd *s = impl;
    int rc = redisAppendCommand(s->c, add ? "SADD %sinbound:%s %u"
                                          : "SREM %sinbound:%s %u",
                                s->prefix, client_id, (unsigned)packet_id);

    s->queued++;
    return rc == REDIS_OK ? HM_OK : rd_fail(s, "inbound");
}

/* A reply is a Redis string (a bulk or status string, never nil): what
 * every key, field and value read here must be, whatever the server
 * sends (fuzz/fuzz_mqtt_persist_redis.c). */
static bool is_string(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

/* The first error among the answers to EXEC's commands, or NULL: a
 * command Redis queued can still fail when it runs (WRONGTYPE). */
static const char *exec_error(const redisReply *r)
{
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR)
            return r->element[i]->str;
    return NULL;
}

/* A decimal inbound packet id 1..65535, or 0. */
static uint16_t packet_id_of(const redisReply *r)
{
    unsigned long v = 0;

    if (!is_string(r) || r->len == 0 || r->len > 5)
        return 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(r->str[i] - '0');
    }
    return v <= 65535 ? (uint16_t)v : 0;
}

static hm_err rd_commit(void *impl)
{
    rd *s = impl;
    redisReply *reply = NULL;
    hm_err err = HM_OK;

    if (redisAppendCommand(s->c, "EXEC") != REDIS_OK)
        return rd_fail(s, "EXEC");
    /* MULTI and each command answer +OK/+QUEUED; EXEC answers the array. */
    for (size_t i = 0; i <= s->queued; i++) {
        if (redisGetReply(s->c, (void **)&reply) != REDIS_OK)
            return rd_fail(s, "commit");
        const char *why = reply->type == REDIS_REPLY_ERROR ? reply->str
                          : i < s->queued                   ? NULL
                          : reply->type != REDIS_REPLY_ARRAY ? "EXEC aborted"
                                                             : exec_error(reply);

        if (why) {
            HM_LOG_ERROR("MQTT-PERSIST", "%s: commit refused: %s", s->where,
                         why);
            err = HM_ESTORE;
        }
        freeReplyObject(reply);
    }
    s->queued = 0;
    return err;
}

static void rd_rollback(void *impl)
{
    rd *s = impl;

    /* Buffered commands cannot be taken back: drop the connection, so
     * nothing of the batch reaches the server. */
    if (s->c && s->queued) {
        redisFree(s->c);
        s->c = NULL;
    }
    s->queued = 0;
}

/* HGETALL `key`: the reply, or NULL with `err` set (and the connection
 * dropped if it failed). */
static redisReply *rd_hgetall(rd *s, const char *what, mqtt_file_error *err)
{
    redisReply *r = redisCommand(s->c, "HGETALL %s%s", s->prefix, what);

    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        mqtt_file_error_set(err, "%s: cannot read %s%s: %s", s->where,
                            s->prefix, what,
                            r ? (r->type == REDIS_REPLY_ERROR ? r->str
                                                              : "not a hash")
                              : s->c->errstr);
        if (r)
            freeReplyObject(r);
        if (s->c->err) { /* made again by the next use */
            redisFree(s->c);
            s->c = NULL;
        }
        return NULL;
    }
    return r;
}

static const char *load_inbound(rd *s, const mqtt_persist_visitor *v,
                                const char *id)
{
    redisReply *r = redisCommand(s->c, "SMEMBERS %sinbound:%s", s->prefix,
                                 id);
    const char *why = NULL;

    if (!r || r->type != REDIS_REPLY_ARRAY)
        why = "cannot read the inbound QoS 2 ids";
    for (size_t i = 0; !why && i < r->elements; i++) {
        uint16_t pid = packet_id_of(r->element[i]);

        why = pid == 0 ? "an inbound QoS 2 id out of range"
                       : v->inbound(v->arg, id, pid);
    }
    if (r)
        freeReplyObject(r);
    return why;
}

/* One stored session: its record, then its inbound ids. */
static const char *visit_session(rd *s, const mqtt_persist_visitor *v,
                                 const redisReply *k, const redisReply *val)
{
    char *id;
    const char *why;

    if (!is_string(k) || !is_string(val))
        return "a session that is not a string";
    id = hm_strndup(k->str, k->len);
    if (strlen(id) != k->len)
        why = "a client id with a NUL";
    else if (!(why = v->session(v->arg, id, (const uint8_t *)val->str,
                                val->len)))
        why = load_inbound(s, v, id);
    hm_free(id);
    return why;
}

/* HMGET `key` with the `count` fields found at keys[0], keys[stride], ...
 * (borrowed replies): an array aligned with them (nil where absent), or
 * NULL. */
static redisReply *rd_hmget(rd *s, const char *key, redisReply **keys,
                            size_t count, size_t stride)
{
    const char **argv = hm_alloc((count + 2) * sizeof *argv);
    size_t *argvlen = hm_alloc((count + 2) * sizeof *argvlen);
    size_t klen = strlen(s->prefix) + strlen(key) + 1;
    char *full = hm_alloc(klen);
    redisReply *r;

    snprintf(full, klen, "%s%s", s->prefix, key);
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = full;
    argvlen[1] = strlen(full);
    for (size_t i = 0; i < count; i++) {
        argv[i + 2] = keys[i * stride]->str;
        argvlen[i + 2] = keys[i * stride]->len;
    }
    r = redisCommandArgv(s->c, (int)(count + 2), argv, argvlen);
    hm_free(full);
    hm_free(argvlen);
    hm_free(argv);
    if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != count)) {
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

/* Every session in `r` (HGETALL sessions); in a cluster only those held
 * by this node or by nobody (a node that restarts takes back what no
 * other node took over; the rest is theirs). */
static const char *load_sessions(rd *s, redisReply *r,
                                 const mqtt_persist_visitor *v)
{
    redisReply *holders = NULL;
    const char *why = NULL;

    for (size_t i = 0; i < r->elements; i += 2)
        if (!is_string(r->element[i]))
            return "a session that is not a string";
    if (s->node && r->elements > 0 &&
        !(holders = rd_hmget(s, "holder", r->element, r->elements / 2, 2)))
        return "cannot read the sessions' holders";
    for (size_t i = 0; !why && i < r->elements; i += 2) {
        const redisReply *h = holders ? holders->element[i / 2] : NULL;

        if (h && h->type == REDIS_REPLY_STRING &&
            (h->len != strlen(s->node) || memcmp(h->str, s->node, h->len)))
            continue; /* another node's */
        why = visit_session(s, v, r->element[i], r->element[i + 1]);
    }
    if (holders)
        freeReplyObject(holders);
    return why;
}

static const char *load_retained(redisReply *r, const mqtt_persist_visitor *v)
{
    const char *why = NULL;

    for (size_t i = 0; !why && i < r->elements; i += 2) {
        redisReply *k = r->element[i], *val = r->element[i + 1];

        if (!is_string(k) || !is_string(val))
            why = "a retained message that is not a string";
        else if (!mqtt_topic_name_is_valid(k->str, k->len))
            why = "a retained message with an invalid topic";
        else if (val->len < 2 || (uint8_t)val->str[0] > 2)
            why = "a retained message with a bad QoS or no payload";
        else
            why = v->retained(v->arg, k->str, k->len,
                              (const uint8_t *)val->str + 1, val->len - 1,
                              (uint8_t)val->str[0]);
    }
    return why;
}

static hm_err rd_load(void *impl, const mqtt_persist_visitor *v,
                      mqtt_file_error *err)
{
    rd *s = impl;
    redisReply *sessions, *retained;
    char why_buf[256];
    const char *why;

    if (!s->c && rd_connect(s, why_buf, sizeof why_buf) != HM_OK) {
        mqtt_file_error_set(err, "%s: %s", s->where, why_buf);
        return HM_ESTORE;
    }
    if (!(sessions = rd_hgetall(s, "sessions", err)))
        return HM_ESTORE;
    why = load_sessions(s, sessions, v);
    freeReplyObject(sessions);
    if (!why) {
        if (!(retained = rd_hgetall(s, "retained", err)))
            return HM_ESTORE;
        why = load_retained(retained, v);
        freeReplyObject(retained);
    }
    if (why) {
        mqtt_file_error_set(err, "%s: %s", s->where, why);
        return HM_ESTORE;
    }
    return HM_OK;
}

/* The sessions whose holder is `node`: HGETALL holder (client ids and
 * node names only), then the records of those held by `node`. */
static hm_err rd_load_node(void *impl, const char *node,
                           const mqtt_persist_visitor *v, mqtt_file_error *err)
{
    rd *s = impl;
    char why_buf[256];
    redisReply *holders, *records = NULL, **ids;
    size_t count = 0;
    const char *why = NULL;

    if (!s->c && rd_connect(s, why_buf, sizeof why_buf) != HM_OK) {
        mqtt_file_error_set(err, "%s: %s", s->where, why_buf);
        return HM_ESTORE;
    }
    if (!(holders = rd_hgetall(s, "holder", err)))
        return HM_ESTORE;
    ids = hm_alloc((holders->elements / 2 + 1) * sizeof *ids);
    for (size_t i = 0; i < holders->elements; i += 2) {
        const redisReply *h = holders->element[i + 1];

        if (!is_string(holders->element[i]) || !is_string(h))
            why = "a session holder that is not a string";
        else if (h->len == strlen(node) && memcmp(h->str, node, h->len) == 0)
            ids[count++] = holders->element[i];
    }
    if (!why && count > 0 && !(records = rd_hmget(s, "sessions", ids, count, 1)))
        why = "cannot read the session records";
    for (size_t i = 0; !why && i < count; i++)
        if (records->element[i]->type == REDIS_REPLY_STRING)
            why = visit_session(s, v, ids[i], records->element[i]);
    if (records)
        freeReplyObject(records);
    hm_free(ids);
    freeReplyObject(holders);
    if (why && s->c->err) { /* made again by the next use */
        redisFree(s->c);
        s->c = NULL;
    }
    if (why) {
        mqtt_file_error_set(err, "%s: %s", s->where, why);
        return HM_ESTORE;
    }
    return HM_OK;
}

static void rd_close(void *impl)
{
    rd *s = impl;

    if (!s)
        return;
    redisFree(s->c);
    hm_free(s->host);
    hm_free(s->prefix);
    hm_free(s->node);
    hm_free(s->where);
    hm_free(s);
}

static const mqtt_persist_ops redis_ops = {
    .begin = rd_begin,
    .put_session = rd_put_session,
    .put_retained = rd_put_retained,
    .inbound = rd_inbound,
    .commit = rd_commit,
    .rollback = rd_rollback,
    .load = rd_load,
    .load_node = rd_load_node,
    .close = rd_close,
};

hm_err mqtt_persist_open_redis(const char *host, int port, const char *prefix,
                               const char *node, mqtt_persist **out,
                               mqtt_file_error *err)
{
    rd *s = hm_calloc(1, sizeof *s);
    char why[256];
    size_t len = strlen(host) + 32;

    s->host = hm_strdup(host);
    s->port = port;
    s->prefix = hm_strdup(prefix ? prefix : "hermes-mqtt:");
    s->node = node ? hm_strdup(node) : NULL;
    s->where = hm_alloc(len);
    snprintf(s->where, len, "redis %s:%d", host, port);
    if (rd_connect(s, why, sizeof why) != HM_OK) {
        mqtt_file_error_set(err, "%s: %s", s->where, why);
        rd_close(s);
        return HM_ESTORE;
    }
    *out = mqtt_persist_wrap(&redis_ops, s, hm_strdup(s->where));
    return HM_OK;
}

hm_err mqtt_persist_open_redis_fd(int fd, const char *prefix,
                                  const char *node, mqtt_persist **out)
{
    redisContext *c = redisConnectFd(fd);
    rd *s;

    if (!c || c->err) {
        redisFree(c);
        return HM_ESTORE;
    }
    redisSetTimeout(c, (struct timeval){TIMEOUT_MS / 1000,
                                        (TIMEOUT_MS % 1000) * 1000});
    hm_redis_bound_replies(c); /* runtime/redis_bound.h */
    s = hm_calloc(1, sizeof *s);
    s->c = c;
    s->prefix = hm_strdup(prefix ? prefix : "hermes-mqtt:");
    s->node = node ? hm_strdup(node) : NULL;
    s->where = hm_strdup("redis (socket)");
    *out = mqtt_persist_wrap(&redis_ops, s, hm_strdup(s->where));
    return HM_OK;
}
