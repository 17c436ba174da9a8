/* net/hp.c: the HP v1 codec (decode a line, encode an envelope).
 *
 * Decoding checks in a fixed order, and the first failure wins: UTF-8, JSON
 * syntax, object, version, type, then the envelope's optional fields and the
 * body of the type. The order is part of the specification (a line that is
 * both invalid UTF-8 and invalid JSON is reported as invalid_utf8), so the
 * same bad line always gets the same code. UTF-8 is checked here rather than
 * left to jansson so that it gets its own code.
 *
 * Encoding goes through json_dump_callback into one growing buffer, so a
 * line is serialised once and never copied to append its newline. */
#include "net/hp.h"

#include "net/line.h"
#include "runtime/alloc.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    bool closes;
} code_table[] = {
#define HM_HP_CODE_ROW(code, name, closes) {name, closes},
    HM_HP_CODE_LIST(HM_HP_CODE_ROW)
#undef HM_HP_CODE_ROW
};

static const char *const kind_names[HM_HP_KIND_COUNT] = {
    "hello", "welcome", "ping", "pong", "error", "msg",
};

const char *hm_hp_code_name(hm_hp_code code)
{
    if ((unsigned)code >= HM_HP_CODE_COUNT)
        return "other";
    return code_table[code].name;
}

hm_hp_code hm_hp_code_parse(const char *name)
{
    for (unsigned i = 0; i < HM_HP_CODE_COUNT; i++)
        if (strcmp(code_table[i].name, name) == 0)
            return (hm_hp_code)i;
    return HM_HP_CODE_OTHER;
}

bool hm_hp_code_closes(hm_hp_code code)
{
    if ((unsigned)code >= HM_HP_CODE_COUNT)
        return true;
    return code_table[code].closes;
}

const char *hm_hp_kind_name(hm_hp_kind kind)
{
    if ((unsigned)kind >= HM_HP_KIND_COUNT)
        return "unknown";
    return kind_names[kind];
}

/* ----------------------------------------------------------------- UTF-8 */

/* The length of the sequence starting at s[0] (1..4), or 0 if it is not
 * valid UTF-8 (RFC 3629: shortest form, no surrogates, at most U+10FFFF). */
static size_t utf8_seq_len(const uint8_t *s, size_t left)
{
    uint8_t c = s[0];
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

bool hm_utf8_valid(const uint8_t *buf, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n;

        if (buf[i] < 0x80) { /* the common case: plain ASCII */
            i++;
            continue;
        }
        if ((n = utf8_seq_len(buf + i, len - i)) == 0)
            return false;
        i += n;
    }
    return true;
}

bool hm_hp_is_blank(const uint8_t *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return false;
    return true;
}

/* ---------------------------------------------------------------- decode */

static hm_err fail_with(hm_hp_fail *fail, hm_hp_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static hm_err fail_with(hm_hp_fail *fail, hm_hp_code code, const char *fmt, ...)
{
    va_list ap;

    fail->code = code;
    va_start(ap, fmt);
    vsnprintf(fail->reason, sizeof fail->reason, fmt, ap);
    va_end(ap);
    return HM_EPROTO;
}

/* Reads an optional unsigned integer field no larger than `max`. True if it
 * is absent (leaving *out) or valid. */
static bool get_uint(const json_t *obj, const char *key, uint64_t max,
                     uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);

    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) > max)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Reads an optional string field of 1..max_len bytes. */
static bool get_str(const json_t *obj, const char *key, size_t max_len,
                    const char **out)
{
    const json_t *v = json_object_get(obj, key);

    if (!v)
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > max_len)
        return false;
    *out = json_string_value(v);
    return true;
}

static bool has(const json_t *obj, const char *key)
{
    return json_object_get(obj, key) != NULL;
}

/* A version range {"min":a,"max":b}, 1 <= a <= b. */
static bool get_range(const json_t *body, unsigned *min, unsigned *max)
{
    uint64_t lo = 0, hi = 0;

    if (!has(body, "min") || !has(body, "max") ||
        !get_uint(body, "min", UINT32_MAX, &lo) ||
        !get_uint(body, "max", UINT32_MAX, &hi) || lo < 1 || lo > hi)
        return false;
    *min = (unsigned)lo;
    *max = (unsigned)hi;
    return true;
}

