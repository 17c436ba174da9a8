/* tests/runtime/test_store.c: durable state and reminders over the SQLite
 * store, with real database files in a fresh temporary directory: saving on
 * deactivation, loading on activation, write-through, surviving a restart
 * (runtime and store closed and opened again), reminders after a restart,
 * and every storage error surfaced (corrupt and truncated files, a data
 * directory that cannot be made, undecodable records). */
#include "tests/runtime/durable_test.h"

#include "runtime/log.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
    memset(&DJ, 0, sizeof DJ);
    snprintf(dir, sizeof dir, "/tmp/hermes-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(store, .init = make_dir, .fini = remove_dir, .timeout = 20);

static hm_store *open_store(void)
{
    hm_store *s;

    cr_assert_eq(hm_store_open_sqlite(dir, &s), HM_OK);
    return s;
}

/* Log capture: the ids of ERROR lines, concatenated. */
static char logged[1024];

static void capture(void *arg, hm_log_level level, const char *id,
                    const char *line)
{
    if (level == HM_LOG_LEVEL_ERROR)
        strncat(logged, id, sizeof logged - strlen(logged) - 2);
}

static hm_err open_captured(hm_store **s)
{
    hm_err err;

    logged[0] = '\0';
    hm_log_set_sink(capture, NULL);
    err = hm_store_open_sqlite(dir, s);
    hm_log_set_sink(NULL, NULL);
    return err;
}

Test(store, state_is_saved_on_idle_deactivation_and_loaded_on_reactivation)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    hm_runtime_stats st;

    deliver(rt, "c/a", &INC, 5);
    cr_assert_eq(stored_count(s, "c/a"), -1, "not saved while active");
    hm_runtime_advance(rt, 3000);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(stored_count(s, "c/a"), 5);
    deliver(rt, "c/a", &INC, 1);
    cr_assert_eq(DJ.last_count, 6);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, write_through_saves_after_every_message)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    deliver(rt, "wt/a", &INC, 3);
    cr_assert_eq(stored_count(s, "wt/a"), 3);
    deliver(rt, "wt/a", &INC, 4);
    cr_assert_eq(stored_count(s, "wt/a"), 7);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, state_survives_closing_and_reopening_runtime_and_store)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    deliver(rt, "c/a", &INC, 7);
    hm_runtime_destroy(rt); /* close saves every live activation */
    hm_store_destroy(s);

    s = open_store();
    rt = durable_rt(s);
    deliver(rt, "c/a", &INC, 1);
    cr_assert_eq(DJ.last_count, 8);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, save_on_demand_writes_the_state_now)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    deliver(rt, "c/a", &INC, 2);
    deliver(rt, "c/a", &SAVE, 0);
    cr_assert_eq(DJ.last_save, HM_OK);
    cr_assert_eq(stored_count(s, "c/a"), 2);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, a_handler_error_discards_unsaved_changes)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    deliver(rt, "c/a", &INC, 5);
    deliver(rt, "c/a", &SAVE, 0);
    deliver(rt, "c/a", &INC, 2); /* in memory only */
    deliver(rt, "c/a", &FAIL, 0);
    cr_assert_eq(stored_count(s, "c/a"), 5);
    deliver(rt, "c/a", &INC, 1);
    cr_assert_eq(DJ.last_count, 6, "reactivated from the last save");
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, an_encoder_with_nothing_to_keep_deletes_the_record)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    deliver(rt, "wt/a", &INC, 5);
    cr_assert_eq(stored_count(s, "wt/a"), 5);
    deliver(rt, "wt/a", &CLEAR, 0);
    cr_assert_eq(stored_count(s, "wt/a"), -1);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, an_undecodable_record_refuses_the_activation_and_is_kept)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    void *data;
    size_t len;

    cr_assert_eq(hm_store_save(s, "c/a", "garbage", 7), HM_OK);
    hm_log_set_sink(capture, NULL);
    deliver(rt, "c/a", &INC, 1);
    hm_log_set_sink(NULL, NULL);
    cr_assert_eq(DJ.dead, 1);
    cr_assert_eq(DJ.store_failures, 1);
    cr_assert_eq(DJ.last_failure, HM_EPROTO);
    cr_assert_eq(hm_store_load(s, "c/a", &data, &len), HM_OK);
    cr_assert(len == 7 && memcmp(data, "garbage", 7) == 0, "not overwritten");
    free(data);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, a_codec_without_a_store_refuses_the_activation)
{
    hm_runtime *rt = durable_rt(NULL);

    hm_log_set_sink(capture, NULL);
    deliver(rt, "c/a", &INC, 1);
    hm_log_set_sink(NULL, NULL);
    cr_assert_eq(DJ.dead, 1);
    cr_assert_eq(DJ.last_failure, HM_EINVAL);
    hm_runtime_destroy(rt);
}

