/* tests/cluster/test_auth.c: secret files, nonces and handshake proofs. */
#include "cluster/auth.h"

#include "runtime/log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char KEY[] = "correct horse battery staple";

/* Writes `body` to a fresh file with `mode`; returns its path (owned). */
static char *write_secret(const char *body, mode_t mode)
{
    char *path = strdup("/tmp/hm-test-secret-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
    return path;
}

/* Captures the id of the last log line, so refusals can be checked to be
 * logged (and the expected ones do not clutter the test output). */
typedef struct {
    char id[64];
} captured;

/* Each Criterion test runs in its own process, so a test installs the
 * capturing sink once, with a `static` capture that outlives it, and need
 * not restore the default. */
static void capture(void *arg, hm_log_level level, const char *id,
                    const char *line)
{
    captured *c = arg;
    snprintf(c->id, sizeof c->id, "%s", id);
}

static hm_auth_secret *key(const char *k)
{
    hm_auth_secret *s = NULL;
    cr_assert_eq(hm_auth_secret_from_bytes(k, strlen(k), &s), HM_OK);
    return s;
}

typedef struct {
    uint8_t dn[HM_AUTH_NONCE_LEN], an[HM_AUTH_NONCE_LEN];
    hm_auth_transcript t;
} fixture;

static void fixture_init(fixture *f)
{
    cr_assert_eq(hm_auth_nonce(f->dn), HM_OK);
    cr_assert_eq(hm_auth_nonce(f->an), HM_OK);
    f->t = (hm_auth_transcript){.cluster = "prod",
                                .dialler = "a",
                                .dialler_inc = 7,
                                .dialler_nonce = f->dn,
                                .acceptor = "b",
                                .acceptor_inc = 9,
                                .acceptor_nonce = f->an};
}

Test(auth, secret_file_with_trailing_newline_matches_the_bare_key)
{
    char *path = write_secret("correct horse battery staple\r\n", 0600);
    hm_auth_secret *loaded = NULL, *bare = key(KEY);
    fixture f;
    uint8_t proof[HM_AUTH_PROOF_LEN];

    cr_assert_eq(hm_auth_secret_load(path, &loaded), HM_OK);
    fixture_init(&f);
    cr_assert_eq(hm_auth_prove(loaded, HM_AUTH_DIALLER, &f.t, proof), HM_OK);
    cr_expect(hm_auth_verify(bare, HM_AUTH_DIALLER, &f.t, proof));
    hm_auth_secret_destroy(loaded);
    hm_auth_secret_destroy(bare);
    unlink(path);
    free(path);
}

Test(auth, secret_file_readable_by_group_is_refused)
{
    static captured log; /* outlives the test: the sink keeps it */
    hm_log_set_sink(capture, &log);
    char *path = write_secret(KEY, 0640);
    hm_auth_secret *s = NULL;
    cr_expect_eq(hm_auth_secret_load(path, &s), HM_EDENIED);
    cr_expect_null(s);
    unlink(path);
    free(path);
    cr_expect_str_eq(log.id, "CL-SECRET-PERMS");
}

Test(auth, secret_shorter_than_minimum_is_refused)
{
    static captured log; /* outlives the test: the sink keeps it */
    hm_log_set_sink(capture, &log);
    char *path = write_secret("short\n", 0600);
    hm_auth_secret *s = NULL;
    cr_expect_eq(hm_auth_secret_load(path, &s), HM_EINVAL);
    unlink(path);
    free(path);
    cr_expect_str_eq(log.id, "CL-SECRET-LEN");
}

Test(auth, missing_secret_file_is_a_system_error)
{
    static captured log; /* outlives the test: the sink keeps it */
    hm_log_set_sink(capture, &log);
    hm_auth_secret *s = NULL;
    cr_expect_eq(hm_auth_secret_load("/nonexistent/hm-secret", &s), HM_ESYS);
    cr_expect_str_eq(log.id, "CL-SECRET-OPEN");
}

Test(auth, directory_as_secret_file_is_refused)
{
    static captured log; /* outlives the test: the sink keeps it */
    hm_log_set_sink(capture, &log);
    char dir[] = "/tmp/hm-test-dir-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    chmod(dir, 0700);
    hm_auth_secret *s = NULL;
    cr_expect_eq(hm_auth_secret_load(dir, &s), HM_EINVAL);
    rmdir(dir);
    cr_expect_str_eq(log.id, "CL-SECRET-NOTFILE");
}

Test(auth, nonces_differ_between_calls)
{
    uint8_t a[HM_AUTH_NONCE_LEN], b[HM_AUTH_NONCE_LEN];
    cr_assert_eq(hm_auth_nonce(a), HM_OK);
    cr_assert_eq(hm_auth_nonce(b), HM_OK);
    cr_expect_neq(memcmp(a, b, sizeof a), 0);
}

Test(auth, proof_from_another_secret_is_refused)
{
    hm_auth_secret *ours = key(KEY), *theirs = key("another cluster's key!!");
    fixture f;
    uint8_t proof[HM_AUTH_PROOF_LEN];
    fixture_init(&f);
    cr_assert_eq(hm_auth_prove(theirs, HM_AUTH_DIALLER, &f.t, proof), HM_OK);
    cr_expect_not(hm_auth_verify(ours, HM_AUTH_DIALLER, &f.t, proof));
    hm_auth_secret_destroy(ours);
    hm_auth_secret_destroy(theirs);
}

Test(auth, acceptor_proof_does_not_pass_as_dialler_proof)
{
    hm_auth_secret *s = key(KEY);
    fixture f;
    uint8_t proof[HM_AUTH_PROOF_LEN];
    fixture_init(&f);
    cr_assert_eq(hm_auth_prove(s, HM_AUTH_ACCEPTOR, &f.t, proof), HM_OK);
    cr_expect(hm_auth_verify(s, HM_AUTH_ACCEPTOR, &f.t, proof));
    cr_expect_not(hm_auth_verify(s, HM_AUTH_DIALLER, &f.t, proof));
    hm_auth_secret_destroy(s);
}

Test(auth, proof_is_bound_to_every_transcript_field)
{
    hm_auth_secret *s = key(KEY);
    fixture f;
    uint8_t proof[HM_AUTH_PROOF_LEN], other_nonce[HM_AUTH_NONCE_LEN];
    fixture_init(&f);
    cr_assert_eq(hm_auth_nonce(other_nonce), HM_OK);
    cr_assert_eq(hm_auth_prove(s, HM_AUTH_DIALLER, &f.t, proof), HM_OK);

    hm_auth_transcript v[7];
    for (int i = 0; i < 7; i++)
        v[i] = f.t;
    v[0].cluster = "staging";
    v[1].dialler = "c";
    v[2].dialler_inc = 8;
    v[3].dialler_nonce = other_nonce;
    v[4].acceptor = "c";
    v[5].acceptor_inc = 10;
    v[6].acceptor_nonce = other_nonce;
    for (int i = 0; i < 7; i++)
        cr_expect_not(hm_auth_verify(s, HM_AUTH_DIALLER, &v[i], proof),
                      "field %d is not bound", i);
    hm_auth_secret_destroy(s);
}

Test(auth, moving_bytes_between_names_changes_the_proof)
{
    hm_auth_secret *s = key(KEY);
    fixture f;
    uint8_t proof[HM_AUTH_PROOF_LEN];
    fixture_init(&f);
    f.t.cluster = "ab";
    f.t.dialler = "c";
    cr_assert_eq(hm_auth_prove(s, HM_AUTH_DIALLER, &f.t, proof), HM_OK);
    f.t.cluster = "a";
    f.t.dialler = "bc";
    cr_expect_not(hm_auth_verify(s, HM_AUTH_DIALLER, &f.t, proof));
    hm_auth_secret_destroy(s);
}

Test(auth, hex_round_trips_and_rejects_bad_digits)
{
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    hm_auth_to_hex(in, 4, hex);
    cr_expect_str_eq(hex, "00ab7fff");
    cr_assert_eq(hm_auth_from_hex(hex, out, 4), HM_OK);
    cr_expect_eq(memcmp(in, out, 4), 0);
    cr_expect_eq(hm_auth_from_hex("00ab7fzz", out, 4), HM_EPROTO);
    cr_expect_eq(hm_auth_from_hex("00ab7f", out, 4), HM_EPROTO);
}
