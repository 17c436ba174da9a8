/* cluster/fast_encode.c: the routed-message encoder (see fast.h and ADR
 * 0120), the sending half of the hot path.
 *
 * It writes the envelope by hand into a growing buffer and asks jansson
 * only for the message's data; a plain string, the commonest payload, is
 * escaped here, and the commonest line (a send of a plain string through a
 * cached head) is written in pieces of known size. Names are escaped once
 * into a cl_jstr that proxies cache. The decoders that read these lines
 * back are in fast_decode.c; the bytes both must agree on are in
 * fast_impl.h. */
#include "cluster/fast.h"
#include "cluster/fast_impl.h"

#include "net/hp.h"
#include "net/line.h"
#include "runtime/alloc.h"

#include <jansson.h>
#include <string.h>

/* ------------------------------------------------------------- buffers */

typedef struct buf {
    char *p; /* owned (hm_alloc) */
    size_t len, cap, max;
    bool too_big;
} buf;

static void grow(buf *b, size_t add)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + add)
        cap *= 2;
    b->p = hm_realloc(b->p, cap);
    b->cap = cap;
}

static inline void reserve(buf *b, size_t add)
{
    if (b->len + add > b->cap)
        grow(b, add);
}

static inline void put(buf *b, const void *s, size_t n)
{
    reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define PUT_LIT(b, lit) put((b), (lit), sizeof(lit) - 1)

static const char DIGITS2[] = "00010203040506070809101112131415161718192021222324"
                              "25262728293031323334353637383940414243444546474849"
                              "50515253545556575859606162636465666768697071727374"
                              "75767778798081828384858687888990919293949596979899";

/* `v` in decimal at `out` (room for 20 bytes); returns its length. The
 * length first, then two digits per division, written in place from the
 * end (no copy, no call). */
static size_t u64_text(uint64_t v, char *out)
{
    /* 10^0 .. 10^19; the digit count from the bit length, corrected. */
    static const uint64_t p10[20] = {
        1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull,
        10000000ull, 100000000ull, 1000000000ull, 10000000000ull,
        100000000000ull, 1000000000000ull, 10000000000000ull,
        100000000000000ull, 1000000000000000ull, 10000000000000000ull,
        100000000000000000ull, 1000000000000000000ull,
        10000000000000000000ull};
    unsigned t = ((64u - (unsigned)__builtin_clzll(v | 1)) * 1233u) >> 12;
    size_t n = v < 10 ? 1 : t + 1 - (v < p10[t]);
    char *p;

    p = out + n;
    while (v >= 100) {
        const char *d = DIGITS2 + 2 * (v % 100);

        *--p = d[1];
        *--p = d[0];
        v /= 100;
    }
    if (v >= 10) {
        *--p = DIGITS2[2 * v + 1];
        *--p = DIGITS2[2 * v];
    } else {
        *--p = (char)('0' + v);
    }
    return n;
}

static void put_u64(buf *b, uint64_t v)
{
    reserve(b, 24);
    b->len += u64_text(v, b->p + b->len);
}

/* A JSON string of `s` (`n` bytes, valid UTF-8), escaped as jansson
 * escapes it without flags. */
static void put_str(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    reserve(b, n + 2);
    b->p[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c != '"' && c != '\\') {
            size_t run = i + 1;
            while (run < n && (unsigned char)s[run] >= 0x20 &&
                   s[run] != '"' && s[run] != '\\')
                run++;
            put(b, s + i, run - i);
            i = run - 1;
            continue;
        }
        switch (c) {
        case '"': PUT_LIT(b, "\\\""); break;
        case '\\': PUT_LIT(b, "\\\\"); break;
        case '\b': PUT_LIT(b, "\\b"); break;
        case '\f': PUT_LIT(b, "\\f"); break;
        case '\n': PUT_LIT(b, "\\n"); break;
        case '\r': PUT_LIT(b, "\\r"); break;
        case '\t': PUT_LIT(b, "\\t"); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(b, u, sizeof u);
        }
        }
    }
    reserve(b, 1);
    b->p[b->len++] = '"';
}

