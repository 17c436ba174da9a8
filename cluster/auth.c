/* cluster/auth.c: the shared secret, nonces and HMAC proofs of a link.
 *
 * The transcript a proof covers is a byte string built as
 *   "hermes-cluster-link-v1" | role | cluster | dialler | dialler_inc |
 *   dialler_nonce | acceptor | acceptor_inc | acceptor_nonce
 * where every string is preceded by its length as 4 big-endian bytes and
 * every integer is 8 big-endian bytes. Length prefixes make the encoding
 * injective; the role byte makes the dialler's proof useless as the
 * acceptor's and the reverse. The secret is kept in one heap block that is
 * wiped with OPENSSL_cleanse before it is freed. */
#include "cluster/auth.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char TRANSCRIPT_LABEL[] = "hermes-cluster-link-v1";

struct hm_auth_secret {
    size_t len;
    uint8_t bytes[]; /* len bytes, not NUL-terminated */
};

hm_err hm_auth_secret_from_bytes(const void *bytes, size_t len,
                                 hm_auth_secret **out)
{
    if (len < HM_AUTH_SECRET_MIN_LEN || len > HM_AUTH_SECRET_MAX_LEN)
        return HM_EINVAL;
    hm_auth_secret *s = hm_alloc(sizeof *s + len);
    s->len = len;
    memcpy(s->bytes, bytes, len);
    *out = s;
    return HM_OK;
}

void hm_auth_secret_destroy(hm_auth_secret *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s->bytes, s->len);
    hm_free(s);
}

/* Checks what fstat says about the open secret file. */
static hm_err check_secret_file(const char *path, const struct stat *st)
{
    if (!S_ISREG(st->st_mode)) {
        HM_LOG_ERROR("CL-SECRET-NOTFILE", "%s is not a regular file", path);
        return HM_EINVAL;
    }
    if (st->st_mode & (S_IRWXG | S_IRWXO)) {
        HM_LOG_ERROR("CL-SECRET-PERMS",
                     "%s is accessible to group or others (mode %03o); "
                     "run chmod 600 on it",
                     path, (unsigned)(st->st_mode & 0777));
        return HM_EDENIED;
    }
    if (st->st_size > HM_AUTH_SECRET_MAX_LEN + 2) {
        HM_LOG_ERROR("CL-SECRET-SIZE", "%s is longer than %d bytes", path,
                     HM_AUTH_SECRET_MAX_LEN);
        return HM_EINVAL;
    }
    return HM_OK;
}

/* Reads at most `cap` bytes of `fd` into `buf`; the count in `*len`. */
static hm_err read_all(int fd, const char *path, uint8_t *buf, size_t cap,
                       size_t *len)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            HM_LOG_ERROR("CL-SECRET-READ", "read %s: %s", path,
                         strerror(errno));
            return HM_ESYS;
        }
        if (n == 0 || (got += (size_t)n) == cap)
            break;
    }
    *len = got;
    return HM_OK;
}

hm_err hm_auth_secret_load(const char *path, hm_auth_secret **out)
{
    /* One byte more than the maximum plus "\r\n", so an overlong file is
     * detected even if fstat lied (a file that grows while we read). */
    uint8_t buf[HM_AUTH_SECRET_MAX_LEN + 3];
    size_t len = 0;
    struct stat st;
    hm_err err;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        HM_LOG_ERROR("CL-SECRET-OPEN", "open %s: %s", path, strerror(errno));
        return HM_ESYS;
    }
    if (fstat(fd, &st) != 0) {
        HM_LOG_ERROR("CL-SECRET-STAT", "stat %s: %s", path, strerror(errno));
        err = HM_ESYS;
        goto done;
    }
    if ((err = check_secret_file(path, &st)) != HM_OK)
        goto done;
    if ((err = read_all(fd, path, buf, sizeof buf, &len)) != HM_OK)
        goto done;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if ((err = hm_auth_secret_from_bytes(buf, len, out)) != HM_OK)
        HM_LOG_ERROR("CL-SECRET-LEN",
                     "%s: the secret must be %d to %d bytes, not %zu", path,
                     HM_AUTH_SECRET_MIN_LEN, HM_AUTH_SECRET_MAX_LEN, len);
