/* fuzz/fuzz_mqtt_session_state.c: libFuzzer target for the persistent
 * session record (apps/mqtt/session_state.h).
 *
 * The input is a stored record. Checked: no sanitizer report or leak, a
 * refusal always says why, and every record that decodes re-encodes to the
 * very same bytes (the format has one encoding per state), so what the
 * decoder accepts is exactly what the encoder could have written; a
 * version 1 record (no move generation, docs/adr/0290) re-encodes as
 * version 2 with generation 0, i.e. the same bytes with four zero bytes
 * after the header. */
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
    if (data[4] == 1) { /* the same bytes, as version 2, generation 0 */
        if (len != size + 4 || memcmp(again, data, 4) != 0 ||
            again[4] != MQTT_SESSION_STATE_VERSION ||
            memcmp(again + 5, "\0\0\0\0", 4) != 0 ||
            memcmp(again + 9, data + 5, size - 5) != 0)
            abort();
    } else if (len != size || memcmp(again, data, size) != 0) {
        abort();
    }
    hm_free(again);
    mqtt_session_state_fini(&st);
    return 0;
}
