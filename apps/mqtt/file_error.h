/* apps/mqtt/file_error.h: reading a configuration-style file (config.c,
 * passwd.c, acl.c, and tools/passwd.c) and the message a parser gives back
 * when it refuses one.
 *
 * One error type so that the broker reports every refused file the same way:
 * "FILE:LINE: what was wrong", ready for a log line or stderr; and one reader
 * so that every such file is read, bounded and NUL-checked the same way. */
#ifndef HM_APPS_MQTT_FILE_ERROR_H
#define HM_APPS_MQTT_FILE_ERROR_H

#include "runtime/err.h"

typedef struct mqtt_file_error {
    char text[512];
} mqtt_file_error;

/* Formats the message into `err` (borrowed). */
void mqtt_file_error_set(mqtt_file_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reads the whole file at `path` (borrowed) into a NUL-terminated string,
 * returned owned in `*text_out` (free with hm_free) on HM_OK.
 * Errors: HM_ESYS (cannot open or read), HM_EINVAL (contains a NUL byte);
 * `err` says which, naming the file. */
hm_err mqtt_file_read(const char *path, char **text_out, mqtt_file_error *err);

#endif
