/* fuzz/sqlite_rows.h: what the two SQLite store targets share
 * (fuzz_mqtt_persist_sqlite.c, fuzz_runtime_store_sqlite.c): a value of any
 * SQLite type drawn from the script, rows of such values written into a
 * store's file, and a
 * scratch directory for the store (in /dev/shm where there is one: the
 * stores sync their commits), removed at exit. Header-only, static
 * functions: each target is one translation unit. */
#ifndef HM_FUZZ_SQLITE_ROWS_H
#define HM_FUZZ_SQLITE_ROWS_H

#include "fuzz/fuzz_common.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Binds to column `col` a value whose type (NULL, integer, real, text,
 * blob) and bytes (at most 31) come from the script. */
static void bind_any(script *s, sqlite3_stmt *st, int col)
{
    uint8_t kind = next(s), len = next(s) % 32;
    const uint8_t *bytes = s->p;
    int64_t n = 0;

    if (len > s->left)
        len = (uint8_t)s->left;
    s->p += len;
    s->left -= len;
    for (uint8_t i = 0; i < len && i < 8; i++)
        n = (int64_t)((uint64_t)n << 8 | bytes[i]);
    switch (kind % 5) {
    case 0:
        sqlite3_bind_null(st, col);
        break;
    case 1:
        sqlite3_bind_int64(st, col, n);
        break;
    case 2:
        sqlite3_bind_double(st, col, (double)n / 4.0);
        break;
    case 3:
        sqlite3_bind_text(st, col, (const char *)bytes, len, SQLITE_TRANSIENT);
        break;
    default:
        sqlite3_bind_blob(st, col, bytes, len, SQLITE_TRANSIENT);
        break;
    }
}

/* Writes rows drawn from the script into the SQLite file `file`: first
 * `clear` (SQL that empties the tables), then up to `max_rows` rows, each
 * into table t of `n` (a script byte picks it) with statement `insert[t]`
 * and `columns[t]` values from bind_any(). A row SQLite refuses (NOT NULL,
 * a duplicate key) is left out. */
static void write_rows(const char *file, const char *clear,
                       const char *const *insert, const int *columns, int n,
                       int max_rows, script *s)
{
    sqlite3 *db;

    check(sqlite3_open(file, &db) == SQLITE_OK);
    sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_exec(db, clear, NULL, NULL, NULL);
    for (int row = 0; row < max_rows && s->left > 0; row++) {
        int t = next(s) % n;
        sqlite3_stmt *st;

        check(sqlite3_prepare_v2(db, insert[t], -1, &st, NULL) == SQLITE_OK);
        for (int c = 1; c <= columns[t]; c++)
            bind_any(s, st, c);
        (void)sqlite3_step(st);
        sqlite3_finalize(st);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    check(sqlite3_close(db) == SQLITE_OK);
}

static char scratch_dir[64];
static const char *const *scratch_files; /* NULL-ended, in scratch_dir */

static void scratch_remove(void)
{
    char path[160];

    for (size_t i = 0; scratch_files && scratch_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", scratch_dir, scratch_files[i]);
        unlink(path);
    }
    rmdir(scratch_dir);
}

/* Makes the scratch directory; `files` (static) are removed with it. */
static const char *scratch_make(const char *const *files)
{
    snprintf(scratch_dir, sizeof scratch_dir, "%s/hm-fuzz-sqlite-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(scratch_dir))
        abort();
    scratch_files = files;
    atexit(scratch_remove);
    return scratch_dir;
}

#endif
