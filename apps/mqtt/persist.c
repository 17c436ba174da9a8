/* apps/mqtt/persist.c: the broker's durable state in SQLite, and the
 * dispatch to a backend.
 *
 * One file, `<dir>/hermes-mqtt.db`, three tables: session records (client
 * id -> session_state.h bytes), retained messages (topic -> QoS, payload)
 * and inbound QoS 2 ids (client id, packet id). WAL mode with
 * synchronous=NORMAL: a commit writes the log without an fsync, so a
 * process crash (kill -9) loses nothing committed and a commit costs tens
 * of microseconds; FULL would fsync every commit (milliseconds on this
 * disk) to also survive a power loss of the last commits (docs/adr/0111
 * says why NORMAL). The key decision is to check the file when it is
 * opened: a file that is not a database, a database of another program, or
 * one that fails SQLite's quick_check is refused with "FILE: what is
 * wrong" before the broker listens. */
#include "apps/mqtt/persist_impl.h"

#include "apps/mqtt/topic.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define APP_ID 0x484d5131 /* "HMQ1": a Hermes MQTT store, schema 1 */
#define BUSY_TIMEOUT_MS 2000
#define LOCK_FILE "hermes-mqtt.lock"

struct mqtt_persist {
    const mqtt_persist_ops *ops;
    void *impl;
    char *where;
};

mqtt_persist *mqtt_persist_wrap(const mqtt_persist_ops *ops, void *impl,
                                char *where)
{
    mqtt_persist *p = hm_calloc(1, sizeof *p);

    p->ops = ops;
    p->impl = impl;
    p->where = where;
    return p;
}

void mqtt_persist_close(mqtt_persist *p)
{
    if (!p)
        return;
    p->ops->close(p->impl);
    hm_free(p->where);
    hm_free(p);
}

const char *mqtt_persist_where(const mqtt_persist *p)
{
    return p->where;
}

hm_err mqtt_persist_begin(mqtt_persist *p)
{
    return p->ops->begin(p->impl);
}

hm_err mqtt_persist_put_session(mqtt_persist *p, const char *client_id,
                                const uint8_t *record, size_t len)
{
    return p->ops->put_session(p->impl, client_id, record, len);
}

hm_err mqtt_persist_put_retained(mqtt_persist *p, const char *topic,
                                 size_t topic_len, const uint8_t *payload,
                                 size_t payload_len, uint8_t qos)
{
    return p->ops->put_retained(p->impl, topic, topic_len, payload,
                                payload_len, qos);
}

hm_err mqtt_persist_inbound(mqtt_persist *p, const char *client_id,
                            uint16_t packet_id, bool add)
{
    return p->ops->inbound(p->impl, client_id, packet_id, add);
}

hm_err mqtt_persist_commit(mqtt_persist *p)
{
    return p->ops->commit(p->impl);
}

void mqtt_persist_rollback(mqtt_persist *p)
{
    p->ops->rollback(p->impl);
}

hm_err mqtt_persist_load(mqtt_persist *p, const mqtt_persist_visitor *v,
                         mqtt_file_error *err)
{
    return p->ops->load(p->impl, v, err);
}

hm_err mqtt_persist_load_node(mqtt_persist *p, const char *node,
                              const mqtt_persist_visitor *v,
                              mqtt_file_error *err)
{
    return p->ops->load_node ? p->ops->load_node(p->impl, node, v, err)
                             : HM_OK;
}

