/* runtime/sqlite_db.c: a checked SQLite file in a locked directory (see
 * sqlite_db.h). The key decision is that every check happens at open,
 * before the first write: a foreign, truncated or corrupt file is refused
 * with "FILE: what is wrong" (the caller logs or reports it), never found
 * later by a failing statement. quick_check reads the whole file once
 * (about a second per GB). */
#include "runtime/sqlite_db.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 2000

struct hm_sqlite_db {
    sqlite3 *db;
    char *path;
    int lock_fd; /* holds the directory's lock, or -1 */
    const char *const *sql;
    sqlite3_stmt **st;
    size_t st_count;
    const char *tag;
};

static hm_err set_error(hm_sqlite_db_error *err, hm_sqlite_db_fault fault,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static hm_err set_error(hm_sqlite_db_error *err, hm_sqlite_db_fault fault,
                        const char *fmt, ...)
{
    va_list ap;

    err->fault = fault;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    return HM_ESTORE;
}

/* flock() is tied to the open file: released by close() or by death. */
static hm_err lock_dir(hm_sqlite_db *d, const hm_sqlite_db_config *cfg,
                       hm_sqlite_db_error *err)
{
    size_t len = strlen(cfg->dir) + strlen(cfg->lock_file) + 2;
    char *path = hm_alloc(len);
    hm_err e = HM_OK;

    snprintf(path, len, "%s/%s", cfg->dir, cfg->lock_file);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0)
        e = set_error(err, HM_SQLITE_DB_EDIR, "%s: %s", path,
                      strerror(errno));
    else if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0)
        e = set_error(err, HM_SQLITE_DB_EBUSY,
                      "%s: in use by another process: %s", cfg->dir,
                      strerror(errno));
    hm_free(path);
    return e;
}

/* SQLite's quick_check: "ok", or the first problem it reports. */
static hm_err quick_check(hm_sqlite_db *d, hm_sqlite_db_error *err)
{
    sqlite3_stmt *st = NULL;
    hm_err e = HM_OK;
    int rc;

    if (sqlite3_prepare_v2(d->db, "PRAGMA quick_check(1)", -1, &st, NULL) !=
        SQLITE_OK)
        return set_error(err, HM_SQLITE_DB_ECORRUPT, "%s: %s", d->path,
                         sqlite3_errmsg(d->db));
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);

        if (line && strcmp(line, "ok") != 0)
            e = set_error(err, HM_SQLITE_DB_ECORRUPT, "%s: corrupt: %s",
                          d->path, line);
    } else {
        e = set_error(err, HM_SQLITE_DB_ECORRUPT, "%s: corrupt: %s", d->path,
                      sqlite3_errmsg(d->db));
    }
    sqlite3_finalize(st);
    return e;
}

/* Identity, integrity, journal mode, schema and statements. */
static hm_err set_up(hm_sqlite_db *d, const hm_sqlite_db_config *cfg,
                     hm_sqlite_db_error *err)
{
    sqlite3_stmt *st = NULL;
    sqlite3_int64 app_id = -1;
    char pragma[64];
    hm_err e;

    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, BUSY_TIMEOUT_MS);
    /* Reading the header is what fails on a file that is no database. */
    if (sqlite3_prepare_v2(d->db, "PRAGMA application_id", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        app_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (app_id < 0)
        return set_error(err, HM_SQLITE_DB_ECORRUPT,
                         "%s: not a readable database: %s", d->path,
                         sqlite3_errmsg(d->db));
    if (app_id != 0 && app_id != (sqlite3_int64)cfg->app_id)
        return set_error(err, HM_SQLITE_DB_EFOREIGN,
                         "%s: a database of another application "
                         "(application id 0x%08llx)",
                         d->path, (unsigned long long)app_id);
    if ((e = quick_check(d, err)) != HM_OK)
        return e;
    snprintf(pragma, sizeof pragma, "PRAGMA application_id=%lld",
             (long long)(int32_t)cfg->app_id);
    if (sqlite3_exec(d->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(d->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(d->db, cfg->schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(d->db, pragma, NULL, NULL, NULL) != SQLITE_OK)
        return set_error(err, HM_SQLITE_DB_EOTHER, "%s: set-up: %s", d->path,
                         sqlite3_errmsg(d->db));
    for (size_t i = 0; i < d->st_count; i++)
        if (sqlite3_prepare_v3(d->db, cfg->sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &d->st[i],
                               NULL) != SQLITE_OK)
            return set_error(err, HM_SQLITE_DB_EOTHER, "%s: %s: %s", d->path,
                             cfg->sql[i], sqlite3_errmsg(d->db));
    return HM_OK;
}

hm_err hm_sqlite_db_open(const hm_sqlite_db_config *cfg, hm_sqlite_db **out,
                         hm_sqlite_db_error *err)
{
    hm_sqlite_db *d;
    size_t len;

    if (mkdir(cfg->dir, 0700) != 0 && errno != EEXIST)
        return set_error(err, HM_SQLITE_DB_EDIR,
                         "%s: cannot create the directory: %s", cfg->dir,
                         strerror(errno));
    d = hm_calloc(1, sizeof *d);
    d->lock_fd = -1;
    d->sql = cfg->sql;
    d->st_count = cfg->sql_count;
    d->st = hm_calloc(cfg->sql_count + 1, sizeof *d->st);
    d->tag = cfg->log_tag;
    len = strlen(cfg->dir) + strlen(cfg->file) + 2;
    d->path = hm_alloc(len);
    snprintf(d->path, len, "%s/%s", cfg->dir, cfg->file);
    if (lock_dir(d, cfg, err) != HM_OK)
        goto fail;
    if (sqlite3_open_v2(d->path, &d->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        set_error(err, HM_SQLITE_DB_ECORRUPT, "%s: cannot open: %s", d->path,
                  d->db ? sqlite3_errmsg(d->db) : "out of memory");
        goto fail;
    }
    if (set_up(d, cfg, err) != HM_OK)
        goto fail;
    *out = d;
    return HM_OK;

fail:
    hm_sqlite_db_close(d);
    return HM_ESTORE;
}

void hm_sqlite_db_close(hm_sqlite_db *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->st_count; i++)
        sqlite3_finalize(d->st[i]);
    sqlite3_close_v2(d->db); /* tolerates NULL; checkpoints the WAL */
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* releases the flock */
    hm_free(d->st);
    hm_free(d->path);
    hm_free(d);
}

sqlite3 *hm_sqlite_db_handle(hm_sqlite_db *d)
{
    return d->db;
}

const char *hm_sqlite_db_path(const hm_sqlite_db *d)
{
    return d->path;
}

sqlite3_stmt *hm_sqlite_db_stmt(hm_sqlite_db *d, size_t i)
{
    HM_ASSERT(i < d->st_count);
    return d->st[i];
}

hm_err hm_sqlite_db_fail(hm_sqlite_db *d, const char *what)
{
    HM_LOG_ERROR(d->tag, "%s: %s: %s (code %d)", d->path, what,
                 sqlite3_errmsg(d->db), sqlite3_extended_errcode(d->db));
    return HM_ESTORE;
}

hm_err hm_sqlite_db_run(hm_sqlite_db *d, size_t i, const char *what)
{
    sqlite3_stmt *st = hm_sqlite_db_stmt(d, i);
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? HM_OK
                             : hm_sqlite_db_fail(d, what ? what : d->sql[i]);
}