Test(store, a_one_shot_reminder_fires_after_a_restart_and_is_then_deleted)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    cr_assert_eq(hm_runtime_remind(rt, "c/r", "wake", 5000, 0), HM_OK);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
    cr_assert_eq(DJ.reminders, 0);

    s = open_store();
    cr_assert_eq(stored_reminders(s), 1);
    rt = durable_rt(s);
    hm_runtime_advance(rt, 5000);
    cr_assert_eq(DJ.reminders, 1);
    cr_assert_str_eq(DJ.last_reminder, "wake");
    cr_assert_eq(stored_reminders(s), 0);
    hm_runtime_advance(rt, 10000);
    cr_assert_eq(DJ.reminders, 1, "a one-shot fires once");
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, a_receiver_arms_a_reminder_that_reactivates_it)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    hm_runtime_stats st;

    deliver(rt, "c/r", &REMIND, 10000);
    hm_runtime_advance(rt, 3000); /* idle: deactivated */
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.live, 0);
    hm_runtime_advance(rt, 7000);
    cr_assert_eq(DJ.reminders, 1);
    cr_assert_str_eq(DJ.last_reminder, "r");
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, a_periodic_reminder_keeps_its_period_until_forgotten)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    cr_assert_eq(hm_runtime_remind(rt, "c/p", "tick", 1000, 1000), HM_OK);
    hm_runtime_advance(rt, 3500);
    cr_assert_eq(DJ.reminders, 3);
    cr_assert_eq(hm_runtime_forget(rt, "c/p", "tick"), HM_OK);
    hm_runtime_advance(rt, 5000);
    cr_assert_eq(DJ.reminders, 3);
    cr_assert_eq(stored_reminders(s), 0);
    cr_assert_eq(hm_runtime_forget(rt, "c/p", "tick"), HM_ENOTFOUND);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, replacing_a_reminder_rearms_it_once)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    cr_assert_eq(hm_runtime_remind(rt, "c/r", "x", 1000, 0), HM_OK);
    cr_assert_eq(hm_runtime_remind(rt, "c/r", "x", 5000, 0), HM_OK);
    hm_runtime_advance(rt, 4000);
    cr_assert_eq(DJ.reminders, 0);
    hm_runtime_advance(rt, 1000);
    cr_assert_eq(DJ.reminders, 1);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, a_tick_already_queued_when_its_reminder_is_forgotten_is_dropped)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    hm_addr *r;

    /* Same deadline: the FORGET timer (armed first) and the reminder's
     * tick are queued together, FORGET first. */
    cr_assert_eq(hm_runtime_intern(rt, "c/r", &r), HM_OK);
    cr_assert_eq(hm_runtime_send_after(rt, r, hm_msg_create(&FORGET, NULL, 0),
                                       1000, NULL),
                 HM_OK);
    cr_assert_eq(hm_runtime_remind(rt, "c/r", "r", 1000, 0), HM_OK);
    hm_runtime_advance(rt, 1000);
    cr_assert_eq(DJ.reminders, 0);
    cr_assert_eq(stored_reminders(s), 0);
    hm_addr_release(r);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, a_spawned_receiver_that_never_ran_leaves_the_record_alone)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    hm_receiver rec = {0};

    cr_assert_eq(hm_store_save(s, "c/s", "5", 1), HM_OK);
    counter_factory(NULL, "c/s", &rec);
    cr_assert_eq(hm_runtime_spawn(rt, "c/s", &rec, NULL), HM_OK);
    hm_runtime_destroy(rt); /* before any message: never loaded */
    cr_assert_eq(stored_count(s, "c/s"), 5);
    hm_store_destroy(s);
}

Test(store, a_periodic_reminder_survives_a_restart)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    cr_assert_eq(hm_runtime_remind(rt, "c/p", "tick", 1000, 1000), HM_OK);
    hm_runtime_advance(rt, 1500);
    cr_assert_eq(DJ.reminders, 1);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);

    s = open_store();
    rt = durable_rt(s);
    hm_runtime_advance(rt, 3000);
    cr_assert_geq(DJ.reminders, 3, "ticks go on after the restart");
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store, open_refuses_a_file_that_is_not_a_database)
{
    char path[96];
    FILE *f;
    hm_store *s;

    snprintf(path, sizeof path, "%s/hermes.db", dir);
    f = fopen(path, "w");
    for (int i = 0; i < 200; i++)
        fputs("this is not a database at all. ", f);
    fclose(f);
    cr_assert_eq(open_captured(&s), HM_ESTORE);
    cr_assert(strstr(logged, "STORE-SQLITE"), "logged: %s", logged);
}

