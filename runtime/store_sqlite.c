/* runtime/store_sqlite.c: the embedded default store, one SQLite database.
 *
 * One file, `<dir>/hermes.db`, with two tables: receiver state (name ->
 * bytes) and reminders. The database runs in WAL mode with
 * synchronous=NORMAL: a commit appends to the write-ahead log without an
 * fsync (tens of microseconds), and only checkpoints sync. A crash of the
 * process (kill -9) loses nothing committed; a crash of the machine may
 * lose the last commits since the last checkpoint, never the file's
 * consistency (docs/adr/0091). The one key decision is to check the file
 * when it is opened (its application id, then SQLite's quick_check), so a
 * corrupt or truncated store is refused at start with a log line naming the
 * file instead of failing a receiver later (runtime/sqlite_db.c does the
 * opening, shared with the MQTT broker's store). The store (store.c)
 * serialises the calls, so the connection is opened without SQLite's own
 * mutexes. */
#include "runtime/store.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/sqlite_db.h"

#include <string.h>

#define APP_ID 0x484d5331 /* "HMS1": a Hermes store, schema 1 */

enum { ST_LOAD, ST_SAVE, ST_REMOVE, ST_RPUT, ST_RDEL, ST_REACH, ST_COUNT };

static const char *const sql_text[ST_COUNT] = {
    [ST_LOAD] = "SELECT data FROM hm_state WHERE key = ?1",
    [ST_SAVE] = "INSERT OR REPLACE INTO hm_state(key, data) VALUES (?1, ?2)",
    [ST_REMOVE] = "DELETE FROM hm_state WHERE key = ?1",
    [ST_RPUT] = "INSERT OR REPLACE INTO hm_reminder"
                "(receiver, name, due_unix_ms, period_ms)"
                " VALUES (?1, ?2, ?3, ?4)",
    [ST_RDEL] = "DELETE FROM hm_reminder WHERE receiver = ?1 AND name = ?2",
    [ST_REACH] = "SELECT receiver, name, due_unix_ms, period_ms"
                 " FROM hm_reminder",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS hm_state("
    " key TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS hm_reminder("
    " receiver TEXT NOT NULL, name TEXT NOT NULL,"
    " due_unix_ms INTEGER NOT NULL, period_ms INTEGER NOT NULL,"
    " PRIMARY KEY (receiver, name)) WITHOUT ROWID;";

typedef struct sqlite_store {
    hm_sqlite_db *d;
} sqlite_store;

static hm_err sq_load(void *impl, const char *key, void **data_out,
                      size_t *len_out)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = hm_sqlite_db_stmt(s->d, ST_LOAD);
    hm_err err = HM_ENOTFOUND;
    int rc;

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        const void *blob = sqlite3_column_blob(st, 0);
        void *copy = NULL;

        if (len > 0) {
            copy = hm_alloc(len);
            memcpy(copy, blob, len);
        }
        *data_out = copy;
        *len_out = len;
        err = HM_OK;
    } else if (rc != SQLITE_DONE) {
        err = hm_sqlite_db_fail(s->d, "load");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

static hm_err sq_save(void *impl, const char *key, const void *data,
                      size_t len)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = hm_sqlite_db_stmt(s->d, ST_SAVE);

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, len ? data : "", len, SQLITE_STATIC);
    return hm_sqlite_db_run(s->d, ST_SAVE, "save");
}

static hm_err sq_remove(void *impl, const char *key)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = hm_sqlite_db_stmt(s->d, ST_REMOVE);

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return hm_sqlite_db_run(s->d, ST_REMOVE, "remove");
}

static hm_err sq_reminder_put(void *impl, const hm_store_reminder *r)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = hm_sqlite_db_stmt(s->d, ST_RPUT);

    sqlite3_bind_text(st, 1, r->receiver, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->due_unix_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->period_ms);
    return hm_sqlite_db_run(s->d, ST_RPUT, "store a reminder");
}

static hm_err sq_reminder_remove(void *impl, const char *receiver,
                                 const char *name)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = hm_sqlite_db_stmt(s->d, ST_RDEL);

    sqlite3_bind_text(st, 1, receiver, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    return hm_sqlite_db_run(s->d, ST_RDEL, "delete a reminder");
}

