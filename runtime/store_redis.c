/* runtime/store_redis.c: a store in Redis, for state shared by the nodes
 * of a cluster.
 *
 * When a node dies, its receivers are activated again on other nodes;
 * with this store they find their state there, because every node reads
 * and writes the same server. State lives under "<prefix>state:<name>" as
 * a plain string (binary-safe), reminders in one hash "<prefix>reminders"
 * whose field is "<receiver>\0<name>" and whose value is
 * "<due_unix_ms> <period_ms>". One synchronous hiredis connection does it
 * all (the store serialises calls); a connection that fails is dropped and
 * made again by the next call, so a restarted Redis costs one failed call
 * per node, not a restarted node. hiredis writes with write(), which on a
 * connection the server has reset raises SIGPIPE and would kill the
 * process; each command runs with SIGPIPE blocked on its thread and a
 * SIGPIPE it caused is consumed (the error comes back as EPIPE). How durable the data is depends on the
 * server's configuration (appendonly, fsync policy): Redis decides, not
 * this file (docs/adr/0091). */
#include "runtime/store.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/redis_bound.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct redis_store {
    redisContext *c; /* NULL while disconnected */
    char *host;
    int port;
    char *prefix;
    char *where; /* "HOST:PORT" or "(socket)", for log lines */
    struct timeval timeout;
} redis_store;

static hm_err connect_now(redis_store *s)
{
    redisContext *c;

    if (!s->host) { /* hm_store_open_redis_fd(): no address to dial */
        HM_LOG_ERROR("STORE-REDIS", "%s: connection lost", s->where);
        return HM_ESTORE;
    }
    c = redisConnectWithTimeout(s->host, s->port, s->timeout);

    if (!c || c->err) {
        HM_LOG_ERROR("STORE-REDIS", "%s: cannot connect: %s", s->where,
                     c ? c->errstr : "out of memory");
        redisFree(c);
        return HM_ESTORE;
    }
    redisSetTimeout(c, s->timeout);
    hm_redis_bound_replies(c);
    s->c = c;
    return HM_OK;
}

/* SIGPIPE off for this thread during one command (see the file comment).
 * A SIGPIPE already pending before is left alone. */
typedef struct pipe_guard {
    sigset_t old;
    bool was_pending;
} pipe_guard;

static void pipe_block(pipe_guard *g)
{
    sigset_t pipe_set, pending;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
}

