/* apps/mqtt/file_error.c: reading configuration-style files whole, and their
 * error messages (see file_error.h). */
#include "apps/mqtt/file_error.h"

#include "runtime/alloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mqtt_file_error_set(mqtt_file_error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
}

hm_err mqtt_file_read(const char *path, char **text_out, mqtt_file_error *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        mqtt_file_error_set(err, "%s: cannot open: %s", path,
                            strerror(errno));
        return HM_ESYS;
    }
    do {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            text = hm_realloc(text, cap + 1);
        }
        len += (n = fread(text + len, 1, cap - len, f));
    } while (n > 0);
    if (ferror(f)) {
        mqtt_file_error_set(err, "%s: read error", path);
        fclose(f);
        hm_free(text);
        return HM_ESYS;
    }
    fclose(f);
    text[len] = '\0';
    if (strlen(text) != len) {
        mqtt_file_error_set(err, "%s: contains a NUL byte", path);
        hm_free(text);
        return HM_EINVAL;
    }
    *text_out = text;
    return HM_OK;
}
