/* apps/mqtt/passwd.c: mosquitto password files.
 *
 * Loading decodes every hash once into a sorted array of entries, so a
 * check is a binary search plus one hash computation, and a file that
 * loaded is known to be fully usable. Files are small (people, not
 * devices, are listed), so a sorted array beats a hash table on both code
 * and memory. */
#include "apps/mqtt/passwd.h"

#include "runtime/alloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_LEN 64 /* SHA-512 */
#define MAX_SALT_LEN 64
#define MAX_ITERATIONS 10000000

typedef enum { KIND_SHA512 = 6, KIND_PBKDF2 = 7 } hash_kind;

typedef struct entry {
    char *user;
    size_t user_len;
    hash_kind kind;
    int iterations;
    uint8_t salt[MAX_SALT_LEN];
    size_t salt_len;
    uint8_t hash[HASH_LEN];
} entry;

struct mqtt_passwd {
    entry *entries; /* sorted by user name */
    size_t count;
    entry dummy; /* checked against for unknown users; never matches */
};

/* Decode standard base64 (with padding) of `len` characters into `out`
 * (`cap` bytes); false if malformed or too long. */
static bool b64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                       size_t *out_len)
{
    uint8_t tmp[3 * 128 / 4];
    size_t pad = 0;
    int n;
    if (len == 0 || len % 4 != 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '+' || c == '/' ||
                  (c == '=' && i >= len - 2);
        if (!ok)
            return false;
    }
    pad = (in[len - 1] == '=') + (in[len - 2] == '=');
    if (in[len - 2] == '=' && in[len - 1] != '=')
        return false;
    n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad > cap)
        return false;
    *out_len = (size_t)n - pad;
    memcpy(out, tmp, *out_len);
    return true;
}

/* Parse "$6$salt$hash" or "$7$iter$salt$hash" (NUL-terminated) into `e`. */
static const char *parse_hash(char *s, entry *e)
{
    char *parts[5], *p = s + 1;
    int n = 0;
    size_t hash_len;

    if (s[0] != '$')
        return "not a mosquitto hash (plaintext? run mosquitto_passwd -U)";
    for (;;) {
        if (n == 5)
            return "too many '$' fields";
        parts[n++] = p;
        if (!(p = strchr(p, '$')))
            break;
        *p++ = '\0';
    }
    if (strcmp(parts[0], "6") == 0 && n == 3) {
        e->kind = KIND_SHA512;
        e->iterations = 0;
    } else if (strcmp(parts[0], "7") == 0 && n == 4) {
        char *end;
        long it = strtol(parts[1], &end, 10);
        if (*parts[1] == '\0' || *end != '\0' || it < 1 || it > MAX_ITERATIONS)
            return "bad iteration count";
        e->kind = KIND_PBKDF2;
        e->iterations = (int)it;
    } else {
        return "unknown hash type (want $6$ or $7$)";
    }
    if (!b64_decode(parts[n - 2], strlen(parts[n - 2]), e->salt, sizeof e->salt,
                    &e->salt_len))
        return "bad salt encoding";
    if (!b64_decode(parts[n - 1], strlen(parts[n - 1]), e->hash, sizeof e->hash,
                    &hash_len) ||
        hash_len != HASH_LEN)
        return "bad hash encoding (want 64 bytes of SHA-512)";
    return NULL;
}

static int compare_names(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int by_user(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return compare_names(x->user, x->user_len, y->user, y->user_len);
}

/* Parse one non-comment line into `e`; NULL or why not. */
static const char *parse_line(char *line, entry *e)
{
    char *colon = strchr(line, ':');
    const char *why;
    if (!colon || colon == line)
        return "expected username:hash";
    *colon = '\0';
    if ((why = parse_hash(colon + 1, e)) != NULL)
        return why;
    e->user_len = (size_t)(colon - line);
    e->user = hm_strndup(line, e->user_len);
    return NULL;
}

static void strip_eol(char *line)
{
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
                       line[len - 1] == '\t'))
        line[--len] = '\0';
}

static hm_err check_duplicates(mqtt_passwd *p, const char *name,
                               mqtt_file_error *err)
{
    if (p->count > 1)
        qsort(p->entries, p->count, sizeof *p->entries, by_user);
    for (size_t i = 1; i < p->count; i++)
        if (by_user(&p->entries[i - 1], &p->entries[i]) == 0) {
            mqtt_file_error_set(err, "%s: user %s is listed twice", name,
                      p->entries[i].user);
            return HM_EINVAL;
        }
    return HM_OK;
}