/* Column `col` as non-empty text without a NUL, or NULL. */
static const char *text_column(sqlite3_stmt *st, int col)
{
    const char *t;

    if (sqlite3_column_type(st, col) != SQLITE_TEXT)
        return NULL;
    t = (const char *)sqlite3_column_text(st, col);
    if (!t || !*t || strlen(t) != (size_t)sqlite3_column_bytes(st, col))
        return NULL;
    return t;
}

/* One reminder row as this store writes it: two names as text, two
 * integers in range; false for anything else, which SQLite would have
 * converted (a blob "a\0b" read as "a", -1 as a due time in 292 million
 * years, a period cut to 32 bits). Found by
 * fuzz/fuzz_runtime_store_sqlite.c; the Redis store refuses the same. */
static bool reminder_row(sqlite3_stmt *st, hm_store_reminder *r)
{
    sqlite3_int64 due, period;

    if (sqlite3_column_type(st, 2) != SQLITE_INTEGER ||
        sqlite3_column_type(st, 3) != SQLITE_INTEGER)
        return false;
    due = sqlite3_column_int64(st, 2);
    period = sqlite3_column_int64(st, 3);
    *r = (hm_store_reminder){text_column(st, 0), text_column(st, 1),
                             (uint64_t)due, (uint32_t)period};
    return r->receiver && r->name && due >= 0 && period >= 0 &&
           period <= UINT32_MAX;
}

static hm_err sq_reminder_each(void *impl, hm_store_reminder_fn fn,
                               void *arg)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = hm_sqlite_db_stmt(s->d, ST_REACH);
    hm_err err = HM_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        hm_store_reminder r;

        if (reminder_row(st, &r))
            fn(arg, &r);
        else
            HM_LOG_ERROR("STORE-SQLITE-CORRUPT", "hm_reminder: malformed "
                         "row skipped");
    }
    if (rc != SQLITE_DONE)
        err = hm_sqlite_db_fail(s->d, "list reminders");
    sqlite3_reset(st);
    return err;
}

static void sq_close(void *impl)
{
    sqlite_store *s = impl;

    if (!s)
        return;
    hm_sqlite_db_close(s->d); /* a clean close checkpoints the WAL */
    hm_free(s);
}

static const hm_store_ops sqlite_ops = {
    .name = "sqlite",
    .load = sq_load,
    .save = sq_save,
    .remove = sq_remove,
    .reminder_put = sq_reminder_put,
    .reminder_remove = sq_reminder_remove,
    .reminder_each = sq_reminder_each,
    .close = sq_close,
};

/* The log tag of each way an open fails (tests and operators grep them). */
static const char *const fault_tag[] = {
    [HM_SQLITE_DB_EDIR] = "STORE-SQLITE-DIR",
    [HM_SQLITE_DB_EBUSY] = "STORE-SQLITE-BUSY",
    [HM_SQLITE_DB_EFOREIGN] = "STORE-SQLITE-FOREIGN",
    [HM_SQLITE_DB_ECORRUPT] = "STORE-SQLITE-CORRUPT",
    [HM_SQLITE_DB_EOTHER] = "STORE-SQLITE",
};

/* One store per data directory at a time: a second one (in this process
 * or another) would arm every stored reminder twice. */
hm_err hm_store_open_sqlite(const char *dir, hm_store **out)
{
    hm_sqlite_db_error e;
    sqlite_store *s;

    if (!dir || !*dir)
        return HM_EINVAL;
    s = hm_calloc(1, sizeof *s);
    if (hm_sqlite_db_open(&(hm_sqlite_db_config){.dir = dir,
                                                 .file = "hermes.db",
                                                 .lock_file = "hermes.lock",
                                                 .app_id = APP_ID,
                                                 .schema = schema,
                                                 .sql = sql_text,
                                                 .sql_count = ST_COUNT,
                                                 .log_tag = "STORE-SQLITE"},
                          &s->d, &e) != HM_OK) {
        HM_LOG_ERROR(fault_tag[e.fault], "%s", e.text);
        hm_free(s);
        return HM_ESTORE;
    }
    *out = hm_store_create(&sqlite_ops, s);
    return HM_OK;
}
