/* apps/mqtt/persist_redis.c: the broker's durable state in Redis, so the
 * persistent sessions of a cluster outlive the node that held them.
 *
 * Keys: the hash "<prefix>sessions" (client id -> session record), the
 * hash "<prefix>retained" (topic -> one QoS byte then the payload) and one
 * set per client, "<prefix>inbound:<client id>", of the inbound QoS 2 ids
 * (decimal). The key decision is that a batch is one MULTI ... EXEC sent
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
    char *where;
    size_t queued; /* commands appended in this batch (MULTI included) */
} rd;

static hm_err rd_connect(rd *s, char *why, size_t len)
{
    struct timeval tv = {TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);

    if (!c || c->err) {
        snprintf(why, len, "cannot connect: %s",
                 c ? c->errstr : "out of memory");
        redisFree(c);
        return HM_ESTORE;
    }
    redisSetTimeout(c, tv);
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
    } else {
        rc = redisAppendCommand(s->c, "HDEL %ssessions %b", s->prefix,
                                client_id, id_len);
        if (rc == REDIS_OK)
            rc = redisAppendCommand(s->c, "DEL %sinbound:%b", s->prefix,
                                    client_id, id_len);
        s->queued += 2;
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
        if (reply->type == REDIS_REPLY_ERROR ||
            (i == s->queued && reply->type != REDIS_REPLY_ARRAY)) {
            HM_LOG_ERROR("MQTT-PERSIST", "%s: commit refused: %s", s->where,
                         reply->type == REDIS_REPLY_ERROR ? reply->str
                                                          : "EXEC aborted");
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

/* HGETALL `key`: the reply, or NULL with `err` set. */
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
        long pid = strtol(r->element[i]->str, NULL, 10);

        why = pid < 1 || pid > 65535 ? "an inbound QoS 2 id out of range"
                                     : v->inbound(v->arg, id, (uint16_t)pid);
    }
    if (r)
        freeReplyObject(r);
    return why;
}

static const char *load_sessions(rd *s, redisReply *r,
                                 const mqtt_persist_visitor *v)
{
    const char *why = NULL;

    for (size_t i = 0; !why && i < r->elements; i += 2) {
        redisReply *k = r->element[i], *val = r->element[i + 1];
        char *id = hm_strndup(k->str, k->len);

        if (strlen(id) != k->len)
            why = "a client id with a NUL";
        else if (!(why = v->session(v->arg, id, (const uint8_t *)val->str,
                                    val->len)))
            why = load_inbound(s, v, id);
        hm_free(id);
    }
    return why;
}

static const char *load_retained(redisReply *r, const mqtt_persist_visitor *v)
{
    const char *why = NULL;

    for (size_t i = 0; !why && i < r->elements; i += 2) {
        redisReply *k = r->element[i], *val = r->element[i + 1];

        if (!mqtt_topic_name_is_valid(k->str, k->len))
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
    const char *why;

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

static void rd_close(void *impl)
{
    rd *s = impl;

    if (!s)
        return;
    redisFree(s->c);
    hm_free(s->host);
    hm_free(s->prefix);
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
    .close = rd_close,
};

hm_err mqtt_persist_open_redis(const char *host, int port, const char *prefix,
                               mqtt_persist **out, mqtt_file_error *err)
{
    rd *s = hm_calloc(1, sizeof *s);
    char why[256];
    size_t len = strlen(host) + 32;

    s->host = hm_strdup(host);
    s->port = port;
    s->prefix = hm_strdup(prefix ? prefix : "hermes-mqtt:");
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