/* -------------------------------------------------------------- SQLite */

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PUT_SESSION,
    ST_DEL_SESSION,
    ST_DEL_INBOUND_ALL,
    ST_PUT_RETAINED,
    ST_DEL_RETAINED,
    ST_ADD_INBOUND,
    ST_DEL_INBOUND,
    ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PUT_SESSION] = "INSERT OR REPLACE INTO mqtt_session(client_id, "
                       "record) VALUES (?1, ?2)",
    [ST_DEL_SESSION] = "DELETE FROM mqtt_session WHERE client_id = ?1",
    [ST_DEL_INBOUND_ALL] = "DELETE FROM mqtt_inbound WHERE client_id = ?1",
    [ST_PUT_RETAINED] = "INSERT OR REPLACE INTO mqtt_retained(topic, qos, "
                        "payload) VALUES (?1, ?2, ?3)",
    [ST_DEL_RETAINED] = "DELETE FROM mqtt_retained WHERE topic = ?1",
    [ST_ADD_INBOUND] = "INSERT OR IGNORE INTO mqtt_inbound(client_id, "
                       "packet_id) VALUES (?1, ?2)",
    [ST_DEL_INBOUND] = "DELETE FROM mqtt_inbound WHERE client_id = ?1 AND "
                       "packet_id = ?2",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS mqtt_session("
    " client_id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS mqtt_retained("
    " topic BLOB PRIMARY KEY, qos INTEGER NOT NULL, payload BLOB NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS mqtt_inbound("
    " client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,"
    " PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;";

typedef struct sq {
    sqlite3 *db;
    char *path;
    int lock_fd; /* holds the directory's lock, or -1 */
    sqlite3_stmt *st[ST_COUNT];
} sq;

static hm_err sq_fail(sq *s, const char *what)
{
    HM_LOG_ERROR("MQTT-PERSIST", "%s: %s: %s (code %d)", s->path, what,
                 sqlite3_errmsg(s->db), sqlite3_extended_errcode(s->db));
    return HM_ESTORE;
}

static hm_err sq_run(sq *s, int which)
{
    sqlite3_stmt *st = s->st[which];
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? HM_OK : sq_fail(s, sql_text[which]);
}

static hm_err sq_begin(void *impl)
{
    return sq_run(impl, ST_BEGIN);
}

static hm_err sq_commit(void *impl)
{
    sq *s = impl;
    hm_err err = sq_run(s, ST_COMMIT);

    if (err != HM_OK && !sqlite3_get_autocommit(s->db))
        sq_run(s, ST_ROLLBACK);
    return err;
}

static void sq_rollback(void *impl)
{
    sq *s = impl;

    if (!sqlite3_get_autocommit(s->db))
        sq_run(s, ST_ROLLBACK);
}

static hm_err sq_put_session(void *impl, const char *client_id,
                             const uint8_t *record, size_t len)
{
    sq *s = impl;
    hm_err err;

    if (record) {
        sqlite3_bind_text(s->st[ST_PUT_SESSION], 1, client_id, -1,
                          SQLITE_STATIC);
        sqlite3_bind_blob64(s->st[ST_PUT_SESSION], 2, record, len,
                            SQLITE_STATIC);
        return sq_run(s, ST_PUT_SESSION);
    }
    sqlite3_bind_text(s->st[ST_DEL_SESSION], 1, client_id, -1, SQLITE_STATIC);
    if ((err = sq_run(s, ST_DEL_SESSION)) != HM_OK)
        return err;
    sqlite3_bind_text(s->st[ST_DEL_INBOUND_ALL], 1, client_id, -1,
                      SQLITE_STATIC);
    return sq_run(s, ST_DEL_INBOUND_ALL);
}

static hm_err sq_put_retained(void *impl, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len,
                              uint8_t qos)
{
    sq *s = impl;

    if (payload_len == 0) {
        sqlite3_bind_blob64(s->st[ST_DEL_RETAINED], 1, topic, topic_len,
                            SQLITE_STATIC);
        return sq_run(s, ST_DEL_RETAINED);
    }
    sqlite3_bind_blob64(s->st[ST_PUT_RETAINED], 1, topic, topic_len,
                        SQLITE_STATIC);
    sqlite3_bind_int(s->st[ST_PUT_RETAINED], 2, qos);
    sqlite3_bind_blob64(s->st[ST_PUT_RETAINED], 3, payload, payload_len,
                        SQLITE_STATIC);
    return sq_run(s, ST_PUT_RETAINED);
}

static hm_err sq_inbound(void *impl, const char *client_id,
                         uint16_t packet_id, bool add)
{
    sq *s = impl;
    int which = add ? ST_ADD_INBOUND : ST_DEL_INBOUND;

    sqlite3_bind_text(s->st[which], 1, client_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s->st[which], 2, packet_id);
    return sq_run(s, which);
}

/* Runs `sql` and hands each row to `row`; a message from `row` or a read
 * error fails the load with "FILE: ...". */
static hm_err sq_each(sq *s, const char *sql,
                      const char *(*row)(sqlite3_stmt *st,
                                         const mqtt_persist_visitor *v),
                      const mqtt_persist_visitor *v, mqtt_file_error *err)
{
    sqlite3_stmt *st = NULL;
    const char *why = NULL;
    int rc;

    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        mqtt_file_error_set(err, "%s: %s", s->path, sqlite3_errmsg(s->db));
        return HM_ESTORE;
    }
    while (!why && (rc = sqlite3_step(st)) == SQLITE_ROW)
        why = row(st, v);
    if (!why && rc != SQLITE_DONE)
        why = sqlite3_errmsg(s->db);
    if (why)
        mqtt_file_error_set(err, "%s: %s", s->path, why);
    sqlite3_finalize(st);
    return why ? HM_ESTORE : HM_OK;
}

static const char *session_row(sqlite3_stmt *st, const mqtt_persist_visitor *v)
{
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const uint8_t *rec = sqlite3_column_blob(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);

    if (!id || !rec)
        return "a session row without a client id or record";
    return v->session(v->arg, id, rec, len);
}

static const char *retained_row(sqlite3_stmt *st,
                                const mqtt_persist_visitor *v)
{
    const char *topic = sqlite3_column_blob(st, 0);
    size_t topic_len = (size_t)sqlite3_column_bytes(st, 0);
    sqlite3_int64 qos = sqlite3_column_int64(st, 1);
    const uint8_t *payload = sqlite3_column_blob(st, 2);
    size_t payload_len = (size_t)sqlite3_column_bytes(st, 2);

    if (!topic || !mqtt_topic_name_is_valid(topic, topic_len))
        return "a retained message with an invalid topic";
    if (qos < 0 || qos > 2 || !payload || payload_len == 0)
        return "a retained message with a bad QoS or no payload";
    return v->retained(v->arg, topic, topic_len, payload, payload_len,
                       (uint8_t)qos);
}

