/* cluster/fast_decode.c: the routed-message decoders (see fast.h and ADR
 * 0120 and 0215), the receiving half of the hot path, and the framer that
 * hands a link's lines to them in batches.
 *
 * The decoder walks the canonical cl.msg line with a cursor: literal key
 * sequences, unsigned integers, strings without escapes or control bytes
 * (checked for UTF-8), and the data value, whose extent is found by a
 * bracket-and-string scanner and which jansson then parses. Any deviation
 * returns false before anything is allocated, except the data, freed on
 * the way out; the caller then takes the general (jansson) path. The
 * encoder is in fast_encode.c; the bytes both must agree on are in
 * fast_impl.h. */
#include "cluster/fast.h"
#include "cluster/fast_impl.h"

#include "net/hp.h"
#include "net/line.h"
#include "runtime/alloc.h"

#include "cluster/wire.h"

#include <jansson.h>
#include <string.h>

#define U53_MAX ((1ull << 53) - 1)

json_t *cl_fields_json(cl_fields *f)
{
    if (!f->data && f->str.p)
        f->data = json_stringn_nocheck(f->str.p, f->str.n);
    return f->data;
}

void cl_fields_fini(cl_fields *f)
{
    if (f->data)
        json_decref(f->data);
    memset(f, 0, sizeof *f);
}

bool cl_span_is(cl_span s, const char *str)
{
    return s.p && strlen(str) == s.n && memcmp(s.p, str, s.n) == 0;
}

/* ------------------------------------------------------------- decoder */

typedef struct cur {
    const char *p, *end;
} cur;

static bool lit(cur *c, const char *s, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

#define LIT(c, s) lit((c), (s), sizeof(s) - 1)

/* The number of decimal digits at the start of the 8 bytes `w` (the
 * first byte the lowest), 8 if all are. A byte is a digit when its high
 * nibble is 3 and adding 6 keeps it 3; a carry out of a byte (0xfa and
 * up, not a digit) only spoils the bytes after it. */
static inline unsigned word_digits(uint64_t w)
{
    const uint64_t hi = 0xf0f0f0f0f0f0f0f0ull, three = 0x3030303030303030ull;
    uint64_t bad = ((w & hi) ^ three) |
                   (((w + 0x0606060606060606ull) & hi) ^ three);

    return bad ? (unsigned)__builtin_ctzll(bad) / 8 : 8;
}

/* The value of the 8 ASCII digits in `w` (the first the most
 * significant), three multiplications (Lemire's SWAR method). */
static inline uint64_t eight_digits(uint64_t w)
{
    w -= 0x3030303030303030ull;
    w = (w * 10) + (w >> 8);
    w = (((w & 0x000000ff000000ffull) * (100 + (1000000ull << 32))) +
         (((w >> 16) & 0x000000ff000000ffull) * (1 + (10000ull << 32)))) >>
        32;
    return w;
}

/* An unsigned integer in 0..max (max < 10^19), no sign, no leading
 * zero. At most 19 digits are read, so `v` cannot wrap; a 20th digit
 * means a number over max. Up to 7 digits followed by something else
 * (seqs, ids) are read eight bytes at a time. */
static bool uint_max(cur *c, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = c->p, *p = start;
    const char *lim = c->end - p > 19 ? p + 19 : c->end;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (c->end - p >= 8) {
        uint64_t w;
        unsigned k;

        memcpy(&w, p, 8);
        k = word_digits(w);
        if (k > 0 && k < 8) {
            /* The k digits to the top bytes, zero digits below them. */
            v = eight_digits((w << (8 * (8 - k))) |
                             (0x3030303030303030ull >> (8 * k)));
            p += k;
            goto check;
        }
    }
#endif
    while (p < lim && (unsigned)(*p - '0') < 10)
        v = v * 10 + (uint64_t)(*p++ - '0');
check:
    if (p == start || (*start == '0' && p - start > 1) || v > max ||
        (p < c->end && (unsigned)(*p - '0') < 10))
        return false;
    c->p = p;
    *out = v;
    return true;
}

/* The bytes of `w` that end a plain string's fast scan, as a mask of
 * their high bits: a quote, a backslash, a control byte, or a byte >= 0x80
 * (UTF-8 is then checked on the whole string). The classic "has a zero
 * byte" test, (x - 0x01..) & ~x & 0x80..: a borrow only runs upwards from
 * a byte that is itself flagged, so the lowest flagged byte is exact. */
static inline uint64_t word_stops(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');

    return (((q - ones) & ~q) | ((bs - ones) & ~bs) | (w - ones * 0x20) | w) &
           high;
}

/* A string without escapes or control bytes, valid UTF-8, of 1..max
 * bytes: its start and length. Eight bytes at a time (little-endian: the
 * first byte is the lowest): an ASCII name ends at its quote without a
 * byte loop; after a non-ASCII byte, byte by byte. Inlined: it runs three
 * times per routed line. */
static inline __attribute__((always_inline)) bool
plain_str(cur *c, size_t max, const char **s, size_t *n)
{
    const char *q;
    unsigned char high = 0;

    if (c->p >= c->end || *c->p != '"')
        return false;

    q = ++c->p;
    while (c->end - q >= 8) {
        uint64_t w, m;

        memcpy(&w, q, 8);
        if ((m = word_stops(w))) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            q += (size_t)__builtin_ctzll(m) / 8; /* the first stop */
            if (*q == '"')
                goto end; /* every byte before it is plain ASCII */
#endif
            break;
        }
        q += 8;
    }
    while (q < c->end && !plain_stop[(unsigned char)*q])
        high |= (unsigned char)*q++;
    if (q >= c->end || *q != '"')
        return false;
end:
    if (q == c->p || (size_t)(q - c->p) > max ||
        ((high & 0x80) &&
         !hm_utf8_valid((const uint8_t *)c->p, (size_t)(q - c->p))))
        return false;
    *s = c->p;
    *n = (size_t)(q - c->p);
    c->p = q + 1;
    return true;
}