Test(store, open_refuses_a_truncated_file)
{
    char path[96], blob[2000];
    hm_store *s = open_store();
    struct stat sb;

    memset(blob, 'x', sizeof blob);
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof key, "c/%d", i);
        cr_assert_eq(hm_store_save(s, key, blob, sizeof blob), HM_OK);
    }
    hm_store_destroy(s); /* checkpoints the WAL into the file */
    snprintf(path, sizeof path, "%s/hermes.db", dir);
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(truncate(path, sb.st_size / 2), 0);
    cr_assert_eq(open_captured(&s), HM_ESTORE);
    cr_assert(strstr(logged, "STORE-SQLITE"), "logged: %s", logged);
}

Test(store, a_data_directory_serves_one_store_at_a_time)
{
    hm_store *s = open_store(), *second;

    cr_assert_eq(open_captured(&second), HM_ESTORE);
    cr_assert(strstr(logged, "STORE-SQLITE-BUSY"), "logged: %s", logged);
    hm_store_destroy(s);
    s = open_store(); /* released by the close */
    hm_store_destroy(s);
}

Test(store, open_refuses_a_database_of_another_application)
{
    char path[96];
    sqlite3 *db;
    hm_store *s;

    snprintf(path, sizeof path, "%s/hermes.db", dir);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "PRAGMA application_id=42;"
                                  "CREATE TABLE t(x)", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(open_captured(&s), HM_ESTORE);
    cr_assert(strstr(logged, "STORE-SQLITE-FOREIGN"), "logged: %s", logged);
}

Test(store, open_fails_when_the_data_directory_cannot_be_made)
{
    char path[96];
    FILE *f;
    hm_store *s;

    snprintf(path, sizeof path, "%s/file", dir);
    f = fopen(path, "w");
    fclose(f);
    strncat(dir, "/file/data", sizeof dir - strlen(dir) - 1);
    cr_assert_eq(open_captured(&s), HM_ESTORE);
    cr_assert(strstr(logged, "STORE-SQLITE-DIR"), "logged: %s", logged);
    dir[strlen(dir) - strlen("/file/data")] = '\0';
}

static void count_rx_tick(void *arg, const hm_store_reminder *r)
{
    cr_assert_str_eq(r->receiver, "rx");
    cr_assert_str_eq(r->name, "tick");
    cr_assert_eq(r->period_ms, 500u);
    (*(int *)arg)++;
}

/* Found by fuzz/fuzz_runtime_store_sqlite.c: rows the store did not write
 * were read as whatever SQLite converted them to (a blob "rx\0y" as "rx",
 * so one reminder twice; a negative due time as year 292 million; a
 * period cut to 32 bits). Each is now skipped with STORE-SQLITE-CORRUPT. */
Test(store, reminder_rows_of_other_types_are_skipped_and_logged)
{
    char path[96];
    sqlite3 *db;
    hm_store *s;
    int listed = 0;

    cr_assert_eq(open_captured(&s), HM_OK);
    hm_store_destroy(s);
    snprintf(path, sizeof path, "%s/hermes.db", dir);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db,
                     "INSERT INTO hm_reminder VALUES ('rx', 'tick', 1, 500);"
                     "INSERT INTO hm_reminder VALUES (x'72780079', 'tick', 1,"
                     " 500);"
                     "INSERT INTO hm_reminder VALUES ('a', 'b', -1, 0);"
                     "INSERT INTO hm_reminder VALUES ('c', 'd', 1, 4294967296);"
                     "INSERT INTO hm_reminder VALUES ('e', 'f', '12x', 0);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(open_captured(&s), HM_OK);
    hm_log_set_sink(capture, NULL);
    cr_assert_eq(hm_store_reminder_each(s, count_rx_tick, &listed), HM_OK);
    hm_log_set_sink(NULL, NULL);
    cr_assert_eq(listed, 1);
    cr_assert(strstr(logged, "STORE-SQLITE-CORRUPT"), "logged: %s", logged);
    hm_store_destroy(s);
}