static const char *inbound_row(sqlite3_stmt *st, const mqtt_persist_visitor *v)
{
    const char *id = (const char *)sqlite3_column_text(st, 0);
    sqlite3_int64 pid = sqlite3_column_int64(st, 1);

    if (!id || pid < 1 || pid > 65535)
        return "an inbound QoS 2 id out of range";
    return v->inbound(v->arg, id, (uint16_t)pid);
}

static hm_err sq_load(void *impl, const mqtt_persist_visitor *v,
                      mqtt_file_error *err)
{
    sq *s = impl;
    hm_err e;

    if ((e = sq_each(s, "SELECT client_id, record FROM mqtt_session",
                     session_row, v, err)) != HM_OK ||
        (e = sq_each(s, "SELECT topic, qos, payload FROM mqtt_retained",
                     retained_row, v, err)) != HM_OK)
        return e;
    return sq_each(s, "SELECT client_id, packet_id FROM mqtt_inbound",
                   inbound_row, v, err);
}

static void sq_close(void *impl)
{
    sq *s = impl;

    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close_v2(s->db); /* a clean close checkpoints the WAL */
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    hm_free(s->path);
    hm_free(s);
}

static const mqtt_persist_ops sqlite_ops = {
    .begin = sq_begin,
    .put_session = sq_put_session,
    .put_retained = sq_put_retained,
    .inbound = sq_inbound,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .load = sq_load,
    .close = sq_close,
};

/* The first problem SQLite's quick_check reports, or NULL. */
static const char *quick_check(sq *s, char *buf, size_t len)
{
    sqlite3_stmt *st = NULL;
    const char *why = NULL;
    int rc;

    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL) !=
        SQLITE_OK)
        return sqlite3_errmsg(s->db);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);

        if (line && strcmp(line, "ok") != 0) {
            snprintf(buf, len, "corrupt: %s", line);
            why = buf;
        }
    } else {
        snprintf(buf, len, "%s", sqlite3_errmsg(s->db));
        why = buf;
    }
    sqlite3_finalize(st);
    return why;
}

/* Identity, integrity, journal mode and schema; NULL or what is wrong. */
static const char *sq_prepare(sq *s, char *buf, size_t len)
{
    sqlite3_stmt *st = NULL;
    sqlite3_int64 app_id = -1;
    const char *why;

    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* Reading the header is what fails on a file that is no database. */
    if (sqlite3_prepare_v2(s->db, "PRAGMA application_id", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        app_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (app_id < 0) {
        snprintf(buf, len, "not a readable database: %s",
                 sqlite3_errmsg(s->db));
        return buf;
    }
    if (app_id != 0 && app_id != APP_ID) {
        snprintf(buf, len,
                 "a database of another application (application id "
                 "0x%08llx), not a Hermes MQTT store",
                 (unsigned long long)app_id);
        return buf;
    }
    if ((why = quick_check(s, buf, len)))
        return why;
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA application_id=1213026609", NULL, NULL,
                     NULL) != SQLITE_OK)
        return sqlite3_errmsg(s->db);
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, sql_text[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK)
            return sqlite3_errmsg(s->db);
    return NULL;
}

_Static_assert(APP_ID == 1213026609, "the pragma above spells APP_ID");

/* Locks `dir` (flock on LOCK_FILE; released by close or by death). */
static bool lock_dir(sq *s, const char *dir, mqtt_file_error *err)
{
    char *path = hm_alloc(strlen(dir) + sizeof "/" LOCK_FILE);

    strcpy(path, dir);
    strcat(path, "/" LOCK_FILE);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        mqtt_file_error_set(err, "%s: %s", path, strerror(errno));
    else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
        mqtt_file_error_set(err, "%s: in use by another broker: %s", dir,
                            strerror(errno));
    hm_free(path);
    return s->lock_fd >= 0 && !err->text[0];
}

hm_err mqtt_persist_open_sqlite(const char *dir, mqtt_persist **out,
                                mqtt_file_error *err)
{
    char buf[400];
    const char *why;
    size_t len;
    sq *s;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        mqtt_file_error_set(err, "%s: cannot create the directory: %s", dir,
                            strerror(errno));
        return HM_ESTORE;
    }
    s = hm_calloc(1, sizeof *s);
    s->lock_fd = -1;
    len = strlen(dir) + sizeof "/" MQTT_PERSIST_FILE;
    s->path = hm_alloc(len);
    snprintf(s->path, len, "%s/" MQTT_PERSIST_FILE, dir);
    err->text[0] = '\0';
    if (!lock_dir(s, dir, err))
        goto fail;
    if (sqlite3_open_v2(s->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        mqtt_file_error_set(err, "%s: cannot open: %s", s->path,
                            s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    if ((why = sq_prepare(s, buf, sizeof buf))) {
        mqtt_file_error_set(err, "%s: %s", s->path, why);
        goto fail;
    }
    *out = mqtt_persist_wrap(&sqlite_ops, s, hm_strdup(s->path));
    return HM_OK;

fail:
    sq_close(s);
    return HM_ESTORE;
}
