/* apps/mqtt/tools/passwd.c: hermes-mqtt-passwd, which manages a password
 * file the way mosquitto_passwd does, for the broker's password_file.
 *
 *   hermes-mqtt-passwd [-c | -D] passwordfile username
 *   hermes-mqtt-passwd -b [-c] passwordfile username password
 *
 * -c creates (or empties) the file first, -D deletes the user, -b takes
 * the password from the command line instead of asking twice on the
 * terminal. Hashes are written as mosquitto 2 writes them ($7$, PBKDF2-
 * SHA512, 101 iterations, 12-byte salt), so mosquitto can read the file
 * too. The file is replaced atomically (a temporary file in the same
 * folder, mode 0600, then rename), so a crash never leaves half a file.
 *
 * This is a program, not library code: it lives below apps/mqtt/, not in
 * it, so that the layer's static library never gets a second main(). The
 * Makefile needs a rule to build it (see the report of the mqtt branch). */
#include "apps/mqtt/file_error.h"
#include "apps/mqtt/passwd.h"
#include "runtime/alloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define MAX_PASSWORD 1024

static int usage(void)
{
    fprintf(stderr,
            "usage: hermes-mqtt-passwd [-c | -D] passwordfile username\n"
            "       hermes-mqtt-passwd -b [-c] passwordfile username "
            "password\n"
            " -c : create a new password file (overwrites an existing one)\n"
            " -D : delete the user from the file\n"
            " -b : take the password from the command line\n");
    return 2;
}

/* Read one line from the terminal with echo off; false on EOF. */
static bool read_secret(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    bool ok;

    fputs(prompt, stderr);
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    ok = fgets(buf, (int)cap, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (ok)
        buf[strcspn(buf, "\r\n")] = '\0';
    return ok;
}

/* The whole file (mqtt_file_read: bounded, NUL-checked, as the broker
 * reads it), owned; or NULL with the reason on stderr. */
static char *read_file(const char *path)
{
    mqtt_file_error err;
    char *text;

    if (mqtt_file_read(path, &text, &err) != HM_OK) {
        fprintf(stderr, "hermes-mqtt-passwd: %s\n", err.text);
        return NULL;
    }
    return text;
}

/* Write `text` to `path` through a temporary file and rename(2). */
static bool write_file(const char *path, const char *text)
{
    size_t len = strlen(path);
    char *tmp = hm_alloc(len + 16);
    int fd;
    bool ok;

    snprintf(tmp, len + 16, "%s.tmp-XXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0) {
        fprintf(stderr, "hermes-mqtt-passwd: %s: %s\n", tmp, strerror(errno));
        hm_free(tmp);
        return false;
    }
    ok = fchmod(fd, 0600) == 0 &&
         write(fd, text, strlen(text)) == (ssize_t)strlen(text) &&
         fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        fprintf(stderr, "hermes-mqtt-passwd: writing %s: %s\n", path,
                strerror(errno));
        unlink(tmp);
    }
    hm_free(tmp);
    return ok;
}

/* The new hash for `user`, from argv or the terminal; NULL on failure. */
static char *new_hash(const char *given)
{
    char pw[MAX_PASSWORD], again[MAX_PASSWORD], *hash = NULL;
    if (given) {
        snprintf(pw, sizeof pw, "%s", given);
    } else if (!read_secret("Password: ", pw, sizeof pw) ||
               !read_secret("Reenter password: ", again, sizeof again) ||
               strcmp(pw, again) != 0) {
        fprintf(stderr, "hermes-mqtt-passwd: passwords do not match\n");
        return NULL;
    }
    if (mqtt_passwd_hash((const uint8_t *)pw, strlen(pw),
                         MQTT_PASSWD_ITERATIONS, &hash) != HM_OK)
        fprintf(stderr, "hermes-mqtt-passwd: could not hash the password\n");
    memset(pw, 0, sizeof pw);
    memset(again, 0, sizeof again);
    return hash;
}

int main(int argc, char **argv)
{
    bool create = false, delete = false, batch = false;
    char *text, *hash = NULL, *edited;
    const char *file, *user;
    int opt, status = 1;
    hm_err err;

    while ((opt = getopt(argc, argv, "cDbh")) != -1) {
        if (opt == 'c')
            create = true;
        else if (opt == 'D')
            delete = true;
        else if (opt == 'b')
            batch = true;
        else
            return usage();
    }
    if ((create && delete) || argc - optind != (batch && !delete ? 3 : 2))
        return usage();
    file = argv[optind];
    user = argv[optind + 1];
    if (!(text = create ? hm_strdup("") : read_file(file)))
        return 1;
    if (!delete &&!(hash = new_hash(batch ? argv[optind + 2] : NULL)))
        goto out;
    err = mqtt_passwd_edit(text, user, hash, &edited);
    if (err != HM_OK) {
        fprintf(stderr, "hermes-mqtt-passwd: %s: %s\n", user,
                err == HM_ENOTFOUND ? "no such user" : "invalid user name");
        goto out;
    }
    status = write_file(file, edited) ? 0 : 1;
    hm_free(edited);
out:
    hm_free(hash);
    hm_free(text);
    return status;
}
