/* apps/mqtt/session_msg.h: the messages a connection receiver and a session
 * receiver exchange, and their JSON codecs, so that they can cross a cluster
 * link (the session of a client id lives on the node placement picks, its
 * connection on the node the client dialled).
 *
 * Key decision (ADR 0105): across nodes a message's sender is the cluster's
 * peer receiver, not the connection, so every message that must be matched
 * to a connection names it in its payload (`conn`: the connection
 * receiver's address, "mqtt/conn/<node>/<id>" in a cluster). A connection on
 * the session's own node is still written to directly (`mqtt_attach.conn`,
 * never encoded); one on another node gets the encoded packets as
 * "mqtt.out" messages and writes them itself. Binary bytes travel in
 * base64. The decoders take JSON from another node: every field is checked
 * (type, length, range) and anything else is HM_EPROTO, never a crash. The
 * codecs are pure (jansson and libcrypto's base64 only) and thread-safe. */
#ifndef HM_APPS_MQTT_SESSION_MSG_H
#define HM_APPS_MQTT_SESSION_MSG_H

#include "apps/mqtt/outbox.h"
#include "net/conn.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

/* Bytes in a connection's address, without the NUL (a runtime name). */
#define MQTT_MSG_NAME_MAX 1024
/* Bytes in a forwarded or written packet (MQTT's maximum packet). */
#define MQTT_MSG_DATA_MAX (268435455u + 5u)

/* conn -> session: a client connected with this client id. Sender: the
 * conn. `conn` is a local connection's handle (a reference), NULL when the
 * attach came from another node. */
typedef struct mqtt_attach {
    hm_conn *conn;   /* reference or NULL; never encoded */
    char *conn_name; /* owned: the connection receiver's address */
    bool ws;         /* packets go out in WebSocket frames */
    bool clean;
    char *username; /* owned, or NULL (anonymous) */
} mqtt_attach;
extern const hm_type mqtt_attach_type;

/* Bytes: "mqtt.forward" (conn -> session: a SUBSCRIBE or UNSUBSCRIBE, whole;
 * `conn` the sender) and "mqtt.out" (session -> a connection on another
 * node: one encoded packet to write; `conn` NULL). */
typedef struct mqtt_blob {
    char *conn; /* owned, or NULL */
    size_t len;
    uint8_t data[];
} mqtt_blob;
extern const hm_type mqtt_forward_type;
extern const hm_type mqtt_out_type;

/* Returns owned: a blob holding a copy of `data` (`len` bytes) and of
 * `conn` (may be NULL). */
mqtt_blob *mqtt_blob_create(const char *conn, const void *data, size_t len);
void mqtt_blob_destroy(void *blob);

/* A name and inbound QoS 2 ids, for:
 *   "mqtt.attached" (session -> conn, CONNACK was written; arg: session
 *     present): `name` the session's node (NULL outside a cluster), `ids`
 *     the session's inbound QoS 2 ids;
 *   "mqtt.detach" (conn -> session, the connection closed): `name` the
 *     connection, `ids` its inbound QoS 2 ids;
 *   "mqtt.ack" (conn -> session, PUBACK, PUBREC or PUBCOMP; arg: type << 16
 *     | id): `name` the connection in a cluster; no payload otherwise;
 *   "mqtt.moved" (session -> conn, the session now lives on node `name`). */
typedef struct mqtt_ctl {
    char *name;         /* owned, or NULL */
    mqtt_qos2_ids *ids; /* owned, or NULL */
} mqtt_ctl;
extern const hm_type mqtt_attached_type;
extern const hm_type mqtt_detach_type;
extern const hm_type mqtt_ack_type;
extern const hm_type mqtt_moved_type;
/* "mqtt.lost" (a member -> "mqtt/members/<node>" of a node it had declared
 * dead and now hears again, ADR 0105): `name` the sender, whose sessions
 * let that node's connections go meanwhile; `ids` NULL. */
extern const hm_type mqtt_lost_type;

/* Returns owned: copies `name` (may be NULL), takes `ids` (may be NULL). */
mqtt_ctl *mqtt_ctl_create(const char *name, mqtt_qos2_ids *ids);
void mqtt_ctl_destroy(void *ctl);

/* No payload: "mqtt.kick" (session -> old conn: another connection took the
 * session over) and "mqtt.done" (session -> conn: the forwarded packet was
 * handled; read on). */
extern const hm_type mqtt_kick_type;
extern const hm_type mqtt_done_type;

/* router -> session: deliver. Payload: an mqtt_pub reference. arg: the
 * subscription's granted QoS. (Crosses a link only when it raced a session
 * moving to another node.) */
extern const hm_type mqtt_deliver_type;

/* old node -> the session's new node: a session moving because the
 * members changed, sent to its own address (now placed there), or, from a
 * node leaving the cluster, to the new node's "mqtt/members/<node>" with
 * `client_id` and `from` set, held there until `from` has left. The first
 * message of the new activation, which adopts the state. */
typedef struct mqtt_handoff {
    char *client_id; /* owned, or NULL (sent to the session itself) */
    char *from;      /* owned: the node it leaves, or NULL */
    char *old;       /* owned: the node that forwards during the move
                        (cluster_move.c), or NULL */
    char *conn;      /* owned: the attached connection, or NULL (away) */
    char *username;  /* owned, or NULL */
    bool ws;         /* the connection speaks MQTT over WebSocket */
    bool persistent; /* CleanSession was 0 */
    bool present;    /* a client attached before (session present) */
    uint8_t *state;  /* owned: a session_state.h record */
    size_t state_len;
    char *owed;      /* owned, or NULL: what the connection was still owed
                        (session_out.c, ADR 0296) */
} mqtt_handoff;
extern const hm_type mqtt_handoff_type;
void mqtt_handoff_destroy(void *handoff);
/* A deep copy of `h` (borrowed); the caller owns it. */
mqtt_handoff *mqtt_handoff_clone(const mqtt_handoff *h);
struct json_t *mqtt_handoff_to_json(const void *handoff);
hm_err mqtt_handoff_from_json(const struct json_t *j, void **out);