/* The extent of one JSON value: strings skipped (escapes included),
 * brackets counted. jansson checks the value itself afterwards. */
static bool value_extent(cur *c, const char **s, size_t *n)
{
    const char *q = c->p;
    int depth = 0;

    while (q < c->end) {
        char ch = *q;

        if (ch == '"') {
            for (q++; q < c->end && *q != '"'; q++)
                if (*q == '\\' && ++q >= c->end)
                    return false;
            if (q >= c->end)
                return false;
        } else if (ch == '{' || ch == '[') {
            if (++depth > 64)
                return false;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0)
                break;
            depth--;
        } else if (ch == ',' && depth == 0) {
            break;
        }
        q++;
    }
    if (depth != 0 || q == c->p)
        return false;
    *s = c->p;
    *n = (size_t)(q - c->p);
    c->p = q;
    return true;
}

/* The data value `s` (`n` bytes) into `f`: a string without escapes or
 * control bytes as a span (no allocation; cl_fields_json() makes the
 * json_t if asked), anything else through jansson. False if it is not a
 * JSON value. */
static bool take_value(const char *s, size_t n, cl_fields *f)
{
    if (n >= 2 && s[0] == '"') {
        cur c = {s, s + n};
        const char *p;
        size_t len;

        if (n == 2) { /* "" (plain_str wants one byte at least) */
            f->str = (cl_span){s + 1, 0};
            return true;
        }
        if (plain_str(&c, n, &p, &len) && c.p == c.end) {
            f->str = (cl_span){p, len};
            return true;
        }
    }
    f->data = json_loadb(s, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                         NULL);
    return f->data != NULL;
}

/* The data value and what follows it, to the end of the line. A plain
 * string (the commonest data) is taken in one scan; anything else, or a
 * string followed by something unexpected, goes the general way (the
 * value's extent, then take_value), so both ways accept the same lines. */
