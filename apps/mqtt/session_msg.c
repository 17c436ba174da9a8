/* apps/mqtt/session_msg.c: the connection <-> session message types and
 * their JSON codecs (see session_msg.h).
 *
 * Encoding is one JSON object per payload, with short member names; bytes
 * are base64. Decoding checks every member it reads and ignores the ones
 * it does not know (a newer node may add some). Packet ids decode through
 * mqtt_qos2_ids_receive(), so the set's sorted invariant holds whatever
 * order or repetition the input has. */
#include "apps/mqtt/session_msg.h"

#include "apps/mqtt/broker_impl.h"
#include "runtime/alloc.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* Largest packet-id list: every id once. */
#define IDS_MAX 65535u
/* Longest topic and user name: MQTT's string limit. */
#define STR_MAX 65535u

/* ----------------------------------------------------------- base64 */

static bool b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

char *mqtt_base64_encode(const void *data, size_t len)
{
    char *out = hm_alloc(4 * ((len + 2) / 3) + 1);
    size_t done = 0, at = 0;

    /* EVP_EncodeBlock takes an int: go in chunks (a multiple of 3). */
    while (done < len) {
        size_t n = len - done > 3u * (1u << 20) ? 3u * (1u << 20) : len - done;

        at += (size_t)EVP_EncodeBlock((unsigned char *)out + at,
                                      (const unsigned char *)data + done,
                                      (int)n);
        done += n;
    }
    out[at] = '\0';
    return out;
}

hm_err mqtt_base64_decode(const char *s, size_t max_len, uint8_t **out,
                          size_t *len_out)
{
    size_t slen = strlen(s), pad = 0, len, at = 0, done = 0;
    uint8_t *buf;

    if (slen % 4 != 0)
        return HM_EPROTO;
    if (slen > 0 && s[slen - 1] == '=')
        pad = (slen > 1 && s[slen - 2] == '=') ? 2 : 1;
    for (size_t i = 0; i < slen - pad; i++)
        if (!b64_char((unsigned char)s[i]))
            return HM_EPROTO;
    len = slen / 4 * 3 - pad;
    if (len > max_len)
        return HM_ETOOBIG;
    buf = hm_alloc(slen / 4 * 3 + 1);
    while (done < slen) {
        size_t n = slen - done > 4u * (1u << 20) ? 4u * (1u << 20)
                                                 : slen - done;
        int got = EVP_DecodeBlock(buf + at, (const unsigned char *)s + done,
                                  (int)n);

        if (got < 0) {
            hm_free(buf);
            return HM_EPROTO;
        }
        at += (size_t)got;
        done += n;
    }
    /* Canonical padding: the bits the padding covers must be zero, so one
     * byte string has one encoding (the fuzz target checks round trips). */
    if (pad > 0) {
        const char *alphabet =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t v = (size_t)(strchr(alphabet, s[slen - pad - 1]) - alphabet);

        if ((pad == 1 && (v & 0x3)) || (pad == 2 && (v & 0xf))) {
            hm_free(buf);
            return HM_EPROTO;
        }
    }
    *out = buf;
    *len_out = len;
    return HM_OK;
}

/* ------------------------------------------------------ field helpers */

/* The string member `key` of `j`: HM_OK with *out borrowed (NULL if absent
 * and `optional`), HM_EPROTO if ill-typed, too long or holding a NUL. */
