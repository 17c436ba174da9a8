/* fuzz/fuzz_mqtt_session_state.c: libFuzzer target for the persistent
 * session record (apps/mqtt/session_state.h).
 *
 * The input is a stored record. Checked: no sanitizer report or leak, a
 * refusal always says why, and every record that decodes re-encodes to the
 * very same bytes (the format has one encoding per state), so what the
 * decoder accepts is exactly what the encoder could have written. */
#include "apps/mqtt/session_state.h"

#include "runtime/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mqtt_session_state st;
    const char *why = NULL;
    uint8_t *again;
    size_t len;

    if (mqtt_session_state_decode(data, size, &st, &why) != HM_OK) {
        if (!why)
            abort();
        return 0;
    }
    if (mqtt_session_state_encode(&st, &again, &len) != HM_OK)
        abort();
    if (len != size || memcmp(again, data, size) != 0)
        abort();
    hm_free(again);
    mqtt_session_state_fini(&st);
    return 0;
}
