/* cluster/wire.c: encode and decode the cluster's HP message bodies.
 *
 * Decoding is written as a table of small field readers that each check
 * type, length and character set, so a hostile line can only ever produce
 * HM_EPROTO, never a half-filled struct: decode fills a local message and
 * copies it out only when every field was good. Encoding runs the same
 * checks, so what we send is always what we would accept. */
#include "cluster/wire.h"

#include "runtime/alloc.h"

#include <stdlib.h>
#include <string.h>

#define INT_MAX_WIRE HM_WIRE_INT_MAX

static const char *const type_names[] = {
    [HM_WIRE_HELLO] = "cl.hello",
    [HM_WIRE_CHALLENGE] = "cl.challenge",
    [HM_WIRE_PROOF] = "cl.proof",
    [HM_WIRE_HEARTBEAT] = "cl.hb",
    [HM_WIRE_PROBE_REQ] = "cl.probe",
    [HM_WIRE_PROBE_ACK] = "cl.probe_ack",
    [HM_WIRE_MEMBERS] = "cl.members",
    [HM_WIRE_LEAVE] = "cl.leave",
    [HM_WIRE_PRES_DELTA] = "cl.pres",
    [HM_WIRE_PRES_SNAPSHOT] = "cl.pres_snap",
    [HM_WIRE_PRES_REQUEST] = "cl.pres_req",
    [HM_WIRE_PRES_DIGEST] = "cl.pres_digest",
    [HM_WIRE_ROUTED] = "cl.msg",
    [HM_WIRE_ACK] = "cl.ack",
};
#define TYPE_COUNT (sizeof type_names / sizeof type_names[0])

const char *hm_wire_type_name(hm_wire_type type)
{
    if ((size_t)type >= TYPE_COUNT)
        return NULL;
    return type_names[type];
}

void hm_wire_msg_fini(hm_wire_msg *msg)
{
    if (!msg)
        return;
    switch (msg->type) {
    case HM_WIRE_MEMBERS:
        hm_free(msg->u.members.nodes);
        break;
    case HM_WIRE_PRES_DELTA:
        hm_free(msg->u.pres_delta.name);
        break;
    case HM_WIRE_PRES_SNAPSHOT:
        for (size_t i = 0; i < msg->u.pres_snapshot.count; i++)
            hm_free(msg->u.pres_snapshot.names[i]);
        hm_free(msg->u.pres_snapshot.names);
        break;
    case HM_WIRE_PRES_DIGEST:
        hm_free(msg->u.pres_digest.entries);
        break;
    case HM_WIRE_ROUTED:
        json_decref(msg->u.routed.body);
        break;
    default:
        break;
    }
    memset(msg, 0, sizeof *msg);
}

/* -------------------------------------------------------- validation */

bool hm_wire_name_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HM_NODE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool addr_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HM_NODE_ADDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static bool hex_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HM_WIRE_HEX_MAX || n % 2)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

static bool pres_name_is_valid(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= HM_PRES_NAME_MAX;
}

/* ---------------------------------------------------------- readers */

/* A string field: present, a string, no NUL inside, at most `max` bytes. */
static const char *get_str(const json_t *o, const char *key, size_t max)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n || n > max)
        return NULL;
    return s;
}

static bool read_name(const json_t *o, const char *key, char *dst)
{
    const char *s = get_str(o, key, HM_NODE_NAME_MAX);
    if (!s || !hm_wire_name_is_valid(s))
        return false;
    strcpy(dst, s);
    return true;
}

static bool read_hex(const json_t *o, const char *key, char *dst)
{
    const char *s = get_str(o, key, HM_WIRE_HEX_MAX);
    if (!s || !hex_is_valid(s))
        return false;
    strcpy(dst, s);
    return true;
}

static bool read_u64(const json_t *o, const char *key, uint64_t *dst)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > HM_WIRE_INT_MAX)
        return false;
    *dst = (uint64_t)json_integer_value(v);
    return true;
}

static bool read_bool(const json_t *o, const char *key, bool *dst)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return false;
    *dst = json_is_true(v);
    return true;
}

static bool read_node(const json_t *o, hm_wire_node *n)
{
    const char *addr = get_str(o, "addr", HM_NODE_ADDR_MAX);
    if (!addr || !addr_is_valid(addr))
        return false;
    strcpy(n->addr, addr);
    return read_name(o, "node", n->name) && read_u64(o, "inc", &n->inc);
}