bool cl_jstr_set(cl_jstr *j, const char *s)
{
    size_t n = strlen(s);
    buf b = {0};

    if (!hm_utf8_valid((const uint8_t *)s, n))
        return false;
    put_str(&b, s, n);
    hm_free(j->p);
    j->p = b.p;
    j->n = b.len;
    return true;
}

void cl_jstr_fini(cl_jstr *j)
{
    hm_free(j->p);
    j->p = NULL;
    j->n = 0;
}

static int dump_cb(const char *chunk, size_t n, void *arg)
{
    buf *b = arg;

    if (b->len + n > b->max) {
        b->too_big = true;
        return -1;
    }
    put(b, chunk, n);
    return 0;
}

/* ------------------------------------------------------------- encoder */

/* The rest of the commonest line after the head: a plain string's data
 * (its opening quote here, its closing one in the tails) and the end. */
#define DATA_LIT ",\"data\":\""
#define TAIL "\"}}\n"
#define REPLY_TAIL "\",\"reply\":true}}\n"

/* Whether `s` needs no escape in JSON: no quote, backslash or control
 * byte (it is valid UTF-8, which goes as it is, as put_str writes it). */
static bool str_is_plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (plain_stop[(unsigned char)s[i]])
            return false;
    return true;
}

/* The envelope up to the body's type, with an id if not 0. */
static void put_head(buf *b, const cl_jstr *to, const cl_jstr *from,
                     const cl_jstr *type, uint64_t id)
{
    PUT_LIT(b, "{\"v\":1,\"type\":\"msg\"");
    if (id) {
        PUT_LIT(b, ",\"id\":");
        put_u64(b, id);
    }
    if (from && from->p) {
        PUT_LIT(b, ",\"from\":");
        put(b, from->p, from->n);
    }
    if (to && to->p) {
        PUT_LIT(b, ",\"to\":");
        put(b, to->p, to->n);
    }
    PUT_LIT(b, ",\"body\":{\"type\":");
    put(b, type->p, type->n);
}

void cl_fast_head(const cl_jstr *to, const cl_jstr *from,
                  const cl_jstr *type, cl_jstr *out)
{
    buf b = {0};

    put_head(&b, to, from, type, 0);
    hm_free(out->p);
    out->p = b.p;
    out->n = b.len;
}

