/* fuzz/fuzz_runtime_store_sqlite.c: libFuzzer target for the runtime's
 * SQLite store (runtime/store_sqlite.c) reading rows it did not write.
 *
 * As fuzz_mqtt_persist_sqlite.c: the input is a script of rows (receiver
 * state or reminders) whose every column gets a value of any SQLite type,
 * written with plain SQLite into a store the target made; then the store
 * is opened, a few names are loaded and the reminders listed, as the
 * runtime does at start (runtime/durable.c). Checked: no sanitizer report
 * or leak; a load gives bytes or "not found"; every reminder listed has a
 * non-empty receiver and name, never the same pair twice (two rows would
 * if text with a NUL or a blob were read as text) and a due time that is
 * not negative. */
#include "runtime/log.h"
#include "runtime/store.h"

#include "fuzz/sqlite_rows.h"

#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ROWS 16

static const char *dir;
static char file[128];

static void write_rows_of(script *s)
{
    static const char *const insert[] = {
        "INSERT OR REPLACE INTO hm_state VALUES (?1, ?2)",
        "INSERT OR REPLACE INTO hm_reminder VALUES (?1, ?2, ?3, ?4)"};
    static const int columns[] = {2, 4};

    write_rows(file, "DELETE FROM hm_state; DELETE FROM hm_reminder;", insert,
               columns, 2, MAX_ROWS, s);
}

/* The (receiver, name) pairs listed, to catch one listed twice. */
static char seen[MAX_ROWS][80];
static int seen_count;

static void on_reminder(void *arg, const hm_store_reminder *r)
{
    char pair[80];

    (void)arg;
    check(r->receiver && r->name && r->receiver[0] && r->name[0]);
    check(r->due_unix_ms <= INT64_MAX);
    snprintf(pair, sizeof pair, "%s\n%s", r->receiver, r->name);
    for (int i = 0; i < seen_count; i++)
        check(strcmp(seen[i], pair) != 0);
    check(seen_count < MAX_ROWS);
    strcpy(seen[seen_count++], pair);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const files[] = {"hermes.db", "hermes.db-wal",
                                        "hermes.db-shm", "hermes.db-journal",
                                        "hermes.lock", NULL};
    hm_store *s;

    (void)argc;
    (void)argv;
    hm_log_set_sink(quiet_log, NULL); /* refusals are expected here */
    dir = scratch_make(files);
    snprintf(file, sizeof file, "%s/hermes.db", dir);
    check(hm_store_open_sqlite(dir, &s) == HM_OK);
    hm_store_destroy(s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"", "a", "1", "a\xff"};
    script sc = {data, size};
    hm_store *s;

    write_rows_of(&sc);
    seen_count = 0;
    check(hm_store_open_sqlite(dir, &s) == HM_OK);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        void *bytes = NULL;
        size_t len = 0;
        hm_err e = hm_store_load(s, keys[i], &bytes, &len);

        check(e == HM_OK || e == HM_ENOTFOUND);
        free(bytes);
    }
    (void)hm_store_reminder_each(s, on_reminder, NULL);
    hm_store_destroy(s);
    return 0;
}