static bool read_version(const json_t *o, hm_wire_version *at)
{
    return read_name(o, "origin", at->origin) && read_u64(o, "inc", &at->inc) &&
           read_u64(o, "ver", &at->version);
}

/* The array under `key`, with at most HM_WIRE_LIST_MAX entries. */
static const json_t *get_list(const json_t *o, const char *key)
{
    const json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || json_array_size(a) > HM_WIRE_LIST_MAX)
        return NULL;
    return a;
}

static bool read_proto(const json_t *o, uint32_t *lo, uint32_t *hi)
{
    const json_t *a = json_object_get(o, "proto");
    if (!json_is_array(a) || json_array_size(a) != 2)
        return false;
    json_int_t x = json_integer_value(json_array_get(a, 0));
    json_int_t y = json_integer_value(json_array_get(a, 1));
    if (!json_is_integer(json_array_get(a, 0)) ||
        !json_is_integer(json_array_get(a, 1)) || x < 1 || y < x ||
        y > UINT32_MAX)
        return false;
    *lo = (uint32_t)x;
    *hi = (uint32_t)y;
    return true;
}

static bool decode_members(const json_t *o, hm_wire_msg *m)
{
    const json_t *a = get_list(o, "members"), *e;
    size_t i;
    if (!a)
        return false;
    m->u.members.nodes = hm_calloc(json_array_size(a), sizeof(hm_wire_node));
    json_array_foreach(a, i, e)
    {
        if (!json_is_object(e) || !read_node(e, &m->u.members.nodes[i]))
            return false;
        m->u.members.count = i + 1;
    }
    return true;
}

static bool decode_snapshot(const json_t *o, hm_wire_msg *m)
{
    const json_t *a = get_list(o, "names"), *e;
    size_t i;
    uint64_t part, parts;
    if (!a || !read_version(o, &m->u.pres_snapshot.at) ||
        !read_u64(o, "part", &part) || !read_u64(o, "parts", &parts) ||
        parts < 1 || part >= parts || parts > HM_WIRE_LIST_MAX)
        return false;
    m->u.pres_snapshot.part = (uint32_t)part;
    m->u.pres_snapshot.parts = (uint32_t)parts;
    m->u.pres_snapshot.names = hm_calloc(json_array_size(a), sizeof(char *));
    json_array_foreach(a, i, e)
    {
        const char *s = json_string_value(e);
        if (!s || strlen(s) != json_string_length(e) || !pres_name_is_valid(s))
            return false;
        m->u.pres_snapshot.names[i] = hm_strdup(s);
        m->u.pres_snapshot.count = i + 1;
    }
    return true;
}

static bool decode_digest(const json_t *o, hm_wire_msg *m)
{
    const json_t *a = get_list(o, "versions"), *e;
    size_t i;
    if (!a)
        return false;
    m->u.pres_digest.entries =
        hm_calloc(json_array_size(a), sizeof(hm_wire_version));
    json_array_foreach(a, i, e)
    {
        if (!json_is_object(e) ||
            !read_version(e, &m->u.pres_digest.entries[i]))
            return false;
        m->u.pres_digest.count = i + 1;
    }
    return true;
}

static bool decode_delta(const json_t *o, hm_wire_msg *m)
{
    const char *op = get_str(o, "op", 3);
    const char *name = get_str(o, "name", HM_PRES_NAME_MAX);
    if (!op || !name || !pres_name_is_valid(name) ||
        !read_version(o, &m->u.pres_delta.at))
        return false;
    if (strcmp(op, "add") != 0 && strcmp(op, "del") != 0)
        return false;
    m->u.pres_delta.add = op[0] == 'a';
    m->u.pres_delta.name = hm_strdup(name);
    return true;
}

/* Fills the body of `m`, whose type is set. False if anything is wrong;
 * whatever was allocated so far is then released by hm_wire_msg_fini. */
