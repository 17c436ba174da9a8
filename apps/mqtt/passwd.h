/* apps/mqtt/passwd.h: mosquitto's password file, for CONNECT's user name
 * and password.
 *
 * One user per line, `username:HASH`, as mosquitto_passwd writes it:
 *   $7$ITERATIONS$SALT$HASH  PBKDF2-HMAC-SHA512, 64-byte hash (mosquitto 2)
 *   $6$SALT$HASH             SHA-512 of password then salt (mosquitto 1.x)
 * with SALT and HASH in base64. Blank lines and lines starting with '#'
 * are skipped; anything else that does not parse (a plaintext password, a
 * broken hash) refuses the whole file with its line number, so a typo
 * cannot silently lock a user out or let one in. The key decision is that
 * a check costs the same whether the user exists or not (an unknown user
 * is hashed against a dummy entry, and hashes compare in constant time),
 * so the broker's answer time does not reveal which user names exist.
 * Hashing uses libcrypto (docs/adr/0004). */
#ifndef HM_APPS_MQTT_PASSWD_H
#define HM_APPS_MQTT_PASSWD_H

#include "apps/mqtt/file_error.h"
#include "runtime/err.h"

#include <stddef.h>
#include <stdint.h>

/* mosquitto_passwd's defaults for new hashes. */
#define MQTT_PASSWD_ITERATIONS 101
#define MQTT_PASSWD_SALT_LEN 12

typedef struct mqtt_passwd mqtt_passwd;

/* Parse `text` (borrowed, NUL-terminated) as a password file called
 * `name` (borrowed; for messages). On HM_OK writes a new table to `*out`
 * (returns owned). Errors: HM_EINVAL with "NAME:LINE: ..." in `err`. */
hm_err mqtt_passwd_parse_string(const char *name, const char *text,
                                mqtt_passwd **out, mqtt_file_error *err);

/* Read and parse the file at `path` (borrowed). Errors: HM_ESYS if it
 * cannot be read, HM_EINVAL as above; `err` says which. */
hm_err mqtt_passwd_load(const char *path, mqtt_passwd **out,
                        mqtt_file_error *err);

/* Accepts NULL. */
void mqtt_passwd_destroy(mqtt_passwd *p);

/* The number of users. */
size_t mqtt_passwd_count(const mqtt_passwd *p);

/* Whether `user` (borrowed, `user_len` bytes) exists and `password`
 * (borrowed binary, as CONNECT carries it) is theirs. Returns HM_OK, or
 * HM_EDENIED for an unknown user or a wrong password alike. Thread-safe
 * for concurrent checks (the table is read-only once loaded). */
hm_err mqtt_passwd_check(const mqtt_passwd *p, const char *user,
                         size_t user_len, const uint8_t *password,
                         size_t password_len);

/* Hash `password` (borrowed) the way mosquitto_passwd 2 does, with a
 * fresh random salt and `iterations` rounds of PBKDF2-SHA512. On HM_OK
 * writes "$7$..." to `*out` (returns owned; hm_free it). Errors: HM_ESYS
 * if no random bytes could be had; HM_EINVAL if iterations < 1. */
hm_err mqtt_passwd_hash(const uint8_t *password, size_t len, int iterations,
                        char **out);

/* Edit password-file text for a tool: return a copy of `text` (borrowed,
 * NUL-terminated; may be empty) in which `user`'s line is replaced by
 * "user:hash", or appended if there is none; with `hash` NULL the line is
 * removed instead. Every other line, comments included, is kept as is.
 * On HM_OK writes the new text to `*out` (returns owned; hm_free it).
 * Errors: HM_EINVAL if `user` is empty or holds ':' or a newline;
 * HM_ENOTFOUND when removing a user who is not there. */
hm_err mqtt_passwd_edit(const char *text, const char *user, const char *hash,
                        char **out);

#endif
