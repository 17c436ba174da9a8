/* tests/apps/mqtt/test_persist_rows.c: how the SQLite store reads rows it
 * did not write itself (a damaged or hand-edited file): a value of another
 * type than the broker writes is a load error naming the file, never a
 * second session for one client or a QoS SQLite guessed from text. Found by
 * fuzz/fuzz_mqtt_persist_sqlite.c. */
#include "apps/mqtt/persist.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static char file[128];

static void setup(void)
{
    mqtt_persist *p;
    mqtt_file_error err;

    snprintf(dir, sizeof dir, "/tmp/hm-test-rows-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/%s", dir, MQTT_PERSIST_FILE);
    cr_assert_eq(mqtt_persist_open_sqlite(dir, &p, &err), HM_OK, "%s",
                 err.text);
    mqtt_persist_close(p);
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void sql(const char *text)
{
    sqlite3 *db;

    cr_assert_eq(sqlite3_open(file, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(db));
    sqlite3_close(db);
}

static const char *on_session(void *arg, const char *id, const uint8_t *rec,
                              size_t len)
{
    (void)id;
    (void)rec;
    (void)len;
    (*(int *)arg)++;
    return NULL;
}

static const char *on_retained(void *arg, const char *t, size_t tl,
                               const uint8_t *p, size_t pl, uint8_t qos)
{
    (void)t;
    (void)tl;
    (void)p;
    (void)pl;
    (void)qos;
    (*(int *)arg)++;
    return NULL;
}

static const char *on_inbound(void *arg, const char *id, uint16_t pid)
{
    (void)id;
    (void)pid;
    (*(int *)arg)++;
    return NULL;
}

/* Opens and loads the store; `*visits` counts the visitor's calls. */
static hm_err load(int *visits, mqtt_file_error *err)
{
    mqtt_persist *p;
    mqtt_persist_visitor v = {on_session, on_retained, on_inbound, visits};
    hm_err e;

    cr_assert_eq(mqtt_persist_open_sqlite(dir, &p, err), HM_OK);
    e = mqtt_persist_load(p, &v, err);
    mqtt_persist_close(p);
    return e;
}

TestSuite(persist_rows, .init = setup, .fini = teardown);

Test(persist_rows, rows_as_the_broker_writes_them_load)
{
    int visits = 0;
    mqtt_file_error err;

    sql("INSERT INTO mqtt_session VALUES ('a', x'00');"
        "INSERT INTO mqtt_retained VALUES (x'612f62', 1, x'6869');"
        "INSERT INTO mqtt_inbound VALUES ('a', 7);");
    cr_assert_eq(load(&visits, &err), HM_OK, "%s", err.text);
    cr_assert_eq(visits, 3);
}

Test(persist_rows, a_client_id_that_is_a_blob_is_refused)
{
    int visits = 0;
    mqtt_file_error err;

    /* 'a' and x'6100' ("a\0") would both have loaded as client "a". */
    sql("INSERT INTO mqtt_session VALUES ('a', x'00');"
        "INSERT INTO mqtt_session VALUES (x'6100', x'00');");
    cr_assert_eq(load(&visits, &err), HM_ESTORE);
    cr_assert(strstr(err.text, file) && strstr(err.text, "client id"), "%s",
              err.text);
}

Test(persist_rows, a_client_id_with_a_nul_is_refused)
{
    int visits = 0;
    mqtt_file_error err;

    sql("INSERT INTO mqtt_session VALUES (CAST(x'610062' AS TEXT), x'00');");
    cr_assert_eq(load(&visits, &err), HM_ESTORE);
    cr_assert_eq(visits, 0);
}

Test(persist_rows, a_qos_or_packet_id_that_is_not_an_integer_is_refused)
{
    int visits = 0;
    mqtt_file_error err;

    sql("INSERT INTO mqtt_retained VALUES (x'612f62', '1x', x'6869');");
    cr_assert_eq(load(&visits, &err), HM_ESTORE);
    sql("DELETE FROM mqtt_retained;"
        "INSERT INTO mqtt_inbound VALUES ('a', 7.5);");
    cr_assert_eq(load(&visits, &err), HM_ESTORE);
    cr_assert_eq(visits, 0);
}