static hm_err decode_body(hm_hp_msg *m, hm_hp_fail *fail)
{
    const json_t *b = m->body;
    uint64_t v = 0;

    switch (m->kind) {
    case HM_HP_HELLO:
        if (!b || !get_range(b, &m->u.hello.min, &m->u.hello.max) ||
            !get_str(b, "agent", 256, &m->u.hello.agent))
            return fail_with(fail, HM_HP_BAD_FIELD,
                             "hello needs body.min <= body.max (>= 1)");
        return HM_OK;
    case HM_HP_WELCOME:
        if (!b || !get_range(b, &m->u.welcome.min, &m->u.welcome.max) ||
            !has(b, "version") || !get_uint(b, "version", UINT32_MAX, &v) ||
            !get_str(b, "agent", 256, &m->u.welcome.agent))
            return fail_with(fail, HM_HP_BAD_FIELD,
                             "welcome needs body.version, min and max");
        m->u.welcome.version = (unsigned)v;
        return HM_OK;
    case HM_HP_PING:
    case HM_HP_PONG:
        return HM_OK;
    case HM_HP_ERROR:
        if (!b || !has(b, "code") || !has(b, "reason") ||
            !get_str(b, "code", 64, &m->u.error.code_name) ||
            !json_is_string(json_object_get(b, "reason")) ||
            !get_str(b, "err", 64, &m->u.error.err))
            return fail_with(fail, HM_HP_BAD_FIELD,
                             "error needs body.code and body.reason");
        m->u.error.reason = json_string_value(json_object_get(b, "reason"));
        m->u.error.code = hm_hp_code_parse(m->u.error.code_name);
        return HM_OK;
    case HM_HP_MSG:
        if (!b || !has(b, "type") ||
            !get_str(b, "type", HM_ADDR_MAX_LEN, &m->u.msg.type) ||
            !get_uint(b, "arg", INT64_MAX, &m->u.msg.arg))
            return fail_with(fail, HM_HP_BAD_FIELD,
                             "msg needs body.type and an integer body.arg");
        if (has(b, "reply") && !json_is_boolean(json_object_get(b, "reply")))
            return fail_with(fail, HM_HP_BAD_FIELD, "body.reply: boolean");
        m->u.msg.reply = json_is_true(json_object_get(b, "reply"));
        m->u.msg.data = json_object_get(b, "data");
        return HM_OK;
    default:
        return fail_with(fail, HM_HP_INTERNAL, "no such kind");
    }
}

/* "v": required; hello accepts any version (the range in its body is what
 * negotiates), every other type must carry one this build speaks. */
static hm_err decode_version(const json_t *root, const char *type, hm_hp_msg *m,
                             hm_hp_fail *fail)
{
    const json_t *v = json_object_get(root, "v");
    json_int_t n;

    if (!v)
        return fail_with(fail, HM_HP_MISSING_VERSION, "no \"v\" field");
    n = json_is_integer(v) ? json_integer_value(v) : 0;
    if (n < 1 || n > (json_int_t)UINT32_MAX)
        return fail_with(fail, HM_HP_UNSUPPORTED_VERSION,
                         "\"v\" must be a positive integer");
    if ((!type || strcmp(type, "hello") != 0) &&
        (n < HM_HP_VERSION_MIN || n > HM_HP_VERSION_MAX))
        return fail_with(fail, HM_HP_UNSUPPORTED_VERSION,
                         "version %lld is not supported (%u..%u)", (long long)n,
                         HM_HP_VERSION_MIN, HM_HP_VERSION_MAX);
    m->version = (unsigned)n;
    return HM_OK;
}

