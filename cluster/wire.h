/* cluster/wire.h: the JSON bodies of the cluster's HP messages.
 *
 * Every cluster message is one JSON object on one HP line, tagged with
 * "v":1 and "t":"<type>" (the types below, all prefixed "cl." so they never
 * collide with the application's HP messages). This module turns an
 * hm_wire_msg into a jansson object and back and does nothing else: no I/O,
 * no state, no globals, so it is unit-tested and fuzzed on its own.
 *
 * Key decision: decoded strings are checked against named limits and a
 * character set *here*, once, so the state machines above (members,
 * presence) only ever see well-formed names and can copy them into
 * fixed-size fields. Node names, cluster names and addresses live in
 * fixed-size arrays; only lists (member gossip, snapshots, digests) and
 * presence names are heap-allocated and owned by the message. */
#ifndef HM_CLUSTER_WIRE_H
#define HM_CLUSTER_WIRE_H

#include "runtime/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_WIRE_VERSION 1
#define HM_NODE_NAME_MAX 64     /* node and cluster names: [A-Za-z0-9._-] */
#define HM_NODE_ADDR_MAX 128    /* "host:port", printable, no spaces */
#define HM_PRES_NAME_MAX 256    /* a presence name: UTF-8 without NUL */
#define HM_WIRE_LIST_MAX 100000 /* entries in one list, any list */
#define HM_WIRE_HEX_MAX 64      /* nonces and proofs, as hex */
/* Names per snapshot part: 500 names of at most 256 bytes, even escaped
 * six-fold, stay under net's 1 MiB line limit. */
#define HM_PRES_SNAPSHOT_CHUNK 500
/* Incarnations, versions and probe ids are JSON integers in 0..2^53-1, the
 * range every JSON implementation holds exactly (as net/hp.h's ids). An
 * incarnation is the wall clock in microseconds at start, so it grows from
 * one start to the next (2^53 us is 285 years). */
#define HM_WIRE_INT_MAX 9007199254740991ull

typedef enum {
    HM_WIRE_HELLO = 1,     /* dialler -> acceptor: who I am, my nonce */
    HM_WIRE_CHALLENGE,     /* acceptor -> dialler: who I am, nonce, proof */
    HM_WIRE_PROOF,         /* dialler -> acceptor: my proof */
    HM_WIRE_HEARTBEAT,     /* "I am alive"; `reply` asks for one back */
    HM_WIRE_PROBE_REQ,     /* "do you hear `target`?" */
    HM_WIRE_PROBE_ACK,     /* the answer to a probe request */
    HM_WIRE_MEMBERS,       /* the members the sender knows (discovery) */
    HM_WIRE_LEAVE,         /* the sender leaves the cluster gracefully */
    HM_WIRE_PRES_DELTA,    /* one presence change of the origin */
    HM_WIRE_PRES_SNAPSHOT, /* every presence name of one origin */
    HM_WIRE_PRES_REQUEST,  /* "send me your snapshot of `origin`" */
    HM_WIRE_PRES_DIGEST,   /* the presence versions the sender holds */
    HM_WIRE_ROUTED,        /* a routed message, numbered for the outbox */
    HM_WIRE_ACK,           /* "I have every routed message up to seq" */
} hm_wire_type;

/* A node's identity. */
typedef struct hm_wire_node {
    char name[HM_NODE_NAME_MAX + 1];
    char addr[HM_NODE_ADDR_MAX + 1];
    uint64_t inc; /* incarnation: changes on every start */
} hm_wire_node;

/* A point in one origin's presence history. */
typedef struct hm_wire_version {
    char origin[HM_NODE_NAME_MAX + 1];
    uint64_t inc;
    uint64_t version;
} hm_wire_version;

typedef struct hm_wire_msg {
    hm_wire_type type;
    union {
        struct {
            char cluster[HM_NODE_NAME_MAX + 1];
            hm_wire_node from;
            uint32_t proto_min, proto_max;
            char nonce[HM_WIRE_HEX_MAX + 1];
        } hello;
        struct {
            char cluster[HM_NODE_NAME_MAX + 1];
            hm_wire_node from;
            uint32_t proto; /* the version chosen by the acceptor */
            char nonce[HM_WIRE_HEX_MAX + 1];
            char proof[HM_WIRE_HEX_MAX + 1];
        } challenge;
        struct {
            char proof[HM_WIRE_HEX_MAX + 1];
        } proof;
        struct {
            bool reply;
        } heartbeat;
        struct {
            uint64_t id;
            char target[HM_NODE_NAME_MAX + 1];
        } probe_req;
        struct {
            uint64_t id;
            char target[HM_NODE_NAME_MAX + 1];
            bool heard;
        } probe_ack;
        struct {
            hm_wire_node *nodes; /* owned, `count` entries */
            size_t count;
        } members;
        struct {
            uint64_t inc; /* the leaving incarnation */
        } leave;
        struct {
            hm_wire_version at; /* the origin's version after this change */
            bool add;           /* true: registered; false: unregistered */
            char *name;         /* owned */
        } pres_delta;
        struct {
            hm_wire_version at;
            uint32_t part, parts; /* this is part `part` of 0..parts-1 */
            char **names;         /* owned, `count` owned strings */
            size_t count;
        } pres_snapshot;
        struct {
            char origin[HM_NODE_NAME_MAX + 1];
        } pres_request;
        struct {
            hm_wire_version *entries; /* owned, `count` entries */
            size_t count;
        } pres_digest;
        struct {
            uint64_t seq; /* >= 1, from hm_outbox_push */
            json_t *body; /* owned reference: the HP message, an object */
        } routed;
        struct {
            uint64_t seq;
        } ack;
    } u;
} hm_wire_msg;

/* Free what `msg` owns (lists, names) and zero it. Accepts NULL and an
 * already finished message. */
void hm_wire_msg_fini(hm_wire_msg *msg);

/* The "t" string of `type` ("cl.hello"); returns borrowed static storage, or
 * NULL for an unknown type. */
const char *hm_wire_type_name(hm_wire_type type);

/* Whether `s` is a valid node or cluster name. `s` is borrowed. */
bool hm_wire_name_is_valid(const char *s);

/* Encode `msg` (borrowed). Returns owned in `*out` (json_decref it).
 * Errors: HM_EINVAL if a field breaks a limit above (the encoder refuses to
 * produce what the decoder would refuse). */
hm_err hm_wire_encode(const hm_wire_msg *msg, json_t **out);

/* Decode `obj` (borrowed). Writes `*out` only on HM_OK; the caller then owns
 * what it holds (hm_wire_msg_fini). Unknown fields are ignored, so newer
 * peers can add some. Errors: HM_EPROTO for anything malformed, a missing
 * field, a limit exceeded, or a "v" other than HM_WIRE_VERSION; HM_ENOTFOUND
 * if "t" is not a cluster message type (the caller may route it elsewhere). */
hm_err hm_wire_decode(const json_t *obj, hm_wire_msg *out);

/* Decode one line of `len` bytes (borrowed, need not be NUL-terminated).
 * Errors: those of hm_wire_decode, HM_EPROTO if it is not a JSON object. */
hm_err hm_wire_decode_line(const char *line, size_t len, hm_wire_msg *out);

/* Encode to one compact line without a newline. Returns owned in `*out`
 * (free it with hm_free). Errors: those of hm_wire_encode. */
hm_err hm_wire_encode_line(const hm_wire_msg *msg, char **out);

#endif