/* The store -> a session: its stored state, at start-up, or a dead
 * member's after a fail-over (saver.c, docs/adr/0160). Sent to the
 * session's name; a fail-over's may meet a member that came up meanwhile
 * and now owns the name, so it crosses a link (docs/adr/0265): the
 * record in base64, the inbound QoS 2 ids, `adopt`. The record is checked
 * where it is restored (session_state.h). */
typedef struct mqtt_restore {
    uint8_t *record; /* owned: a session_state.h record */
    size_t len;
    mqtt_qos2_ids inbound; /* stored inbound QoS 2 ids */
    bool adopt; /* fail-over: a dead member's session, saved here now */
} mqtt_restore;
extern const hm_type mqtt_restore_type;
void mqtt_restore_destroy(void *restore);
struct json_t *mqtt_restore_to_json(const void *restore);
hm_err mqtt_restore_from_json(const struct json_t *j, void **out);

/* The old node's fanout -> a moved session (its token): nothing more is
 * forwarded after this (cluster_move.c). No payload. */
extern const hm_type mqtt_mv_done_type;

/* The cluster receiver -> every connection and session on this node: node
 * `payload` (an owned string) is gone; whatever lived there is lost. Never
 * crosses a link. */
extern const hm_type mqtt_node_gone_type;
/* This node is leaving the cluster -> each local session: hand your state
 * to node `payload` (an owned string) and end. Never crosses a link. */
extern const hm_type mqtt_leave_type;

/* A connection receiver's address in a cluster: "mqtt/conn/<node>/<id>".
 * Writes it (at most `cap` bytes with the NUL) into `out`. Returns false if
 * it does not fit. */
bool mqtt_conn_name_format(char *out, size_t cap, const char *node,
                           uint64_t id);
/* If `name` (borrowed) is such an address, writes its node's name into
 * `node_out` (`cap` bytes) and returns true. */
bool mqtt_conn_name_node(const char *name, char *node_out, size_t cap);

/* Frees a heap-allocated mqtt_qos2_ids (void * to serve as a free hook).
 * Accepts NULL. */
void mqtt_qos2_box_destroy(void *ids);

/* Registers every type above with `rt`, so that messages of these types
 * arriving from another node decode. Errors: those of
 * hm_runtime_register_type(). */
hm_err mqtt_session_msg_register(hm_runtime *rt);

/* ------------------------------------------------------ the codecs */

/* Each to_json borrows its payload and returns owned JSON (NULL: cannot
 * encode). Each from_json borrows `j` and writes an owned payload on HM_OK.
 * Errors: HM_EPROTO (a missing or ill-typed field, a bad length, bad
 * base64). Exposed for the tests and the fuzz target. */
struct json_t *mqtt_attach_to_json(const void *attach);
hm_err mqtt_attach_from_json(const struct json_t *j, void **out);
struct json_t *mqtt_blob_to_json(const void *blob);
hm_err mqtt_blob_from_json(const struct json_t *j, void **out);
struct json_t *mqtt_ctl_to_json(const void *ctl);
hm_err mqtt_ctl_from_json(const struct json_t *j, void **out);
struct json_t *mqtt_pub_to_json(const void *pub);
hm_err mqtt_pub_from_json(const struct json_t *j, void **out);

/* A handoff's `owed` (ADR 0296): what the old owner still held for the
 * connection, as entries separated by ',': "o" and the base64 of a packet
 * for the client ("mqtt.out"), "d" ("mqtt.done"), "a0" or "a1"
 * ("mqtt.attached", session present 0 or 1). */
typedef struct mqtt_owed_entry {
    char kind;       /* 'o', 'd' or 'a' */
    bool present;    /* 'a': session present */
    uint8_t *packet; /* 'o': owned, `len` bytes; else NULL */
    size_t len;
} mqtt_owed_entry;
/* The largest packet an 'o' entry may carry. */
#define MQTT_OWED_PACKET_MAX (1u << 20)
/* Appends entry `e` (borrowed) to the owned string `*acc` (NULL: empty) of
 * `*acc_len` characters. */
void mqtt_owed_append(char **acc, size_t *acc_len, const mqtt_owed_entry *e);
/* Reads the entry at `*cursor` (borrowed, NUL-terminated) into `out` and
 * moves `*cursor` past it. Errors: HM_ENOTFOUND (no more entries),
 * HM_EPROTO (a malformed entry, skipped; `out` untouched). */
hm_err mqtt_owed_next(const char **cursor, mqtt_owed_entry *out);

/* Base64 (RFC 4648, with padding) of `len` bytes at `data`. Returns owned,
 * NUL-terminated. */
char *mqtt_base64_encode(const void *data, size_t len);
/* Decodes NUL-terminated `s` (borrowed) into an owned buffer of
 * `*len_out` bytes (plus a spare byte), at most `max_len`. Errors:
 * HM_EPROTO (not canonical padded base64), HM_ETOOBIG. */
hm_err mqtt_base64_decode(const char *s, size_t max_len, uint8_t **out,
                          size_t *len_out);

#endif