static bool data_and_tail(cur *c, cl_fields *f)
{
    const char *data, *start = c->p;
    size_t data_n;

    if (c->p < c->end && *c->p == '"' && c->end - c->p > 2 &&
        c->p[1] != '"') {
        if (plain_str(c, (size_t)(c->end - c->p), &f->str.p, &f->str.n)) {
            /* Each tail is tried from the string's end: a tail that
             * matched but did not end the line must not move the cursor
             * (a fuzz find: "3"}}}}},"reply":true}}}}} was taken). */
            const char *after = c->p;

            if (LIT(c, "}}}}}") && c->p == c->end)
                return true;
            c->p = after;
            if (LIT(c, ",\"reply\":true}}}}}") && c->p == c->end) {
                f->reply = true;
                return true;
            }
        }
        f->str = (cl_span){0};
        c->p = start; /* the general way decides (plain_str moved it) */
    }
    if (!value_extent(c, &data, &data_n))
        return false;
    if (LIT(c, ",\"reply\":")) {
        if (LIT(c, "true"))
            f->reply = true;
        else if (!LIT(c, "false"))
            return false;
    }
    if (!LIT(c, "}}}}}") || c->p != c->end)
        return false;
    return take_value(data, data_n, f);
}

/* The part of a cl.msg line from after its seq through `"data":` (the
 * inner message's names, id and argument), into `f`. */
static bool middle(cur *c, cl_fields *f)
{
    if (!LIT(c, ",\"msg\":{\"v\":1,\"type\":\"msg\""))
        return false;
    if (LIT(c, ",\"id\":") &&
        (!uint_max(c, HM_HP_MAX_ID, &f->id) || f->id == 0))
        return false;
    if (LIT(c, ",\"from\":") &&
        !plain_str(c, HM_ADDR_MAX_LEN, &f->from.p, &f->from.n))
        return false;
    if (LIT(c, ",\"to\":") &&
        !plain_str(c, HM_ADDR_MAX_LEN, &f->to.p, &f->to.n))
        return false;
    if (!LIT(c, ",\"body\":{\"type\":") ||
        !plain_str(c, HM_ADDR_MAX_LEN, &f->type.p, &f->type.n))
        return false;
    if (LIT(c, ",\"arg\":") &&
        (!uint_max(c, INT64_MAX, &f->arg) || f->arg == 0))
        return false;
    return LIT(c, ",\"data\":");
}

/* A span of the middle at `base` as an offset (SIZE_MAX: absent), and
 * back. */
static size_t span_off(cl_span s, const char *base)
{
    return s.p ? (size_t)(s.p - base) : SIZE_MAX;
}

static cl_span off_span(size_t off, size_t n, const char *base)
{
    return off == SIZE_MAX ? (cl_span){0} : (cl_span){base + off, n};
}

/* Keeps the middle [mid, mid + n) of an accepted line and its fields. */
static void memo_keep(cl_fast_memo *m, const char *mid, size_t n,
                      const cl_fields *f)
{
    if (n > m->cap) {
        hm_free(m->mid);
        m->mid = hm_alloc(n);
        m->cap = n;
    }
    memcpy(m->mid, mid, n);
    m->n = n;
    m->from_off = span_off(f->from, mid);
    m->from_n = f->from.n;
    m->to_off = span_off(f->to, mid);
    m->to_n = f->to.n;
    m->type_off = span_off(f->type, mid);
    m->type_n = f->type.n;
    m->arg = f->arg;
    m->gen++;
}

void cl_fast_memo_fini(cl_fast_memo *m)
{
    hm_free(m->mid);
    memset(m, 0, sizeof *m);
}

bool cl_fast_decode_routed_memo(cl_fast_memo *memo, const char *line,
                                size_t len, cl_fields *out)
{
    cur c = {line, line + len};
    const char *mid, *mid_end;
    bool hit;
    cl_fields f = {0};

    if (!LIT(&c, "{\"v\":1,\"type\":\"msg\",\"body\":{\"type\":\"cl.msg\","
                 "\"data\":{\"v\":1,\"t\":\"cl.msg\",\"seq\":") ||
        !uint_max(&c, U53_MAX, &f.seq) || f.seq == 0)
        return false;
    mid = c.p;
    /* The middle the same bytes as an accepted line's: the same fields
     * (its reading depends on its bytes alone), without reading it. */
    hit = memo && memo->n && (size_t)(c.end - c.p) > memo->n &&
          memcmp(c.p, memo->mid, memo->n) == 0;
    if (hit) {
        f.from = off_span(memo->from_off, memo->from_n, mid);
        f.to = off_span(memo->to_off, memo->to_n, mid);
        f.type = off_span(memo->type_off, memo->type_n, mid);
        f.arg = memo->arg;
        f.memo_gen = memo->gen;
        c.p += memo->n;
    } else if (!middle(&c, &f)) {
        return false;
    }
    mid_end = c.p;
    if (!data_and_tail(&c, &f))
        return false;
    /* Requests carry a fresh id each: their middles never repeat. */
    if (memo && !hit && !f.id) {
        memo_keep(memo, mid, (size_t)(mid_end - mid), &f);
        f.memo_gen = memo->gen;
    }
    *out = f;
    return true;
}