static hm_err decode_envelope(const json_t *root, hm_hp_msg *m,
                              hm_hp_fail *fail)
{
    const json_t *t = json_object_get(root, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : NULL;
    hm_err err;
    int k;

    get_uint(root, "id", HM_HP_MAX_ID, &fail->id); /* for correlation */
    if ((err = decode_version(root, type, m, fail)) != HM_OK)
        return err;
    if (!type)
        return fail_with(fail, HM_HP_BAD_FIELD, "\"type\" must be a string");
    for (k = 0; k < HM_HP_KIND_COUNT; k++)
        if (strcmp(type, kind_names[k]) == 0)
            break;
    if (k == HM_HP_KIND_COUNT)
        return fail_with(fail, HM_HP_UNKNOWN_TYPE, "unknown type \"%.64s\"",
                         type);
    m->kind = (hm_hp_kind)k;
    if (!get_uint(root, "id", HM_HP_MAX_ID, &m->id) ||
        (has(root, "id") && m->id == 0))
        return fail_with(fail, HM_HP_BAD_FIELD,
                         "\"id\" must be an integer in 1..2^53-1");
    if (!get_str(root, "from", HM_ADDR_MAX_LEN, &m->from) ||
        !get_str(root, "to", HM_ADDR_MAX_LEN, &m->to))
        return fail_with(fail, HM_HP_BAD_FIELD,
                         "\"from\" and \"to\" must be non-empty strings");
    m->body = json_object_get(root, "body");
    if (m->body && !json_is_object(m->body))
        return fail_with(fail, HM_HP_BAD_FIELD, "\"body\" must be an object");
    return decode_body(m, fail);
}

hm_err hm_hp_decode(const uint8_t *line, size_t len, hm_hp_msg *out,
                    hm_hp_fail *fail)
{
    hm_hp_msg m;
    json_error_t jerr;
    json_t *root;

    memset(&m, 0, sizeof m);
    memset(fail, 0, sizeof *fail);
    if (!hm_utf8_valid(line, len))
        return fail_with(fail, HM_HP_INVALID_UTF8, "line is not UTF-8");
    root = json_loadb((const char *)line, len,
                      JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail_with(fail, HM_HP_INVALID_JSON, "column %d: %s", jerr.column,
                         jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail_with(fail, HM_HP_NOT_OBJECT, "a message is an object");
    }
    m.root = root;
    if (decode_envelope(root, &m, fail) != HM_OK) {
        json_decref(root);
        return HM_EPROTO;
    }
    *out = m;
    return HM_OK;
}

void hm_hp_msg_fini(hm_hp_msg *m)
{
    if (!m)
        return;
    json_decref(m->root);
    m->root = NULL;
}

/* ---------------------------------------------------------------- encode */

typedef struct out_buf {
    char *buf; /* owned */
    size_t len, cap;
    size_t max_len; /* without the newline */
    bool too_big;
} out_buf;

static int append(const char *chunk, size_t len, void *arg)
{
    out_buf *o = arg;

    if (o->len + len > o->max_len) {
        o->too_big = true;
        return -1; /* stops jansson at once: the line would be refused */
    }
    if (o->len + len + 1 > o->cap) { /* + 1: the newline */
        size_t cap = o->cap ? o->cap : 256;

        while (cap < o->len + len + 1)
            cap *= 2;
        o->buf = hm_realloc(o->buf, cap);
        o->cap = cap;
    }
    memcpy(o->buf + o->len, chunk, len);
    o->len += len;
    return 0;
}

/* Builds the envelope object; NULL if a string is not UTF-8. The body is
 * shared with the caller (a reference), never copied. */
static json_t *build_envelope(const hm_hp_envelope *env)
{
    json_t *o = json_object();
    int bad = 0;

    bad |= json_object_set_new(o, "v", json_integer(HM_HP_VERSION_MAX));
    bad |= json_object_set_new(o, "type", json_string(env->type));
    if (env->id)
        bad |= json_object_set_new(o, "id", json_integer((json_int_t)env->id));
    if (env->from)
        bad |= json_object_set_new(o, "from", json_string(env->from));
    if (env->to)
        bad |= json_object_set_new(o, "to", json_string(env->to));
    if (env->body)
        bad |= json_object_set_new(o, "body", json_incref((json_t *)env->body));
    if (bad) { /* json_string() returned NULL: not UTF-8 */
        json_decref(o);
        return NULL;
    }
    return o;
}

hm_err hm_hp_encode(const hm_hp_envelope *env, size_t max_len, char **line_out,
                    size_t *len_out)
{
    out_buf o = {.max_len = max_len ? max_len : HM_NET_MAX_LINE};
    json_t *root;
    int rc;

    if (!env->type || env->id > HM_HP_MAX_ID)
        return HM_EINVAL;
    if (!(root = build_envelope(env)))
        return HM_EINVAL;
    rc = json_dump_callback(root, append, &o, JSON_COMPACT);
    json_decref(root);
    if (rc != 0) {
        hm_free(o.buf);
        return o.too_big ? HM_ETOOBIG : HM_EINVAL;
    }
    o.buf[o.len++] = '\n'; /* append() kept room for it */
    *line_out = o.buf;
    *len_out = o.len;
    return HM_OK;
}

static json_t *range_body(unsigned min, unsigned max, const char *agent)
{
    json_t *b = json_object();
    json_t *a = agent ? json_string(agent) : NULL; /* NULL if not UTF-8 */

    json_object_set_new(b, "min", json_integer(min));
    json_object_set_new(b, "max", json_integer(max));
    if (a)
        json_object_set_new(b, "agent", a);
    return b;
}

json_t *hm_hp_hello_body(unsigned min, unsigned max, const char *agent)
{
    return range_body(min, max, agent);
}

json_t *hm_hp_welcome_body(unsigned version, unsigned min, unsigned max,
                           const char *agent)
{
    json_t *b = range_body(min, max, agent);

    json_object_set_new(b, "version", json_integer(version));
    return b;
}

json_t *hm_hp_error_body(hm_hp_code code, const char *reason,
                         const char *err_name)
{
    json_t *b = json_object();
    json_t *r = reason ? json_string(reason) : NULL;

    json_object_set_new(b, "code", json_string(hm_hp_code_name(code)));
    /* A reason that is not UTF-8 is replaced rather than dropping the
     * error: the code is what programs act on. */
    json_object_set_new(b, "reason", r ? r : json_string("(no reason)"));
    if (err_name)
        json_object_set_new(b, "err", json_string(err_name));
    return b;
}

hm_err hm_hp_encode_error(hm_hp_code code, const char *reason, uint64_t id,
                          char **line_out, size_t *len_out)
{
    json_t *body = hm_hp_error_body(code, reason, NULL);
    hm_hp_envelope env = {.type = "error", .id = id, .body = body};
    hm_err err = hm_hp_encode(&env, 0, line_out, len_out);

    json_decref(body);
    return err;
}

hm_err hm_hp_negotiate(unsigned peer_min, unsigned peer_max,
                       unsigned *version_out)
{
    unsigned hi = peer_max < HM_HP_VERSION_MAX ? peer_max : HM_HP_VERSION_MAX;
    unsigned lo = peer_min > HM_HP_VERSION_MIN ? peer_min : HM_HP_VERSION_MIN;

    if (lo > hi)
        return HM_EPROTO;
    *version_out = hi;
    return HM_OK;
}