done:
    OPENSSL_cleanse(buf, sizeof buf);
    close(fd);
    return err;
}

hm_err hm_auth_nonce(uint8_t *nonce)
{
    if (RAND_bytes(nonce, HM_AUTH_NONCE_LEN) != 1) {
        HM_LOG_ERROR("CL-RAND-FAIL", "RAND_bytes failed");
        return HM_ESYS;
    }
    return HM_OK;
}

/* ------------------------------------------------------------ transcript */

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *put_bytes(uint8_t *p, const void *b, size_t len)
{
    p = put_u32(p, (uint32_t)len);
    memcpy(p, b, len);
    return p + len;
}

/* Builds the transcript; returns owned bytes, their count in `*len`. */
static uint8_t *build_transcript(hm_auth_role role, const hm_auth_transcript *t,
                                 size_t *len)
{
    size_t cl = strlen(t->cluster), dl = strlen(t->dialler),
           al = strlen(t->acceptor);
    size_t cap = 7 * 4 + sizeof TRANSCRIPT_LABEL + 1 + cl + dl + al + 2 * 8 +
                 2 * HM_AUTH_NONCE_LEN;
    uint8_t *buf = hm_alloc(cap), *p = buf;

    p = put_bytes(p, TRANSCRIPT_LABEL, sizeof TRANSCRIPT_LABEL - 1);
    *p++ = (uint8_t)role;
    p = put_bytes(p, t->cluster, cl);
    p = put_bytes(p, t->dialler, dl);
    p = put_u64(p, t->dialler_inc);
    p = put_bytes(p, t->dialler_nonce, HM_AUTH_NONCE_LEN);
    p = put_bytes(p, t->acceptor, al);
    p = put_u64(p, t->acceptor_inc);
    p = put_bytes(p, t->acceptor_nonce, HM_AUTH_NONCE_LEN);
    HM_ASSERT((size_t)(p - buf) <= cap);
    *len = (size_t)(p - buf);
    return buf;
}

hm_err hm_auth_prove(const hm_auth_secret *s, hm_auth_role role,
                     const hm_auth_transcript *t, uint8_t *proof)
{
    if (!t->cluster || !t->dialler || !t->acceptor || !t->dialler_nonce ||
        !t->acceptor_nonce)
        return HM_EINVAL;
    size_t len, out_len = 0;
    uint8_t *msg = build_transcript(role, t, &len);
    unsigned char *ok =
        EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, s->bytes, s->len, msg,
                  len, proof, HM_AUTH_PROOF_LEN, &out_len);
    hm_free(msg);
    if (!ok || out_len != HM_AUTH_PROOF_LEN) {
        HM_LOG_ERROR("CL-HMAC-FAIL", "HMAC-SHA256 failed");
        return HM_ESYS;
    }
    return HM_OK;
}

bool hm_auth_verify(const hm_auth_secret *s, hm_auth_role role,
                    const hm_auth_transcript *t, const uint8_t *proof)
{
    uint8_t expect[HM_AUTH_PROOF_LEN];
    if (hm_auth_prove(s, role, t, expect) != HM_OK)
        return false;
    /* CRYPTO_memcmp's time depends on the length only, so a forger learns
     * nothing from how long a refusal takes. */
    bool same = CRYPTO_memcmp(expect, proof, HM_AUTH_PROOF_LEN) == 0;
    OPENSSL_cleanse(expect, sizeof expect);
    return same;
}

/* ------------------------------------------------------------------ hex */

void hm_auth_to_hex(const uint8_t *bytes, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

hm_err hm_auth_from_hex(const char *hex, uint8_t *bytes, size_t len)
{
    if (strlen(hex) != 2 * len)
        return HM_EPROTO;
    for (size_t i = 0; i < 2 * len; i++)
        if (hex_value(hex[i]) < 0)
            return HM_EPROTO;
    for (size_t i = 0; i < len; i++)
        bytes[i] =
            (uint8_t)(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
    return HM_OK;
}
