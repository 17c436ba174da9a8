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
 * file instead of failing a receiver later. The store (store.c) serialises
 * the calls, so the connection is opened without SQLite's own mutexes. */
#include "runtime/store.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define APP_ID 0x484d5331 /* "HMS1": a Hermes store, schema 1 */
#define BUSY_TIMEOUT_MS 2000

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
    sqlite3 *db;
    char *path;
    int lock_fd; /* holds the data directory's exclusive lock, or -1 */
    sqlite3_stmt *st[ST_COUNT];
} sqlite_store;

/* Logs the connection's last error for `what` and returns HM_ESTORE. */
static hm_err fail(sqlite_store *s, const char *what)
{
    HM_LOG_ERROR("STORE-SQLITE", "%s: %s: %s (code %d)", s->path, what,
                 sqlite3_errmsg(s->db), sqlite3_extended_errcode(s->db));
    return HM_ESTORE;
}

/* Runs one statement to completion. */
static hm_err run(sqlite_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return fail(s, what);
    return HM_OK;
}

static hm_err sq_load(void *impl, const char *key, void **data_out,
                      size_t *len_out)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st[ST_LOAD];
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
        err = fail(s, "load");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

static hm_err sq_save(void *impl, const char *key, const void *data,
                      size_t len)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st[ST_SAVE];

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, len ? data : "", len, SQLITE_STATIC);
    return run(s, st, "save");
}

static hm_err sq_remove(void *impl, const char *key)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st[ST_REMOVE];

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return run(s, st, "remove");
}

static hm_err sq_reminder_put(void *impl, const hm_store_reminder *r)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st[ST_RPUT];

    sqlite3_bind_text(st, 1, r->receiver, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->due_unix_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->period_ms);
    return run(s, st, "store a reminder");
}

static hm_err sq_reminder_remove(void *impl, const char *receiver,
                                 const char *name)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st[ST_RDEL];

    sqlite3_bind_text(st, 1, receiver, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    return run(s, st, "delete a reminder");
}

static hm_err sq_reminder_each(void *impl, hm_store_reminder_fn fn,
                               void *arg)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st[ST_REACH];
    hm_err err = HM_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        hm_store_reminder r = {
            .receiver = (const char *)sqlite3_column_text(st, 0),
            .name = (const char *)sqlite3_column_text(st, 1),
            .due_unix_ms = (uint64_t)sqlite3_column_int64(st, 2),
            .period_ms = (uint32_t)sqlite3_column_int64(st, 3),
        };
        if (r.receiver && r.name)
            fn(arg, &r);
    }
    if (rc != SQLITE_DONE)
        err = fail(s, "list reminders");
    sqlite3_reset(st);
    return err;
}

static void sq_close(void *impl)
{
    sqlite_store *s = impl;

    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    /* sqlite3_close_v2 tolerates NULL; a clean close checkpoints the WAL
     * and removes it. */
    sqlite3_close_v2(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    hm_free(s->path);
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

/* The single integer a pragma returns, or an error. */
static hm_err pragma_int(sqlite_store *s, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    hm_err err = HM_OK;

    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(s, sql);
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        err = fail(s, sql);
    sqlite3_finalize(st);
    return err;
}

/* SQLite's own consistency check; "ok" or the first problems it found. */
static hm_err check_integrity(sqlite_store *s)
{
    sqlite3_stmt *st = NULL;
    hm_err err = HM_OK;
    int rc;

    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(5)", -1, &st, NULL) !=
        SQLITE_OK)
        return fail(s, "integrity check");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (line && strcmp(line, "ok") != 0) {
            HM_LOG_ERROR("STORE-SQLITE-CORRUPT", "%s: corrupt: %s", s->path,
                         line);
            err = HM_ESTORE;
        }
    }
    if (rc != SQLITE_DONE && err == HM_OK)
        err = fail(s, "integrity check");
    sqlite3_finalize(st);
    return err;
}

/* Identity, journal mode, integrity and schema of a freshly opened file. */
static hm_err prepare_db(sqlite_store *s)
{
    int64_t app_id = 0;
    hm_err err;

    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* Reading the header is what fails on a file that is no database. */
    if ((err = pragma_int(s, "PRAGMA application_id", &app_id)) != HM_OK)
        return err;
    if (app_id != 0 && app_id != APP_ID) {
        HM_LOG_ERROR("STORE-SQLITE-FOREIGN",
                     "%s: a SQLite database of another application "
                     "(application id 0x%08llx), not a Hermes store",
                     s->path, (unsigned long long)app_id);
        return HM_ESTORE;
    }
    if ((err = check_integrity(s)) != HM_OK)
        return err;
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA application_id=1213027121", NULL, NULL,
                     NULL) != SQLITE_OK)
        return fail(s, "set up the schema");
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, sql_text[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK)
            return fail(s, sql_text[i]);
    return HM_OK;
}

/* One store per data directory at a time: a second one (in this process
 * or another) would arm every stored reminder twice. flock() is tied to
 * the open file, so it is released by close() or by the process dying. */
static hm_err lock_dir(sqlite_store *s, const char *dir)
{
    size_t len = strlen(dir) + sizeof "/hermes.lock";
    char *path = hm_alloc(len);
    hm_err err = HM_OK;

    snprintf(path, len, "%s/hermes.lock", dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        HM_LOG_ERROR("STORE-SQLITE-DIR", "%s: %s", path, strerror(errno));
        err = HM_ESTORE;
    } else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        HM_LOG_ERROR("STORE-SQLITE-BUSY", "%s: the data directory is in use "
                     "by another store: %s", dir, strerror(errno));
        err = HM_ESTORE;
    }
    hm_free(path);
    return err;
}

_Static_assert(APP_ID == 1213027121, "the pragma above spells APP_ID");

hm_err hm_store_open_sqlite(const char *dir, hm_store **out)
{
    sqlite_store *s;
    size_t len;
    hm_err err;

    if (!dir || !*dir)
        return HM_EINVAL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        HM_LOG_ERROR("STORE-SQLITE-DIR", "%s: cannot create the data "
                     "directory: %s", dir, strerror(errno));
        return HM_ESTORE;
    }
    s = hm_calloc(1, sizeof *s);
    s->lock_fd = -1;
    if ((err = lock_dir(s, dir)) != HM_OK)
        goto fail;
    len = strlen(dir) + sizeof "/hermes.db";
    s->path = hm_alloc(len);
    snprintf(s->path, len, "%s/hermes.db", dir);
    if (sqlite3_open_v2(s->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        err = s->db ? fail(s, "open") : HM_ESTORE;
        goto fail;
    }
    if ((err = prepare_db(s)) != HM_OK)
        goto fail;
    *out = hm_store_create(&sqlite_ops, s);
    return HM_OK;

fail:
    sq_close(s);
    return err;
}