static void pipe_restore(pipe_guard *g)
{
    sigset_t pipe_set, pending;
    const struct timespec zero = {0, 0};

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1)
        sigtimedwait(&pipe_set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Runs one command; returns owned reply, or NULL after logging (and
 * dropping a broken connection). An error reply is logged and freed. */
static redisReply *command(redis_store *s, const char *what, const char *fmt,
                           ...)
{
    redisReply *r;
    va_list ap;
    pipe_guard g;

    if (!s->c && connect_now(s) != HM_OK)
        return NULL;
    pipe_block(&g);
    va_start(ap, fmt);
    r = redisvCommand(s->c, fmt, ap);
    va_end(ap);
    pipe_restore(&g);
    if (!r) {
        HM_LOG_ERROR("STORE-REDIS", "%s: %s: %s", s->where, what,
                     s->c->errstr);
        redisFree(s->c);
        s->c = NULL;
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        HM_LOG_ERROR("STORE-REDIS", "%s: %s: %s", s->where, what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static hm_err rd_load(void *impl, const char *key, void **data_out,
                      size_t *len_out)
{
    redis_store *s = impl;
    redisReply *r = command(s, "load", "GET %sstate:%s", s->prefix, key);
    hm_err err = HM_ENOTFOUND;

    if (!r)
        return HM_ESTORE;
    if (r->type == REDIS_REPLY_STRING) {
        void *copy = NULL;
        if (r->len > 0) {
            copy = hm_alloc(r->len);
            memcpy(copy, r->str, r->len);
        }
        *data_out = copy;
        *len_out = r->len;
        err = HM_OK;
    } else if (r->type != REDIS_REPLY_NIL) {
        HM_LOG_ERROR("STORE-REDIS", "load %s: unexpected reply type %d", key,
                     r->type);
        err = HM_ESTORE;
    }
    freeReplyObject(r);
    return err;
}

static hm_err rd_simple(redisReply *r)
{
    if (!r)
        return HM_ESTORE;
    freeReplyObject(r);
    return HM_OK;
}

static hm_err rd_save(void *impl, const char *key, const void *data,
                      size_t len)
{
    redis_store *s = impl;

    return rd_simple(command(s, "save", "SET %sstate:%s %b", s->prefix, key,
                             len ? data : "", len));
}

static hm_err rd_remove(void *impl, const char *key)
{
    redis_store *s = impl;

    return rd_simple(command(s, "remove", "DEL %sstate:%s", s->prefix, key));
}

static hm_err rd_reminder_put(void *impl, const hm_store_reminder *r)
{
    redis_store *s = impl;
    size_t rl = strlen(r->receiver), nl = strlen(r->name);
    char *field = hm_alloc(rl + nl + 1);
    char value[48];
    hm_err err;

    memcpy(field, r->receiver, rl + 1);
    memcpy(field + rl + 1, r->name, nl);
    snprintf(value, sizeof value, "%" PRIu64 " %" PRIu32, r->due_unix_ms,
             r->period_ms);
    err = rd_simple(command(s, "store a reminder", "HSET %sreminders %b %s",
                            s->prefix, field, rl + nl + 1, value));
    hm_free(field);
    return err;
}

static hm_err rd_reminder_remove(void *impl, const char *receiver,
                                 const char *name)
{
    redis_store *s = impl;
    size_t rl = strlen(receiver), nl = strlen(name);
    char *field = hm_alloc(rl + nl + 1);
    hm_err err;

    memcpy(field, receiver, rl + 1);
    memcpy(field + rl + 1, name, nl);
    err = rd_simple(command(s, "delete a reminder", "HDEL %sreminders %b",
                            s->prefix, field, rl + nl + 1));
    hm_free(field);
    return err;
}

/* Reads the decimal number at `*p` (before `end`) into `*out`, at most
 * `max`: digits only (no sign, no space), no leading zero, no overflow;
 * moves `*p` past it. The form reminder_put writes, and nothing else: a
 * server's bytes are not trusted to be ours (sscanf took "-1" as 2^64-1,
 * "+5", " 5" and "5 junk"; found by fuzz/fuzz_runtime_store_redis.c). */
static bool parse_u64(const char **p, const char *end, uint64_t max,
                      uint64_t *out)
{
    const char *c = *p;
    uint64_t v = 0;

    if (c == end || *c < '0' || *c > '9' ||
        (*c == '0' && c + 1 < end && c[1] >= '0' && c[1] <= '9'))
        return false;
    for (; c < end && *c >= '0' && *c <= '9'; c++) {
        unsigned d = (unsigned)(*c - '0');

        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *p = c;
    *out = v;
    return true;
}

/* One field/value pair of the reminders hash; false if malformed. The
 * field is "<receiver>\0<name>" with exactly one NUL (a second one would
 * cut the name short, and two fields would name one reminder), a receiver
 * that is a runtime name's length and a name that is not empty; the value
 * is "<due_unix_ms> <period_ms>", due at most INT64_MAX. */
static bool parse_reminder(const redisReply *f, const redisReply *v,
                           hm_store_reminder *out, char *buf, size_t cap)
{
    const char *nul, *p, *end;
    size_t rl;
    uint64_t due, period;

    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
        f->len + 1 > cap)
        return false;
    nul = memchr(f->str, '\0', f->len);
    if (!nul)
        return false;
    rl = (size_t)(nul - f->str);
    if (rl == 0 || rl > HM_ADDR_MAX_LEN || rl + 1 >= f->len ||
        memchr(nul + 1, '\0', f->len - rl - 1))
        return false;
    p = v->str;
    end = v->str + v->len;
    if (!parse_u64(&p, end, INT64_MAX, &due) || p == end || *p++ != ' ' ||
        !parse_u64(&p, end, UINT32_MAX, &period) || p != end)
        return false;
    memcpy(buf, f->str, f->len);
    buf[f->len] = '\0';
    *out = (hm_store_reminder){buf, buf + rl + 1, due, (uint32_t)period};
    return true;
}

static hm_err rd_reminder_each(void *impl, hm_store_reminder_fn fn,
                               void *arg)
{
    redis_store *s = impl;
    redisReply *r = command(s, "list reminders", "HGETALL %sreminders",
                            s->prefix);
    char buf[HM_ADDR_MAX_LEN * 2 + 2];

    if (!r)
        return HM_ESTORE;
    if (r->type != REDIS_REPLY_ARRAY) {
        /* Not an answer to HGETALL: the reminders are unknown, which is
         * not "none" (it listed nothing and said HM_OK before). */
        HM_LOG_ERROR("STORE-REDIS", "%s: list reminders: unexpected reply "
                     "type %d", s->where, r->type);
        freeReplyObject(r);
        return HM_ESTORE;
    }
    for (size_t i = 0; i < r->elements; i += 2) {
        hm_store_reminder rem;
        if (i + 1 < r->elements &&
            parse_reminder(r->element[i], r->element[i + 1], &rem, buf,
                           sizeof buf))
            fn(arg, &rem);
        else
            HM_LOG_ERROR("STORE-REDIS-CORRUPT", "%sreminders: malformed "
                         "entry skipped", s->prefix);
    }
    freeReplyObject(r);
    return HM_OK;
}

static void rd_close(void *impl)
{
    redis_store *s = impl;

    if (!s)
        return;
    redisFree(s->c);
    hm_free(s->host);
    hm_free(s->prefix);
    hm_free(s->where);
    hm_free(s);
}

static const hm_store_ops redis_ops = {
    .name = "redis",
    .load = rd_load,
    .save = rd_save,
    .remove = rd_remove,
    .reminder_put = rd_reminder_put,
    .reminder_remove = rd_reminder_remove,
    .reminder_each = rd_reminder_each,
    .close = rd_close,
};

hm_err hm_store_open_redis(const hm_store_redis_config *cfg, hm_store **out)
{
    redis_store *s;
    uint32_t ms;
    hm_err err;

    if (!cfg || cfg->port < 0 || cfg->port > 65535)
        return HM_EINVAL;
    ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
    s = hm_calloc(1, sizeof *s);
    s->host = hm_strdup(cfg->host ? cfg->host : "127.0.0.1");
    s->port = cfg->port ? cfg->port : 6379;
    s->where = hm_alloc(strlen(s->host) + 16);
    sprintf(s->where, "%s:%d", s->host, s->port);
    s->prefix = hm_strdup(cfg->prefix ? cfg->prefix : "hermes:");
    s->timeout.tv_sec = ms / 1000;
    s->timeout.tv_usec = (long)(ms % 1000) * 1000;
    if ((err = connect_now(s)) != HM_OK ||
        (err = rd_simple(command(s, "ping", "PING"))) != HM_OK) {
        rd_close(s);
        return err;
    }
    *out = hm_store_create(&redis_ops, s);
    return HM_OK;
}

hm_err hm_store_open_redis_fd(int fd, const char *prefix, hm_store **out)
{
    redisContext *c = redisConnectFd(fd);
    redis_store *s;

    if (!c || c->err) {
        redisFree(c);
        return HM_ESTORE;
    }
    s = hm_calloc(1, sizeof *s);
    s->timeout.tv_sec = 2;
    redisSetTimeout(c, s->timeout);
    hm_redis_bound_replies(c);
    s->c = c;
    s->prefix = hm_strdup(prefix ? prefix : "hermes:");
    s->where = hm_strdup("(socket)");
    *out = hm_store_create(&redis_ops, s);
    return HM_OK;
}