static bool decode_body(const json_t *o, hm_wire_msg *m)
{
    switch (m->type) {
    case HM_WIRE_HELLO:
        return read_name(o, "cluster", m->u.hello.cluster) &&
               read_node(o, &m->u.hello.from) &&
               read_proto(o, &m->u.hello.proto_min, &m->u.hello.proto_max) &&
               read_hex(o, "nonce", m->u.hello.nonce);
    case HM_WIRE_CHALLENGE: {
        uint64_t proto = 0;
        bool ok = read_name(o, "cluster", m->u.challenge.cluster) &&
                  read_node(o, &m->u.challenge.from) &&
                  read_u64(o, "proto", &proto) && proto >= 1 &&
                  proto <= UINT32_MAX &&
                  read_hex(o, "nonce", m->u.challenge.nonce) &&
                  read_hex(o, "proof", m->u.challenge.proof);
        m->u.challenge.proto = (uint32_t)proto;
        return ok;
    }
    case HM_WIRE_PROOF:
        return read_hex(o, "proof", m->u.proof.proof);
    case HM_WIRE_HEARTBEAT:
        return read_bool(o, "reply", &m->u.heartbeat.reply);
    case HM_WIRE_PROBE_REQ:
        return read_u64(o, "id", &m->u.probe_req.id) &&
               read_name(o, "target", m->u.probe_req.target);
    case HM_WIRE_PROBE_ACK:
        return read_u64(o, "id", &m->u.probe_ack.id) &&
               read_name(o, "target", m->u.probe_ack.target) &&
               read_bool(o, "heard", &m->u.probe_ack.heard);
    case HM_WIRE_MEMBERS:
        return decode_members(o, m);
    case HM_WIRE_LEAVE:
        return read_u64(o, "inc", &m->u.leave.inc);
    case HM_WIRE_PRES_DELTA:
        return decode_delta(o, m);
    case HM_WIRE_PRES_SNAPSHOT:
        return decode_snapshot(o, m);
    case HM_WIRE_PRES_REQUEST:
        return read_name(o, "origin", m->u.pres_request.origin);
    case HM_WIRE_PRES_DIGEST:
        return decode_digest(o, m);
    case HM_WIRE_ROUTED: {
        json_t *body = json_object_get(o, "msg");
        if (!json_is_object(body) || !read_u64(o, "seq", &m->u.routed.seq) ||
            m->u.routed.seq == 0)
            return false;
        m->u.routed.body = json_incref(body); /* outlives the line's tree */
        return true;
    }
    case HM_WIRE_ACK:
        return read_u64(o, "seq", &m->u.ack.seq);
    }
    return false;
}

hm_err hm_wire_decode(const json_t *obj, hm_wire_msg *out)
{
    if (!json_is_object(obj))
        return HM_EPROTO;
    const char *t = get_str(obj, "t", 32);
    uint64_t v;
    if (!t)
        return HM_EPROTO;
    hm_wire_msg m = {0};
    for (size_t i = 1; i < TYPE_COUNT; i++)
        if (strcmp(t, type_names[i]) == 0)
            m.type = (hm_wire_type)i;
    if (m.type == 0)
        return HM_ENOTFOUND;
    if (!read_u64(obj, "v", &v) || v != HM_WIRE_VERSION)
        return HM_EPROTO;
    if (!decode_body(obj, &m)) {
        hm_wire_msg_fini(&m);
        return HM_EPROTO;
    }
    *out = m;
    return HM_OK;
}

hm_err hm_wire_decode_line(const char *line, size_t len, hm_wire_msg *out)
{
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return HM_EPROTO;
    hm_err err = hm_wire_decode(obj, out);
    json_decref(obj);
    return err;
}

/* ---------------------------------------------------------- encoding */

/* Each setter takes ownership of the json value it creates. */
static void set_str(json_t *o, const char *key, const char *s)
{
    json_object_set_new(o, key, json_string(s));
}

