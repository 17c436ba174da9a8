/* fuzz/fuzz_mqtt_config.c: libFuzzer target for the configuration parser.
 *
 * The input is a configuration file's text (made NUL-terminated). Checked:
 * no sanitizer report or leak, every error message names the file, and a
 * successful parse leaves a consistent listener array. */
#include "apps/mqtt/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    mqtt_config c;
    mqtt_config_error err;

    memcpy(text, data, size);
    text[size] = '\0';
    mqtt_config_init(&c);
    if (mqtt_config_parse_string(&c, "fuzz.conf", text, &err) != HM_OK) {
        if (strncmp(err.text, "fuzz.conf:", 10) != 0)
            abort();
    } else {
        for (size_t i = 0; i < c.listener_count; i++)
            if (c.listeners[i].port == 0)
                abort();
    }
    mqtt_config_fini(&c);
    free(text);
    return 0;
}