hm_err mqtt_passwd_parse_string(const char *name, const char *text,
                                mqtt_passwd **out, mqtt_file_error *err)
{
    mqtt_passwd *p = hm_calloc(1, sizeof *p);
    char *copy = hm_strdup(text), *line = copy;
    size_t cap = 0;
    int lineno = 0;
    hm_err result = HM_OK;

    p->dummy.kind = KIND_PBKDF2;
    p->dummy.iterations = MQTT_PASSWD_ITERATIONS;
    p->dummy.salt_len = MQTT_PASSWD_SALT_LEN;
    while (line) {
        char *nl = strchr(line, '\n');
        const char *why;
        entry e;
        lineno++;
        if (nl)
            *nl = '\0';
        strip_eol(line);
        if (line[0] != '\0' && line[0] != '#') {
            memset(&e, 0, sizeof e);
            if ((why = parse_line(line, &e)) != NULL) {
                mqtt_file_error_set(err, "%s:%d: %s", name, lineno, why);
                result = HM_EINVAL;
                break;
            }
            if (p->count == cap) {
                cap = cap ? cap * 2 : 8;
                p->entries = hm_realloc(p->entries, cap * sizeof *p->entries);
            }
            p->entries[p->count++] = e;
        }
        line = nl ? nl + 1 : NULL;
    }
    hm_free(copy);
    if (result == HM_OK)
        result = check_duplicates(p, name, err);
    if (result != HM_OK) {
        mqtt_passwd_destroy(p);
        return result;
    }
    *out = p;
    return HM_OK;
}

hm_err mqtt_passwd_load(const char *path, mqtt_passwd **out,
                        mqtt_file_error *err)
{
    char *text;
    hm_err result;

    if ((result = mqtt_file_read(path, &text, err)) != HM_OK)
        return result;
    result = mqtt_passwd_parse_string(path, text, out, err);
    hm_free(text);
    return result;
}

void mqtt_passwd_destroy(mqtt_passwd *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++) {
        OPENSSL_cleanse(p->entries[i].hash, HASH_LEN);
        hm_free(p->entries[i].user);
    }
    hm_free(p->entries);
    hm_free(p);
}

size_t mqtt_passwd_count(const mqtt_passwd *p)
{
    return p->count;
}

/* Compute `e`'s kind of hash of `password` into `out`. */
static bool compute(const entry *e, const uint8_t *password, size_t len,
                    uint8_t out[HASH_LEN])
{
    if (e->kind == KIND_PBKDF2)
        return PKCS5_PBKDF2_HMAC((const char *)password, (int)len, e->salt,
                                 (int)e->salt_len, e->iterations, EVP_sha512(),
                                 HASH_LEN, out) == 1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, password, len) == 1 &&
              EVP_DigestUpdate(ctx, e->salt, e->salt_len) == 1 &&
              EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok;
}

hm_err mqtt_passwd_check(const mqtt_passwd *p, const char *user,
                         size_t user_len, const uint8_t *password,
                         size_t password_len)
{
    entry key = {.user = (char *)user, .user_len = user_len};
    const entry *e = p->count ? bsearch(&key, p->entries, p->count,
                                        sizeof *p->entries, by_user)
                              : NULL;
    uint8_t got[HASH_LEN];
    bool ok;

    if (password_len > 65535)
        return HM_EDENIED;
    ok = compute(e ? e : &p->dummy, password, password_len, got) &&
         CRYPTO_memcmp(got, e ? e->hash : p->dummy.hash, HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return ok && e ? HM_OK : HM_EDENIED;
}

hm_err mqtt_passwd_hash(const uint8_t *password, size_t len, int iterations,
                        char **out)
{
    entry e = {.kind = KIND_PBKDF2,
               .iterations = iterations,
               .salt_len = MQTT_PASSWD_SALT_LEN};
    char salt64[4 * MQTT_PASSWD_SALT_LEN / 3 + 4], hash64[4 * HASH_LEN / 3 + 4];
    char buf[256];

    if (iterations < 1 || iterations > MAX_ITERATIONS)
        return HM_EINVAL;
    if (RAND_bytes(e.salt, (int)e.salt_len) != 1)
        return HM_ESYS;
    if (!compute(&e, password, len, e.hash))
        return HM_ESYS;
    EVP_EncodeBlock((unsigned char *)salt64, e.salt, (int)e.salt_len);
    EVP_EncodeBlock((unsigned char *)hash64, e.hash, HASH_LEN);
    snprintf(buf, sizeof buf, "$7$%d$%s$%s", iterations, salt64, hash64);
    OPENSSL_cleanse(&e, sizeof e);
    *out = hm_strdup(buf);
    return HM_OK;
}

/* Whether `line` (up to `len`) is `user`'s entry. */
static bool is_users_line(const char *line, size_t len, const char *user)
{
    size_t ulen = strlen(user);
    return line[0] != '#' && len > ulen && line[ulen] == ':' &&
           memcmp(line, user, ulen) == 0;
}

hm_err mqtt_passwd_edit(const char *text, const char *user, const char *hash,
                        char **out)
{
    size_t cap = strlen(text) + strlen(user) + (hash ? strlen(hash) : 0) + 4;
    char *buf, *w;
    bool found = false;

    if (user[0] == '\0' || strpbrk(user, ":\n\r"))
        return HM_EINVAL;
    w = buf = hm_alloc(cap);
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (is_users_line(line, len, user)) {
            if (hash && !found)
                w += sprintf(w, "%s:%s\n", user, hash);
            found = true;
        } else {
            memcpy(w, line, len);
            w += len;
            *w++ = '\n';
        }
        line += len + (nl ? 1 : 0);
    }
    if (!found && !hash) {
        hm_free(buf);
        return HM_ENOTFOUND;
    }
    if (!found)
        w += sprintf(w, "%s:%s\n", user, hash);
    *w = '\0';
    *out = buf;
    return HM_OK;
}
