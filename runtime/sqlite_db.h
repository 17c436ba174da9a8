/* runtime/sqlite_db.h: one SQLite file in a locked directory, checked at
 * open and set up with a fixed list of prepared statements; what the
 * runtime's receiver store (store_sqlite.c) and the MQTT broker's store
 * (apps/mqtt/persist.c) both need.
 *
 * Opening creates the directory if missing (mode 0700), takes an exclusive
 * flock() on a lock file in it (released by close or by the process dying,
 * so two owners never share a store), opens the file without SQLite's own
 * mutexes (the caller serialises), and checks it before anything is
 * written: the header must read (a file that is no database fails here),
 * the application id must be the caller's or 0 (a new file), and SQLite's
 * quick_check must say "ok". Then WAL mode with synchronous=NORMAL (a
 * commit appends to the log without an fsync; docs/adr/0091), the schema,
 * the application id, and the statements, prepared once. Not thread-safe:
 * one owner at a time. */
#ifndef HM_RUNTIME_SQLITE_DB_H
#define HM_RUNTIME_SQLITE_DB_H

#include "runtime/err.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_sqlite_db hm_sqlite_db;

typedef struct hm_sqlite_db_config {
    const char *dir;       /* created if missing; its parent must exist */
    const char *file;      /* the database's name in `dir` */
    const char *lock_file; /* the lock's name in `dir` */
    uint32_t app_id;       /* PRAGMA application_id of the caller's files */
    const char *schema;    /* CREATE ... IF NOT EXISTS statements */
    const char *const *sql; /* statements to prepare, `sql_count` of them */
    size_t sql_count;
    const char *log_tag;   /* the tag of the errors logged after open */
} hm_sqlite_db_config;

/* Why an open failed: the kind, and "FILE: what is wrong". */
typedef enum {
    HM_SQLITE_DB_EDIR,     /* the directory or lock file cannot be made */
    HM_SQLITE_DB_EBUSY,    /* another owner holds the directory's lock */
    HM_SQLITE_DB_EFOREIGN, /* a database of another application */
    HM_SQLITE_DB_ECORRUPT, /* not a readable database, or quick_check */
    HM_SQLITE_DB_EOTHER,   /* SQLite refused the set-up */
} hm_sqlite_db_fault;

typedef struct hm_sqlite_db_error {
    hm_sqlite_db_fault fault;
    char text[512];
} hm_sqlite_db_error;

/* Opens, checks and sets up `cfg->dir`/`cfg->file` (cfg and its strings
 * borrowed; `cfg->sql` and `cfg->log_tag` must outlive the database).
 * Returns owned on HM_OK. Errors: HM_ESTORE with `err` (borrowed) filled,
 * nothing logged. */
hm_err hm_sqlite_db_open(const hm_sqlite_db_config *cfg, hm_sqlite_db **out,
                         hm_sqlite_db_error *err);

/* Finalises the statements, closes the file (a clean close checkpoints
 * the log) and releases the lock. Accepts NULL. */
void hm_sqlite_db_close(hm_sqlite_db *d);

/* The connection and the file's path. Return borrowed until close. */
sqlite3 *hm_sqlite_db_handle(hm_sqlite_db *d);
const char *hm_sqlite_db_path(const hm_sqlite_db *d);

/* Statement `i` of the config's list (its bindings are the caller's).
 * Returns borrowed until close. */
sqlite3_stmt *hm_sqlite_db_stmt(hm_sqlite_db *d, size_t i);

/* Logs the connection's last error for `what` (borrowed) under the
 * config's tag: "FILE: WHAT: SQLite's message (code N)". Returns
 * HM_ESTORE. */
hm_err hm_sqlite_db_fail(hm_sqlite_db *d, const char *what);

/* Runs statement `i` to completion, then resets it and clears its
 * bindings. Errors: HM_ESTORE (logged with `what`, or the statement's
 * text when `what` is NULL). */
hm_err hm_sqlite_db_run(hm_sqlite_db *d, size_t i, const char *what);

#endif
