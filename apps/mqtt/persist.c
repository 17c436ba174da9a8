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
 * opened (runtime/sqlite_db.c, shared with the runtime's store): a file
 * that is not a database, a database of another program, or one that
 * fails SQLite's quick_check is refused with "FILE: what is wrong" before
 * the broker listens. */
#include "apps/mqtt/persist_impl.h"

#include "apps/mqtt/topic.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/sqlite_db.h"

#include <stdio.h>
#include <string.h>

#define APP_ID 0x484d5131 /* "HMQ1": a Hermes MQTT store, schema 1 */

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
    hm_sqlite_db *d;
} sq;

static hm_err sq_run(sq *s, int which)
{
    return hm_sqlite_db_run(s->d, (size_t)which, NULL);
}

/* Statement `which`. */
static sqlite3_stmt *stmt(sq *s, int which)
{
    return hm_sqlite_db_stmt(s->d, (size_t)which);
}

static hm_err sq_begin(void *impl)
{
    return sq_run(impl, ST_BEGIN);
}

static hm_err sq_commit(void *impl)
{
    sq *s = impl;
    hm_err err = sq_run(s, ST_COMMIT);

    if (err != HM_OK && !sqlite3_get_autocommit(hm_sqlite_db_handle(s->d)))
        sq_run(s, ST_ROLLBACK);
    return err;
}

static void sq_rollback(void *impl)
{
    sq *s = impl;

    if (!sqlite3_get_autocommit(hm_sqlite_db_handle(s->d)))
        sq_run(s, ST_ROLLBACK);
}

static hm_err sq_put_session(void *impl, const char *client_id,
                             const uint8_t *record, size_t len)
{
    sq *s = impl;
    hm_err err;

    if (record) {
        sqlite3_bind_text(stmt(s, ST_PUT_SESSION), 1, client_id, -1,
                          SQLITE_STATIC);
        sqlite3_bind_blob64(stmt(s, ST_PUT_SESSION), 2, record, len,
                            SQLITE_STATIC);
        return sq_run(s, ST_PUT_SESSION);
    }
    sqlite3_bind_text(stmt(s, ST_DEL_SESSION), 1, client_id, -1, SQLITE_STATIC);
    if ((err = sq_run(s, ST_DEL_SESSION)) != HM_OK)
        return err;
    sqlite3_bind_text(stmt(s, ST_DEL_INBOUND_ALL), 1, client_id, -1,
                      SQLITE_STATIC);
    return sq_run(s, ST_DEL_INBOUND_ALL);
}

static hm_err sq_put_retained(void *impl, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len,
                              uint8_t qos)
{
    sq *s = impl;

    if (payload_len == 0) {
        sqlite3_bind_blob64(stmt(s, ST_DEL_RETAINED), 1, topic, topic_len,
                            SQLITE_STATIC);
        return sq_run(s, ST_DEL_RETAINED);
    }
    sqlite3_bind_blob64(stmt(s, ST_PUT_RETAINED), 1, topic, topic_len,
                        SQLITE_STATIC);
    sqlite3_bind_int(stmt(s, ST_PUT_RETAINED), 2, qos);
    sqlite3_bind_blob64(stmt(s, ST_PUT_RETAINED), 3, payload, payload_len,
                        SQLITE_STATIC);
    return sq_run(s, ST_PUT_RETAINED);
}

static hm_err sq_inbound(void *impl, const char *client_id,
                         uint16_t packet_id, bool add)
{
    sq *s = impl;
    int which = add ? ST_ADD_INBOUND : ST_DEL_INBOUND;

    sqlite3_bind_text(stmt(s, which), 1, client_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt(s, which), 2, packet_id);
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

    sqlite3 *db = hm_sqlite_db_handle(s->d);
    const char *path = hm_sqlite_db_path(s->d);

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        mqtt_file_error_set(err, "%s: %s", path, sqlite3_errmsg(db));
        return HM_ESTORE;
    }
    while (!why && (rc = sqlite3_step(st)) == SQLITE_ROW)
        why = row(st, v);
    if (!why && rc != SQLITE_DONE)
        why = sqlite3_errmsg(db);
    if (why)
        mqtt_file_error_set(err, "%s: %s", path, why);
    sqlite3_finalize(st);
    return why ? HM_ESTORE : HM_OK;
}

/* Column `col` as the client id the broker wrote (text without a NUL), or
 * NULL. SQLite would convert a blob or a number to text, so "a\0b" and
 * "a", or 5 and '5', would load as two sessions of one client (found by
 * fuzz/fuzz_mqtt_persist_sqlite.c). */
static const char *client_id_column(sqlite3_stmt *st, int col)
{
    const char *id;

    if (sqlite3_column_type(st, col) != SQLITE_TEXT)
        return NULL;
    id = (const char *)sqlite3_column_text(st, col);
    if (!id || strlen(id) != (size_t)sqlite3_column_bytes(st, col))
        return NULL;
    return id;
}

static const char *session_row(sqlite3_stmt *st, const mqtt_persist_visitor *v)
{
    const char *id = client_id_column(st, 0);
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
    /* An integer, not what SQLite makes of "1x" or 1.5. */
    sqlite3_int64 qos = sqlite3_column_type(st, 1) == SQLITE_INTEGER
                            ? sqlite3_column_int64(st, 1)
                            : -1;
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
    const char *id = client_id_column(st, 0);
    sqlite3_int64 pid = sqlite3_column_type(st, 1) == SQLITE_INTEGER
                            ? sqlite3_column_int64(st, 1)
                            : 0;

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
    hm_sqlite_db_close(s->d); /* a clean close checkpoints the WAL */
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

hm_err mqtt_persist_open_sqlite(const char *dir, mqtt_persist **out,
                                mqtt_file_error *err)
{
    hm_sqlite_db_error e;
    sq *s = hm_calloc(1, sizeof *s);

    if (hm_sqlite_db_open(&(hm_sqlite_db_config){.dir = dir,
                                                 .file = MQTT_PERSIST_FILE,
                                                 .lock_file =
                                                     "hermes-mqtt.lock",
                                                 .app_id = APP_ID,
                                                 .schema = schema,
                                                 .sql = sql_text,
                                                 .sql_count = ST_COUNT,
                                                 .log_tag = "MQTT-PERSIST"},
                          &s->d, &e) != HM_OK) {
        mqtt_file_error_set(err, "%s", e.text);
        hm_free(s);
        return HM_ESTORE;
    }
    *out = mqtt_persist_wrap(&sqlite_ops, s,
                             hm_strdup(hm_sqlite_db_path(s->d)));
    return HM_OK;
}