hm_err cl_fast_encode_to(const hm_msg *m, const cl_jstr *head,
                         const cl_jstr *to, const cl_jstr *from,
                         const cl_jstr *type, uint64_t id, bool reply,
                         size_t max_len, char **bufp, size_t *used,
                         size_t *cap)
{
    size_t base = *used, max = max_len ? max_len : HM_NET_MAX_LINE;
    buf b = {.p = *bufp, .len = base, .cap = *cap, .max = base + max};
    json_t *data = NULL;
    const hm_type *t = hm_msg_type(m);
    const char *str = NULL;
    size_t str_n = 0;
    hm_err err;

    if (hm_msg_arg(m) > (uint64_t)INT64_MAX)
        return HM_ECODEC;
    if (id > HM_HP_MAX_ID)
        return HM_EINVAL;
    if (t->to_string) {
        /* The string codec: no json_t. UTF-8 checked as jansson would;
         * a NUL would go out as \u0000, which HP readers (jansson without
         * JSON_ALLOW_NUL) refuse, so it is refused here. */
        str = t->to_string(hm_msg_payload(m), &str_n);
        if (!str || !hm_utf8_valid((const uint8_t *)str, str_n) ||
            memchr(str, '\0', str_n))
            return HM_ECODEC;
    } else if ((err = hm_msg_to_json(m, &data)) != HM_OK) {
        return err;
    }
    if (str && head && head->p && !id && !hm_msg_arg(m) &&
        str_is_plain(str, str_n) &&
        head->n + sizeof DATA_LIT + str_n + sizeof REPLY_TAIL <= max) {
        /* The commonest line (a send of a plain string): its exact size
         * known, written in copies without a check each. */
        char *w;

        reserve(&b, head->n + sizeof DATA_LIT + str_n + sizeof REPLY_TAIL);
        w = b.p + b.len;
        memcpy(w, head->p, head->n);
        w += head->n;
        memcpy(w, DATA_LIT, sizeof DATA_LIT - 1);
        w += sizeof DATA_LIT - 1;
        memcpy(w, str, str_n);
        w += str_n;
        if (reply) {
            memcpy(w, REPLY_TAIL, sizeof REPLY_TAIL - 1);
            w += sizeof REPLY_TAIL - 1;
        } else {
            memcpy(w, TAIL, sizeof TAIL - 1);
            w += sizeof TAIL - 1;
        }
        *bufp = b.p;
        *used = (size_t)(w - b.p);
        *cap = b.cap;
        return HM_OK;
    }
    /* One allocation of the right size for the common case. */
    reserve(&b, 96 + (from ? from->n : 0) + (to ? to->n : 0) + type->n +
                    str_n + str_n / 8);
    if (head && head->p && !id)
        put(&b, head->p, head->n); /* the same envelope as put_head's */
    else
        put_head(&b, to, from, type, id);
    if (hm_msg_arg(m)) {
        PUT_LIT(&b, ",\"arg\":");
        put_u64(&b, hm_msg_arg(m));
    }
    PUT_LIT(&b, ",\"data\":");
    if (str) {
        put_str(&b, str, str_n);
    } else if (json_is_string(data)) { /* jansson keeps strings UTF-8 */
        put_str(&b, json_string_value(data), json_string_length(data));
    } else if (json_dump_callback(data, dump_cb, &b,
                                  JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        err = b.too_big ? HM_ETOOBIG : HM_ECODEC;
        goto fail;
    }
    if (reply)
        PUT_LIT(&b, ",\"reply\":true");
    PUT_LIT(&b, "}}\n");
    if (b.len - base - 1 > max) {
        err = HM_ETOOBIG;
        goto fail;
    }
    json_decref(data);
    *bufp = b.p;
    *used = b.len;
    *cap = b.cap;
    return HM_OK;
fail:
    json_decref(data);
    *bufp = b.p; /* maybe grown; what was there before stays */
    *cap = b.cap;
    return err;
}

hm_err cl_fast_encode_pre(const hm_msg *m, const cl_jstr *to,
                          const cl_jstr *from, const cl_jstr *type,
                          uint64_t id, bool reply, size_t max_len,
                          char **line_out, size_t *len_out)
{
    char *line = NULL;
    size_t used = 0, cap = 0;
    hm_err err = cl_fast_encode_to(m, NULL, to, from, type, id, reply,
                                   max_len, &line, &used, &cap);

    if (err != HM_OK) {
        hm_free(line);
        return err;
    }
    *line_out = line;
    *len_out = used;
    return HM_OK;
}

hm_err cl_fast_encode_app(const hm_msg *m, const char *to, const char *from,
                          uint64_t id, bool reply, size_t max_len,
                          char **line_out, size_t *len_out)
{
    cl_jstr t = {0}, f = {0}, ty = {0};
    hm_err err = HM_EINVAL;

    if ((!to || cl_jstr_set(&t, to)) && (!from || cl_jstr_set(&f, from)) &&
        cl_jstr_set(&ty, hm_msg_type(m)->name))
        err = cl_fast_encode_pre(m, &t, &f, &ty, id, reply, max_len,
                                 line_out, len_out);
    cl_jstr_fini(&t);
    cl_jstr_fini(&f);
    cl_jstr_fini(&ty);
    return err;
}

void cl_fast_wrap_routed(char **bufp, size_t *used, size_t *cap,
                         const char *inner, size_t len, uint64_t seq)
{
    static const char head[] =
        "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"cl.msg\",\"data\":{"
        "\"v\":1,\"t\":\"cl.msg\",\"seq\":";
    buf b = {.p = *bufp, .len = *used, .cap = *cap};

    reserve(&b, sizeof head + 24 + 7 + len + 5);
    PUT_LIT(&b, head);
    put_u64(&b, seq);
    PUT_LIT(&b, ",\"msg\":");
    put(&b, inner, len);
    PUT_LIT(&b, "}}}\n");
    *bufp = b.p;
    *used = b.len;
    *cap = b.cap;
}

char *cl_fast_ack_line(uint64_t seq, size_t *len_out)
{
    buf b = {0};

    PUT_LIT(&b, ACK_HEAD);
    put_u64(&b, seq);
    PUT_LIT(&b, "}}}\n");
    *len_out = b.len;
    return b.p;
}
