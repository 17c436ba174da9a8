/* fuzz/fuzz_mqtt_persist_sqlite.c: libFuzzer target for the MQTT broker's
 * reading of its SQLite store (apps/mqtt/persist.c), row by row.
 *
 * The file itself is SQLite's to check (the store runs quick_check on
 * open); what is ours is how each row's values are read. The input is a
 * script of rows: a byte picks the table (sessions, retained messages,
 * inbound QoS 2 ids), then each column gets a value of a type the script
 * picks (NULL, integer, real, text or blob, with bytes from the script), as
 * a damaged or hand-edited file could hold despite the declared types. The
 * rows are written with plain SQLite into a store the target made, then the
 * broker opens it and loads it. Checked: no sanitizer report or leak; a
 * load error names the file; the visitor gets what its contract promises
 * (a valid retained topic, QoS 0..2 and a payload; an inbound id in
 * 1..65535) and never the same client id twice. */
#include "apps/mqtt/persist.h"
#include "apps/mqtt/topic.h"

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
        "INSERT OR REPLACE INTO mqtt_session VALUES (?1, ?2)",
        "INSERT OR REPLACE INTO mqtt_retained VALUES (?1, ?2, ?3)",
        "INSERT OR REPLACE INTO mqtt_inbound VALUES (?1, ?2)"};
    static const int columns[] = {2, 3, 2};

    write_rows(file,
               "DELETE FROM mqtt_session; DELETE FROM mqtt_retained;"
               " DELETE FROM mqtt_inbound;",
               insert, columns, 3, MAX_ROWS, s);
}

/* The client ids the visitor was given, to catch one given twice. */
static char seen[MAX_ROWS][64];
static int seen_count;

static const char *on_session(void *arg, const char *id, const uint8_t *rec,
                              size_t len)
{
    (void)arg;
    (void)len;
    check(id && rec);
    for (int i = 0; i < seen_count; i++)
        check(strcmp(seen[i], id) != 0);
    check(seen_count < MAX_ROWS && strlen(id) < sizeof seen[0]);
    strcpy(seen[seen_count++], id);
    return NULL;
}

static const char *on_retained(void *arg, const char *topic, size_t topic_len,
                               const uint8_t *payload, size_t payload_len,
                               uint8_t qos)
{
    (void)arg;
    check(mqtt_topic_name_is_valid(topic, topic_len) && qos <= 2 && payload &&
          payload_len > 0);
    return NULL;
}

static const char *on_inbound(void *arg, const char *id, uint16_t pid)
{
    (void)arg;
    check(id && pid > 0);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const files[] = {
        MQTT_PERSIST_FILE, MQTT_PERSIST_FILE "-wal", MQTT_PERSIST_FILE "-shm",
        MQTT_PERSIST_FILE "-journal", "hermes-mqtt.lock", NULL};
    mqtt_persist *p;
    mqtt_file_error err;

    (void)argc;
    (void)argv;
    dir = scratch_make(files);
    snprintf(file, sizeof file, "%s/%s", dir, MQTT_PERSIST_FILE);
    check(mqtt_persist_open_sqlite(dir, &p, &err) == HM_OK);
    mqtt_persist_close(p);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    script s = {data, size};
    const mqtt_persist_visitor v = {on_session, on_retained, on_inbound,
                                    NULL};
    mqtt_persist *p;
    mqtt_file_error err;

    write_rows_of(&s);
    seen_count = 0;
    check(mqtt_persist_open_sqlite(dir, &p, &err) == HM_OK);
    if (mqtt_persist_load(p, &v, &err) != HM_OK)
        check(strncmp(err.text, file, strlen(file)) == 0);
    mqtt_persist_close(p);
    return 0;
}