static hm_err get_str(const json_t *j, const char *key, bool optional,
                      size_t max_len, const char **out)
{
    const json_t *v = json_object_get(j, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return optional ? HM_OK : HM_EPROTO;
    if (!json_is_string(v) || json_string_length(v) > max_len ||
        strlen(json_string_value(v)) != json_string_length(v))
        return HM_EPROTO;
    *out = json_string_value(v);
    return HM_OK;
}

static hm_err get_bool(const json_t *j, const char *key, bool *out)
{
    const json_t *v = json_object_get(j, key);

    if (!v) {
        *out = false;
        return HM_OK;
    }
    if (!json_is_boolean(v))
        return HM_EPROTO;
    *out = json_is_true(v);
    return HM_OK;
}

static hm_err get_ids(const json_t *j, mqtt_qos2_ids **out)
{
    const json_t *v = json_object_get(j, "ids");
    mqtt_qos2_ids *ids;
    size_t i;
    json_t *e;

    *out = NULL;
    if (!v || json_is_null(v))
        return HM_OK;
    if (!json_is_array(v) || json_array_size(v) > IDS_MAX)
        return HM_EPROTO;
    ids = hm_calloc(1, sizeof *ids);
    json_array_foreach(v, i, e) {
        json_int_t id = json_is_integer(e) ? json_integer_value(e) : 0;

        if (id < 1 || id > 65535) {
            mqtt_qos2_box_destroy(ids);
            return HM_EPROTO;
        }
        mqtt_qos2_ids_receive(ids, (uint16_t)id);
    }
    *out = ids;
    return HM_OK;
}

static json_t *ids_to_json(const mqtt_qos2_ids *ids)
{
    json_t *a = json_array();

    for (size_t i = 0; ids && i < ids->count; i++)
        json_array_append_new(a, json_integer(ids->ids[i]));
    return a;
}

static void set_opt_str(json_t *o, const char *key, const char *s)
{
    if (s)
        json_object_set_new(o, key, json_string(s));
}

/* ------------------------------------------------------------ attach */

json_t *mqtt_attach_to_json(const void *p)
{
    const mqtt_attach *a = p;
    json_t *o;

    if (!a || !a->conn_name)
        return NULL;
    o = json_object();
    json_object_set_new(o, "conn", json_string(a->conn_name));
    json_object_set_new(o, "ws", json_boolean(a->ws));
    json_object_set_new(o, "clean", json_boolean(a->clean));
    set_opt_str(o, "user", a->username);
    return o;
}

hm_err mqtt_attach_from_json(const json_t *j, void **out)
{
    const char *conn, *user;
    bool ws, clean;
    mqtt_attach *a;

    if (!json_is_object(j) ||
        get_str(j, "conn", false, MQTT_MSG_NAME_MAX, &conn) != HM_OK ||
        get_str(j, "user", true, STR_MAX, &user) != HM_OK ||
        get_bool(j, "ws", &ws) != HM_OK ||
        get_bool(j, "clean", &clean) != HM_OK || conn[0] == '\0')
        return HM_EPROTO;
    a = hm_calloc(1, sizeof *a);
    a->conn_name = hm_strdup(conn);
    a->username = user ? hm_strdup(user) : NULL;
    a->ws = ws;
    a->clean = clean;
    *out = a;
    return HM_OK;
}

static void attach_free(void *p)
{
    mqtt_attach *a = p;

    if (!a)
        return;
    hm_conn_release(a->conn);
    hm_free(a->conn_name);
    hm_free(a->username);
    hm_free(a);
}

/* -------------------------------------------------------------- blob */

mqtt_blob *mqtt_blob_create(const char *conn, const void *data, size_t len)
{
    mqtt_blob *b = hm_alloc(sizeof *b + len);

    b->conn = conn ? hm_strdup(conn) : NULL;
    b->len = len;
    if (len)
        memcpy(b->data, data, len);
    return b;
}

void mqtt_blob_destroy(void *p)
{
    mqtt_blob *b = p;

    if (!b)
        return;
    hm_free(b->conn);
    hm_free(b);
}

json_t *mqtt_blob_to_json(const void *p)
{
    const mqtt_blob *b = p;
    json_t *o;
    char *s;

    if (!b)
        return NULL;
    s = mqtt_base64_encode(b->data, b->len);
    o = json_object();
    set_opt_str(o, "conn", b->conn);
    json_object_set_new(o, "data", json_string(s));
    hm_free(s);
    return o;
}

hm_err mqtt_blob_from_json(const json_t *j, void **out)
{
    const char *conn, *data;
    uint8_t *bytes;
    size_t len;
    mqtt_blob *b;

    if (!json_is_object(j) ||
        get_str(j, "conn", true, MQTT_MSG_NAME_MAX, &conn) != HM_OK ||
        get_str(j, "data", false, SIZE_MAX, &data) != HM_OK ||
        mqtt_base64_decode(data, MQTT_MSG_DATA_MAX, &bytes, &len) != HM_OK)
        return HM_EPROTO;
    b = mqtt_blob_create(conn, bytes, len);
    hm_free(bytes);
    *out = b;
    return HM_OK;
}

/* --------------------------------------------------------------- ctl */

mqtt_ctl *mqtt_ctl_create(const char *name, mqtt_qos2_ids *ids)
{
    mqtt_ctl *c = hm_alloc(sizeof *c);

    c->name = name ? hm_strdup(name) : NULL;
    c->ids = ids;
    return c;
}

void mqtt_ctl_destroy(void *p)
{
    mqtt_ctl *c = p;

    if (!c)
        return;
    hm_free(c->name);
    mqtt_qos2_box_destroy(c->ids);
    hm_free(c);
}

json_t *mqtt_ctl_to_json(const void *p)
{
    const mqtt_ctl *c = p;
    json_t *o = json_object();

    if (!c)
        return o; /* an ack outside a cluster: nothing */
    set_opt_str(o, "name", c->name);
    if (c->ids)
        json_object_set_new(o, "ids", ids_to_json(c->ids));
    return o;
}

hm_err mqtt_ctl_from_json(const json_t *j, void **out)
{
    mqtt_qos2_ids *ids;
    const char *name;

    if (!json_is_object(j) ||
        get_str(j, "name", true, MQTT_MSG_NAME_MAX, &name) != HM_OK ||
        get_ids(j, &ids) != HM_OK)
        return HM_EPROTO;
    *out = mqtt_ctl_create(name, ids);
    return HM_OK;
}

/* --------------------------------------------------------------- pub */

json_t *mqtt_pub_to_json(const void *p)
{
    const mqtt_pub *pub = p;
    json_t *o;
    char *s;

    if (!pub)
        return NULL;
    s = mqtt_base64_encode(pub->payload, pub->payload_len);
    o = json_object();
    json_object_set_new(o, "topic",
                        json_stringn(pub->topic, pub->topic_len));
    json_object_set_new(o, "payload", json_string(s));
    json_object_set_new(o, "qos", json_integer(pub->qos));
    json_object_set_new(o, "retain", json_boolean(pub->retain));
    if (pub->seq) { /* its identity in a cluster (broker_impl.h) */
        json_object_set_new(o, "og", json_integer((json_int_t)(pub->origin & INT64_MAX)));
        json_object_set_new(o, "sq", json_integer((json_int_t)(pub->seq & INT64_MAX)));
    }
    hm_free(s);
    return o;
}

hm_err mqtt_pub_from_json(const json_t *j, void **out)
{
    const char *topic, *payload;
    const json_t *q, *og, *sq;
    mqtt_pub *pub;
    uint8_t *bytes;
    size_t len;
    bool retain;

    if (!json_is_object(j) ||
        get_str(j, "topic", false, STR_MAX, &topic) != HM_OK ||
        get_str(j, "payload", false, SIZE_MAX, &payload) != HM_OK ||
        get_bool(j, "retain", &retain) != HM_OK || topic[0] == '\0')
        return HM_EPROTO;
    q = json_object_get(j, "qos");
    if (!json_is_integer(q) || json_integer_value(q) < 0 ||
        json_integer_value(q) > 2)
        return HM_EPROTO;
    if (mqtt_base64_decode(payload, MQTT_MSG_DATA_MAX, &bytes, &len) !=
        HM_OK)
        return HM_EPROTO;
    og = json_object_get(j, "og");
    sq = json_object_get(j, "sq");
    if ((og || sq) && (!json_is_integer(og) || !json_is_integer(sq) ||
                       json_integer_value(sq) <= 0)) {
        hm_free(bytes);
        return HM_EPROTO;
    }
    pub = mqtt_pub_create(topic, strlen(topic), bytes, len,
                          (uint8_t)json_integer_value(q), retain);
    if (sq) {
        pub->origin = (uint64_t)json_integer_value(og);
        pub->seq = (uint64_t)json_integer_value(sq);
    }
    *out = pub;
    hm_free(bytes);
    return HM_OK;
}

/* ----------------------------------------------------------- handoff */

void mqtt_handoff_destroy(void *p)
{
    mqtt_handoff *h = p;

    if (!h)
        return;
    hm_free(h->client_id);
    hm_free(h->from);
    hm_free(h->old);
    hm_free(h->conn);
    hm_free(h->username);
    hm_free(h->state);
    hm_free(h->owed);
    hm_free(h);
}

static char *dup_opt(const char *s)
{
    return s ? hm_strdup(s) : NULL;
}

mqtt_handoff *mqtt_handoff_clone(const mqtt_handoff *h)
{
    mqtt_handoff *c = hm_alloc(sizeof *c);

    *c = *h;
    c->client_id = dup_opt(h->client_id);
    c->from = dup_opt(h->from);
    c->old = dup_opt(h->old);
    c->conn = dup_opt(h->conn);
    c->username = dup_opt(h->username);
    c->owed = dup_opt(h->owed);
    c->state = hm_alloc(h->state_len ? h->state_len : 1);
    memcpy(c->state, h->state, h->state_len);
    return c;
}

json_t *mqtt_handoff_to_json(const void *p)
{
    const mqtt_handoff *h = p;
    json_t *o;
    char *s;

    if (!h || !h->state)
        return NULL;
    s = mqtt_base64_encode(h->state, h->state_len);
    o = json_object();
    set_opt_str(o, "cid", h->client_id);
    set_opt_str(o, "from", h->from);
    set_opt_str(o, "old", h->old);
    set_opt_str(o, "conn", h->conn);
    set_opt_str(o, "user", h->username);
    set_opt_str(o, "owed", h->owed);
    json_object_set_new(o, "ws", json_boolean(h->ws));
    json_object_set_new(o, "persistent", json_boolean(h->persistent));
    json_object_set_new(o, "present", json_boolean(h->present));
    json_object_set_new(o, "state", json_string(s));
    hm_free(s);
    return o;
}

hm_err mqtt_handoff_from_json(const json_t *j, void **out)
{
    const char *conn, *user, *state, *cid, *from, *old, *owed;
    mqtt_handoff h = {0}, *hp;

    if (!json_is_object(j) ||
        get_str(j, "cid", true, STR_MAX, &cid) != HM_OK ||
        get_str(j, "from", true, MQTT_MSG_NAME_MAX, &from) != HM_OK ||
        get_str(j, "old", true, MQTT_MSG_NAME_MAX, &old) != HM_OK ||
        (cid && cid[0] == '\0') || (from && from[0] == '\0') ||
        (old && old[0] == '\0') ||
        get_str(j, "conn", true, MQTT_MSG_NAME_MAX, &conn) != HM_OK ||
        get_str(j, "user", true, STR_MAX, &user) != HM_OK ||
        get_str(j, "state", false, SIZE_MAX, &state) != HM_OK ||
        get_str(j, "owed", true, SIZE_MAX, &owed) != HM_OK ||
        get_bool(j, "ws", &h.ws) != HM_OK ||
        get_bool(j, "persistent", &h.persistent) != HM_OK ||
        get_bool(j, "present", &h.present) != HM_OK ||
        (conn && conn[0] == '\0') ||
        mqtt_base64_decode(state, SIZE_MAX / 2, &h.state, &h.state_len) !=
            HM_OK)
        return HM_EPROTO;
    hp = hm_alloc(sizeof *hp);
    *hp = h;
    hp->conn = conn ? hm_strdup(conn) : NULL;
    hp->username = user ? hm_strdup(user) : NULL;
    hp->client_id = cid ? hm_strdup(cid) : NULL;
    hp->from = from ? hm_strdup(from) : NULL;
    hp->old = old ? hm_strdup(old) : NULL;
    hp->owed = owed ? hm_strdup(owed) : NULL;
    *out = hp;
    return HM_OK;
}

/* -------------------------------------------------------------- owed */

void mqtt_owed_append(char **acc, size_t *acc_len, const mqtt_owed_entry *e)
{
    char *b64 = e->kind == 'o' ? mqtt_base64_encode(e->packet, e->len) : NULL;
    size_t len = b64 ? 1 + strlen(b64) : e->kind == 'a' ? 2 : 1;
    size_t sep = *acc ? 1 : 0;
    char *p;

    *acc = hm_realloc(*acc, *acc_len + sep + len + 1);
    p = *acc + *acc_len;
    if (sep)
        *p++ = ',';
    *p = e->kind;
    if (b64)
        memcpy(p + 1, b64, len - 1);
    else if (e->kind == 'a')
        p[1] = e->present ? '1' : '0';
    p[len] = '\0';
    *acc_len += sep + len;
    hm_free(b64);
}

hm_err mqtt_owed_next(const char **cursor, mqtt_owed_entry *out)
{
    const char *e = *cursor, *end;
    size_t len;
    char *b64;
    hm_err err;

    if (!e || !*e)
        return HM_ENOTFOUND;
    end = strchr(e, ',');
    len = end ? (size_t)(end - e) : strlen(e);
    *cursor = end ? end + 1 : e + len;
    if (len == 1 && e[0] == 'd') {
        *out = (mqtt_owed_entry){.kind = 'd'};
        return HM_OK;
    }
    if (len == 2 && e[0] == 'a' && (e[1] == '0' || e[1] == '1')) {
        *out = (mqtt_owed_entry){.kind = 'a', .present = e[1] == '1'};
        return HM_OK;
    }
    if (len < 2 || e[0] != 'o')
        return HM_EPROTO;
    b64 = hm_strndup(e + 1, len - 1);
    *out = (mqtt_owed_entry){.kind = 'o'};
    err = mqtt_base64_decode(b64, MQTT_OWED_PACKET_MAX, &out->packet,
                             &out->len);
    hm_free(b64);
    return err == HM_OK ? HM_OK : HM_EPROTO;
}

/* ----------------------------------------------------------- restore */

void mqtt_restore_destroy(void *p)
{
    mqtt_restore *r = p;

    if (!r)
        return;
    hm_free(r->record);
    mqtt_qos2_ids_fini(&r->inbound);
    hm_free(r);
}

json_t *mqtt_restore_to_json(const void *p)
{
    const mqtt_restore *r = p;
    json_t *o;
    char *s;

    if (!r || !r->record)
        return NULL;
    s = mqtt_base64_encode(r->record, r->len);
    o = json_object();
    json_object_set_new(o, "state", json_string(s));
    json_object_set_new(o, "ids", ids_to_json(&r->inbound));
    json_object_set_new(o, "adopt", json_boolean(r->adopt));
    hm_free(s);
    return o;
}

hm_err mqtt_restore_from_json(const json_t *j, void **out)
{
    const char *state;
    mqtt_restore r = {0}, *rp;
    mqtt_qos2_ids *ids = NULL;

    if (!json_is_object(j) ||
        get_str(j, "state", false, SIZE_MAX, &state) != HM_OK ||
        get_bool(j, "adopt", &r.adopt) != HM_OK ||
        get_ids(j, &ids) != HM_OK)
        return HM_EPROTO;
    if (mqtt_base64_decode(state, SIZE_MAX / 2, &r.record, &r.len) != HM_OK) {
        mqtt_qos2_box_destroy(ids);
        return HM_EPROTO;
    }
    if (ids) { /* the box's storage moves into the message */
        r.inbound = *ids;
        hm_free(ids);
    }
    rp = hm_alloc(sizeof *rp);
    *rp = r;
    *out = rp;
    return HM_OK;
}

/* ------------------------------------------------------- no payload */

static json_t *empty_to_json(const void *p)
{
    (void)p;
    return json_object();
}

static hm_err empty_from_json(const json_t *j, void **out)
{
    (void)j;
    *out = NULL;
    return HM_OK;
}

/* ------------------------------------------------ connection names */

bool mqtt_conn_name_format(char *out, size_t cap, const char *node,
                           uint64_t id)
{
    int n = snprintf(out, cap, MQTT_CONN_PREFIX "%s/%llu", node,
                     (unsigned long long)id);

    return n > 0 && (size_t)n < cap;
}

bool mqtt_conn_name_node(const char *name, char *node_out, size_t cap)
{
    size_t plen = strlen(MQTT_CONN_PREFIX);
    const char *node, *slash;

    if (strncmp(name, MQTT_CONN_PREFIX, plen) != 0)
        return false;
    node = name + plen;
    slash = strchr(node, '/');
    if (!slash || slash == node || (size_t)(slash - node) >= cap ||
        slash[1] == '\0' || strspn(slash + 1, "0123456789") != strlen(slash + 1))
        return false;
    memcpy(node_out, node, (size_t)(slash - node));
    node_out[slash - node] = '\0';
    return true;
}

/* ------------------------------------------------------------ types */

void mqtt_qos2_box_destroy(void *p)
{
    mqtt_qos2_ids_fini(p);
    hm_free(p);
}

const hm_type mqtt_attach_type = {.name = "mqtt.attach",
                                  .free = attach_free,
                                  .to_json = mqtt_attach_to_json,
                                  .from_json = mqtt_attach_from_json};
const hm_type mqtt_forward_type = {.name = "mqtt.forward",
                                   .free = mqtt_blob_destroy,
                                   .to_json = mqtt_blob_to_json,
                                   .from_json = mqtt_blob_from_json};
const hm_type mqtt_out_type = {.name = "mqtt.out",
                               .free = mqtt_blob_destroy,
                               .to_json = mqtt_blob_to_json,
                               .from_json = mqtt_blob_from_json};
#define CTL_TYPE(var, wire)                                                    \
    const hm_type var = {.name = wire,                                         \
                         .free = mqtt_ctl_destroy,                             \
                         .to_json = mqtt_ctl_to_json,                          \
                         .from_json = mqtt_ctl_from_json}
CTL_TYPE(mqtt_attached_type, "mqtt.attached");
CTL_TYPE(mqtt_detach_type, "mqtt.detach");
CTL_TYPE(mqtt_ack_type, "mqtt.ack");
CTL_TYPE(mqtt_moved_type, "mqtt.moved");
CTL_TYPE(mqtt_lost_type, "mqtt.lost");
const hm_type mqtt_kick_type = {.name = "mqtt.kick",
                                .to_json = empty_to_json,
                                .from_json = empty_from_json};
const hm_type mqtt_done_type = {.name = "mqtt.done",
                                .to_json = empty_to_json,
                                .from_json = empty_from_json};
const hm_type mqtt_node_gone_type = {.name = "mqtt.node_gone",
                                     .free = hm_free};
const hm_type mqtt_leave_type = {.name = "mqtt.leave", .free = hm_free};
const hm_type mqtt_handoff_type = {.name = "mqtt.handoff",
                                   .free = mqtt_handoff_destroy,
                                   .to_json = mqtt_handoff_to_json,
                                   .from_json = mqtt_handoff_from_json};
const hm_type mqtt_restore_type = {.name = "mqtt.restore",
                                   .free = mqtt_restore_destroy,
                                   .to_json = mqtt_restore_to_json,
                                   .from_json = mqtt_restore_from_json};
const hm_type mqtt_mv_done_type = {.name = "mqtt.mv.done",
                                   .to_json = empty_to_json,
                                   .from_json = empty_from_json};
const hm_type mqtt_deliver_type = {.name = "mqtt.deliver",
                                   .free = mqtt_pub_release,
                                   .to_json = mqtt_pub_to_json,
                                   .from_json = mqtt_pub_from_json};

hm_err mqtt_session_msg_register(hm_runtime *rt)
{
    static const hm_type *const all[] = {
        &mqtt_attach_type, &mqtt_forward_type, &mqtt_out_type,
        &mqtt_attached_type, &mqtt_detach_type, &mqtt_ack_type,
        &mqtt_moved_type, &mqtt_lost_type, &mqtt_kick_type, &mqtt_done_type,
        &mqtt_handoff_type, &mqtt_deliver_type, &mqtt_mv_done_type,
        &mqtt_restore_type};
    hm_err err;

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if ((err = hm_runtime_register_type(rt, all[i])) != HM_OK)
            return err;
    return HM_OK;
}