static void set_u64(json_t *o, const char *key, uint64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

static bool node_is_valid(const hm_wire_node *n)
{
    return hm_wire_name_is_valid(n->name) && addr_is_valid(n->addr) &&
           n->inc <= INT_MAX_WIRE;
}

static bool version_is_valid(const hm_wire_version *at)
{
    return hm_wire_name_is_valid(at->origin) && at->inc <= INT_MAX_WIRE &&
           at->version <= INT_MAX_WIRE;
}

static json_t *encode_node(const hm_wire_node *n)
{
    json_t *o = json_object();
    set_str(o, "node", n->name);
    set_str(o, "addr", n->addr);
    set_u64(o, "inc", n->inc);
    return o;
}

static void set_version(json_t *o, const hm_wire_version *at)
{
    set_str(o, "origin", at->origin);
    set_u64(o, "inc", at->inc);
    set_u64(o, "ver", at->version);
}

static void set_node(json_t *o, const hm_wire_node *n)
{
    json_t *tmp = encode_node(n);
    json_object_update(o, tmp);
    json_decref(tmp);
}

/* The list-carrying messages' part of msg_is_valid. */
static bool lists_are_valid(const hm_wire_msg *m)
{
    switch (m->type) {
    case HM_WIRE_MEMBERS:
        if (m->u.members.count > HM_WIRE_LIST_MAX)
            return false;
        for (size_t i = 0; i < m->u.members.count; i++)
            if (!node_is_valid(&m->u.members.nodes[i]))
                return false;
        return true;
    case HM_WIRE_PRES_SNAPSHOT:
        if (m->u.pres_snapshot.count > HM_WIRE_LIST_MAX ||
            !version_is_valid(&m->u.pres_snapshot.at) ||
            m->u.pres_snapshot.parts < 1 ||
            m->u.pres_snapshot.part >= m->u.pres_snapshot.parts ||
            m->u.pres_snapshot.parts > HM_WIRE_LIST_MAX)
            return false;
        for (size_t i = 0; i < m->u.pres_snapshot.count; i++)
            if (!pres_name_is_valid(m->u.pres_snapshot.names[i]))
                return false;
        return true;
    case HM_WIRE_PRES_DIGEST:
        if (m->u.pres_digest.count > HM_WIRE_LIST_MAX)
            return false;
        for (size_t i = 0; i < m->u.pres_digest.count; i++)
            if (!version_is_valid(&m->u.pres_digest.entries[i]))
                return false;
        return true;
    default:
        return false;
    }
}

/* Whether every field of `m` is within the limits the decoder checks. */
static bool msg_is_valid(const hm_wire_msg *m)
{
    switch (m->type) {
    case HM_WIRE_HELLO:
        return hm_wire_name_is_valid(m->u.hello.cluster) &&
               node_is_valid(&m->u.hello.from) && m->u.hello.proto_min >= 1 &&
               m->u.hello.proto_max >= m->u.hello.proto_min &&
               hex_is_valid(m->u.hello.nonce);
    case HM_WIRE_CHALLENGE:
        return hm_wire_name_is_valid(m->u.challenge.cluster) &&
               node_is_valid(&m->u.challenge.from) &&
               m->u.challenge.proto >= 1 &&
               hex_is_valid(m->u.challenge.nonce) &&
               hex_is_valid(m->u.challenge.proof);
    case HM_WIRE_PROOF:
        return hex_is_valid(m->u.proof.proof);
    case HM_WIRE_HEARTBEAT:
        return true;
    case HM_WIRE_PROBE_REQ:
        return m->u.probe_req.id <= INT_MAX_WIRE &&
               hm_wire_name_is_valid(m->u.probe_req.target);
    case HM_WIRE_PROBE_ACK:
        return m->u.probe_ack.id <= INT_MAX_WIRE &&
               hm_wire_name_is_valid(m->u.probe_ack.target);
    case HM_WIRE_LEAVE:
        return m->u.leave.inc <= INT_MAX_WIRE;
    case HM_WIRE_PRES_DELTA:
        return m->u.pres_delta.name &&
               pres_name_is_valid(m->u.pres_delta.name) &&
               version_is_valid(&m->u.pres_delta.at);
    case HM_WIRE_PRES_REQUEST:
        return hm_wire_name_is_valid(m->u.pres_request.origin);
    case HM_WIRE_MEMBERS:
    case HM_WIRE_PRES_SNAPSHOT:
    case HM_WIRE_PRES_DIGEST:
        return lists_are_valid(m);
    case HM_WIRE_ROUTED:
        return m->u.routed.seq >= 1 && m->u.routed.seq <= INT_MAX_WIRE &&
               json_is_object(m->u.routed.body);
    case HM_WIRE_ACK:
        return m->u.ack.seq <= INT_MAX_WIRE;
    }
    return false;
}

static void encode_lists(const hm_wire_msg *m, json_t *o)
{
    json_t *a = json_array();
    switch (m->type) {
    case HM_WIRE_MEMBERS:
        for (size_t i = 0; i < m->u.members.count; i++)
            json_array_append_new(a, encode_node(&m->u.members.nodes[i]));
        json_object_set_new(o, "members", a);
        break;
    case HM_WIRE_PRES_SNAPSHOT:
        set_version(o, &m->u.pres_snapshot.at);
        set_u64(o, "part", m->u.pres_snapshot.part);
        set_u64(o, "parts", m->u.pres_snapshot.parts);
        for (size_t i = 0; i < m->u.pres_snapshot.count; i++)
            json_array_append_new(a, json_string(m->u.pres_snapshot.names[i]));
        json_object_set_new(o, "names", a);
        break;
    default: /* HM_WIRE_PRES_DIGEST */
        for (size_t i = 0; i < m->u.pres_digest.count; i++) {
            json_t *e = json_object();
            set_version(e, &m->u.pres_digest.entries[i]);
            json_array_append_new(a, e);
        }
        json_object_set_new(o, "versions", a);
        break;
    }
}

static void encode_body(const hm_wire_msg *m, json_t *o)
{
    switch (m->type) {
    case HM_WIRE_HELLO:
        set_str(o, "cluster", m->u.hello.cluster);
        set_node(o, &m->u.hello.from);
        json_object_set_new(o, "proto",
                            json_pack("[II]", (json_int_t)m->u.hello.proto_min,
                                      (json_int_t)m->u.hello.proto_max));
        set_str(o, "nonce", m->u.hello.nonce);
        break;
    case HM_WIRE_CHALLENGE:
        set_str(o, "cluster", m->u.challenge.cluster);
        set_node(o, &m->u.challenge.from);
        set_u64(o, "proto", m->u.challenge.proto);
        set_str(o, "nonce", m->u.challenge.nonce);
        set_str(o, "proof", m->u.challenge.proof);
        break;
    case HM_WIRE_PROOF:
        set_str(o, "proof", m->u.proof.proof);
        break;
    case HM_WIRE_HEARTBEAT:
        json_object_set_new(o, "reply", json_boolean(m->u.heartbeat.reply));
        break;
    case HM_WIRE_PROBE_REQ:
        set_u64(o, "id", m->u.probe_req.id);
        set_str(o, "target", m->u.probe_req.target);
        break;
    case HM_WIRE_PROBE_ACK:
        set_u64(o, "id", m->u.probe_ack.id);
        set_str(o, "target", m->u.probe_ack.target);
        json_object_set_new(o, "heard", json_boolean(m->u.probe_ack.heard));
        break;
    case HM_WIRE_LEAVE:
        set_u64(o, "inc", m->u.leave.inc);
        break;
    case HM_WIRE_PRES_DELTA:
        set_version(o, &m->u.pres_delta.at);
        set_str(o, "op", m->u.pres_delta.add ? "add" : "del");
        set_str(o, "name", m->u.pres_delta.name);
        break;
    case HM_WIRE_PRES_REQUEST:
        set_str(o, "origin", m->u.pres_request.origin);
        break;
    case HM_WIRE_ROUTED:
        set_u64(o, "seq", m->u.routed.seq);
        json_object_set(o, "msg", m->u.routed.body); /* borrows: increfs */
        break;
    case HM_WIRE_ACK:
        set_u64(o, "seq", m->u.ack.seq);
        break;
    default:
        encode_lists(m, o);
        break;
    }
}

hm_err hm_wire_encode(const hm_wire_msg *msg, json_t **out)
{
    if (!hm_wire_type_name(msg->type) || msg->type == 0 || !msg_is_valid(msg))
        return HM_EINVAL;
    json_t *o = json_object();
    set_u64(o, "v", HM_WIRE_VERSION);
    set_str(o, "t", hm_wire_type_name(msg->type));
    encode_body(msg, o);
    *out = o;
    return HM_OK;
}

hm_err hm_wire_encode_line(const hm_wire_msg *msg, char **out)
{
    json_t *o;
    hm_err err = hm_wire_encode(msg, &o);
    if (err != HM_OK)
        return err;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    HM_ASSERT(s != NULL); /* jansson fails here only for lack of memory */
    *out = hm_strdup(s);
    free(s);
    return HM_OK;
}
