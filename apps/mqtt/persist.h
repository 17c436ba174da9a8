/* apps/mqtt/persist.h: where the broker's durable state lives: persistent
 * sessions (one record each, session_state.h), retained messages, and the
 * ids of inbound QoS 2 messages a persistent client has not released.
 *
 * Two backends behind one interface. SQLite is the default: one file,
 * `hermes-mqtt.db`, in the `persistence_location` directory, WAL mode with
 * synchronous=NORMAL (a commit appends to the log without an fsync; a
 * kill -9 loses nothing committed, a power loss at most the commits since
 * the last checkpoint; docs/adr/0111). Redis holds the same state for the
 * nodes of a cluster, so a session outlives the node that held it.
 *
 * Changes are made in batches (begin, any number of puts and deletes,
 * commit), because the broker commits once per group of changes, not once
 * per message (group commit, docs/adr/0111). The key decision for start-up
 * is that opening checks the file (SQLite's application id and quick_check)
 * and loading checks every row (each session record is decoded, each
 * retained topic validated), so a corrupt, truncated or foreign store is an
 * error naming the file and what is wrong, never a crash later.
 *
 * Not thread-safe: one owner at a time (the broker at start and stop, its
 * persist receiver in between). */
#ifndef HM_APPS_MQTT_PERSIST_H
#define HM_APPS_MQTT_PERSIST_H

#include "apps/mqtt/file_error.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MQTT_PERSIST_FILE "hermes-mqtt.db"

typedef struct mqtt_persist mqtt_persist;

/* Opens (creating if missing) `dir`/hermes-mqtt.db; `dir` (borrowed) is
 * created if missing (its parent must exist) and locked while open, so a
 * second broker on it is refused. Returns owned on HM_OK. Errors:
 * HM_ESTORE with `err` saying "FILE: what is wrong" (cannot create,
 * corrupt, truncated, not a Hermes MQTT store, in use). */
hm_err mqtt_persist_open_sqlite(const char *dir, mqtt_persist **out,
                                mqtt_file_error *err);

/* Connects to Redis at `host`:`port` (borrowed) and keeps the state under
 * keys starting with `prefix` (borrowed; NULL: "hermes-mqtt:"). `node`
 * (borrowed; NULL outside a cluster) is the cluster node this broker is:
 * every session it saves is filed as held by `node`, and
 * mqtt_persist_load() then returns only the sessions held by `node` or by
 * nobody (docs/adr/0160). Returns owned on HM_OK. Errors: HM_ESTORE with
 * `err` set. */
hm_err mqtt_persist_open_redis(const char *host, int port, const char *prefix,
                               const char *node, mqtt_persist **out,
                               mqtt_file_error *err);

/* Closes the store (a SQLite close checkpoints the log). Accepts NULL. */
void mqtt_persist_close(mqtt_persist *p);

/* The file or server, for log lines. Returns borrowed (until close). */
const char *mqtt_persist_where(const mqtt_persist *p);

/* ------------------------------------------------------------ batches */

/* Starts a batch. Errors: HM_ESTORE (logged). */
hm_err mqtt_persist_begin(mqtt_persist *p);
/* Inside a batch. Each borrows its arguments. A NULL `record` deletes the
 * session and its inbound ids. An empty `payload` deletes the retained
 * message. Errors: HM_ESTORE (logged; roll the batch back). */
hm_err mqtt_persist_put_session(mqtt_persist *p, const char *client_id,
                                const uint8_t *record, size_t len);
hm_err mqtt_persist_put_retained(mqtt_persist *p, const char *topic,
                                 size_t topic_len, const uint8_t *payload,
                                 size_t payload_len, uint8_t qos);
hm_err mqtt_persist_inbound(mqtt_persist *p, const char *client_id,
                            uint16_t packet_id, bool add);
/* Makes the batch durable (as the backend's durability defines it) or
 * nothing of it. Errors: HM_ESTORE (logged; the batch is rolled back). */
hm_err mqtt_persist_commit(mqtt_persist *p);
/* Abandons the batch. */
void mqtt_persist_rollback(mqtt_persist *p);

/* ------------------------------------------------------------ loading */

/* What mqtt_persist_load() finds; every pointer is borrowed for the call.
 * A callback returns NULL to go on, or a static message saying why the
 * row is unusable (the load then fails with it). */
typedef struct mqtt_persist_visitor {
    const char *(*session)(void *arg, const char *client_id,
                           const uint8_t *record, size_t len);
    const char *(*retained)(void *arg, const char *topic, size_t topic_len,
                            const uint8_t *payload, size_t payload_len,
                            uint8_t qos);
    const char *(*inbound)(void *arg, const char *client_id,
                           uint16_t packet_id);
    void *arg;
} mqtt_persist_visitor;

/* Calls the visitor for every stored session, retained message (valid
 * topic, QoS <= 2, checked here) and inbound id. Errors: HM_ESTORE with
 * `err` saying "FILE: what is wrong" (a read error, or a row a callback
 * refused). */
hm_err mqtt_persist_load(mqtt_persist *p, const mqtt_persist_visitor *v,
                         mqtt_file_error *err);

/* Fail-over (docs/adr/0160): calls `v->session` and `v->inbound` (never
 * `v->retained`) for every session whose last save was made by cluster
 * node `node` (borrowed). A store that no other node shares (SQLite) has
 * none. Errors: HM_ESTORE with `err` set (a read error, a row refused). */
hm_err mqtt_persist_load_node(mqtt_persist *p, const char *node,
                              const mqtt_persist_visitor *v,
                              mqtt_file_error *err);

#endif
