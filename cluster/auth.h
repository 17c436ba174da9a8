/* cluster/auth.h: the cryptography of the cluster link handshake.
 *
 * Two nodes prove to each other that they hold the cluster's shared secret
 * without the secret ever crossing the wire. The dialler sends `hello` with a
 * fresh random nonce; the acceptor answers `challenge` with its own nonce and
 * its proof; the dialler checks that proof and answers `proof`. Each proof is
 * HMAC-SHA256 under the secret over a transcript that binds both nonces, both
 * node names, both incarnations, the cluster name and the prover's role, so a
 * proof can be replayed neither on another link nor in the other direction
 * (the acceptor cannot be used as an oracle to forge a dialler's proof).
 *
 * Key decision: the transcript is encoded with length prefixes, never by
 * joining strings with a separator, so no two different transcripts share an
 * encoding ("ab"+"c" vs "a"+"bc"). Proofs are compared in constant time. */
#ifndef HM_CLUSTER_AUTH_H
#define HM_CLUSTER_AUTH_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_AUTH_NONCE_LEN 32        /* bytes of randomness per nonce */
#define HM_AUTH_PROOF_LEN 32        /* HMAC-SHA256 output */
#define HM_AUTH_SECRET_MIN_LEN 16   /* shorter secrets are refused */
#define HM_AUTH_SECRET_MAX_LEN 4096 /* a longer secret file is refused */
/* The hex forms put on the wire, without the terminating NUL. */
#define HM_AUTH_NONCE_HEX_LEN (2 * HM_AUTH_NONCE_LEN)
#define HM_AUTH_PROOF_HEX_LEN (2 * HM_AUTH_PROOF_LEN)

typedef struct hm_auth_secret hm_auth_secret;

/* Which side of the handshake a proof speaks for. */
typedef enum {
    HM_AUTH_DIALLER = 1,  /* the node that opened the TCP connection */
    HM_AUTH_ACCEPTOR = 2, /* the node that accepted it */
} hm_auth_role;

/* Everything a proof binds. All strings are borrowed for the call. */
typedef struct hm_auth_transcript {
    const char *cluster;
    const char *dialler;
    uint64_t dialler_inc;
    const uint8_t *dialler_nonce; /* HM_AUTH_NONCE_LEN bytes */
    const char *acceptor;
    uint64_t acceptor_inc;
    const uint8_t *acceptor_nonce; /* HM_AUTH_NONCE_LEN bytes */
} hm_auth_transcript;

/* Read the secret from the file at `path`, borrowed. The file must be a
 * regular file readable by its owner only (no group or other permission
 * bits), so a leaked secret shows up as a configuration error rather than
 * silently. Trailing "\n" or "\r\n" is trimmed; what remains must be
 * HM_AUTH_SECRET_MIN_LEN..HM_AUTH_SECRET_MAX_LEN bytes. Each refusal is
 * logged with the reason (never with the secret).
 * Returns owned in `*out` on HM_OK (destroy with hm_auth_secret_destroy).
 * Errors: HM_ESYS (cannot open or read), HM_EDENIED (permissions too open),
 * HM_EINVAL (not a regular file, too short or too long). */
hm_err hm_auth_secret_load(const char *path, hm_auth_secret **out);

/* A secret from bytes in memory, for tests and embedders; `bytes` is
 * borrowed and copied. Errors: HM_EINVAL if `len` is out of bounds. */
hm_err hm_auth_secret_from_bytes(const void *bytes, size_t len,
                                 hm_auth_secret **out);

/* Wipe and free. Accepts NULL. */
void hm_auth_secret_destroy(hm_auth_secret *s);

/* Fill `nonce` (HM_AUTH_NONCE_LEN bytes, borrowed) from the OS's CSPRNG.
 * Errors: HM_ESYS if the generator fails (logged). */
hm_err hm_auth_nonce(uint8_t *nonce);

/* Compute the proof of `role` over `t` (borrowed) into `proof`
 * (HM_AUTH_PROOF_LEN bytes, borrowed). Errors: HM_EINVAL if a string of `t`
 * is NULL; HM_ESYS if libcrypto fails. */
hm_err hm_auth_prove(const hm_auth_secret *s, hm_auth_role role,
                     const hm_auth_transcript *t, uint8_t *proof);

/* Whether `proof` (HM_AUTH_PROOF_LEN bytes, borrowed) is the proof of `role`
 * over `t`. The comparison takes the same time whatever the bytes. */
bool hm_auth_verify(const hm_auth_secret *s, hm_auth_role role,
                    const hm_auth_transcript *t, const uint8_t *proof);

/* Lower-case hex of `len` bytes into `hex` (2*len+1 bytes, NUL-terminated).
 * Both borrowed. */
void hm_auth_to_hex(const uint8_t *bytes, size_t len, char *hex);

/* Parse exactly 2*len hex digits from `hex` (NUL-terminated) into `bytes`.
 * Both borrowed; `bytes` is written only on HM_OK.
 * Errors: HM_EPROTO if the length or a digit is wrong. */
hm_err hm_auth_from_hex(const char *hex, uint8_t *bytes, size_t len);

#endif