bool cl_fast_decode_routed(const char *line, size_t len, cl_fields *out)
{
    return cl_fast_decode_routed_memo(NULL, line, len, out);
}

bool cl_fast_decode_ack(const char *line, size_t len, uint64_t *seq)
{
    cur c = {line, line + len};

    return LIT(&c, ACK_HEAD) && uint_max(&c, HM_WIRE_INT_MAX, seq) &&
           LIT(&c, "}}}") && c.p == c.end;
}

hm_err cl_inner_fields(const json_t *o, cl_fields *out)
{
    const json_t *body = json_object_get(o, "body");
    const json_t *id = json_object_get(o, "id");
    const json_t *to = json_object_get(o, "to");
    const json_t *from = json_object_get(o, "from");
    const json_t *type, *arg, *data, *reply;

    if (!json_is_object(body))
        return HM_EPROTO;
    type = json_object_get(body, "type");
    arg = json_object_get(body, "arg");
    data = json_object_get(body, "data");
    reply = json_object_get(body, "reply");
    if ((id && (!json_is_integer(id) || json_integer_value(id) < 0)) ||
        (arg && (!json_is_integer(arg) || json_integer_value(arg) < 0)) ||
        (reply && !json_is_boolean(reply)) || (to && !json_is_string(to)) ||
        (from && !json_is_string(from)) || !json_is_string(type))
        return HM_EPROTO;
    memset(out, 0, sizeof *out);
    out->id = id ? (uint64_t)json_integer_value(id) : 0;
    out->reply = json_is_true(reply);
    if (to)
        out->to = (cl_span){json_string_value(to), json_string_length(to)};
    if (from)
        out->from =
            (cl_span){json_string_value(from), json_string_length(from)};
    out->type = (cl_span){json_string_value(type), json_string_length(type)};
    out->arg = arg ? (uint64_t)json_integer_value(arg) : 0;
    out->data = data ? json_incref((json_t *)data) : json_null();
    return HM_OK;
}

/* --------------------------------------------------------------- lines */

static hm_err lines_next(const void *arg, const uint8_t *b, size_t len,
                         size_t *resume, hm_frame *out)
{
    size_t window = len < CL_LINES_BATCH ? len : CL_LINES_BATCH;
    const uint8_t *nl = memrchr(b, '\n', window);

    /* The window is shorter than the line limit, so no line in it can be
     * over it; one line longer than the window is the line framer's. */
    if (!nl)
        return hm_line_next(arg, b, len, resume, out);
    *resume = 0;
    out->offset = 0;
    out->len = out->consumed = (size_t)(nl - b) + 1;
    return HM_OK;
}

void cl_lines_framer_init(hm_framer *out)
{
    hm_line_framer_init(out, NULL);
    out->name = "lines";
    out->next = lines_next;
    out->max_frame_len += CL_LINES_BATCH;
}

bool cl_lines_next(const uint8_t *frame, size_t len, size_t *pos,
                   const uint8_t **line, size_t *line_len)
{
    const uint8_t *start = frame + *pos, *nl;
    size_t n;

    if (*pos >= len)
        return false;
    nl = memchr(start, '\n', len - *pos);
    n = nl ? (size_t)(nl - start) : len - *pos;
    *pos += n + (nl ? 1 : 0);
    if (n > 0 && start[n - 1] == '\r')
        n--;
    *line = start;
    *line_len = n;
    return true;
}
