/* fuzz/fuzz_hp.c: libFuzzer target for the HP v1 decoder.
 *
 * Decodes the input as one line. On success the message is re-encoded and
 * decoded again, which must succeed with the same kind and id (the encoder
 * and decoder agree); on failure the code must be a known one and its error
 * line must encode. */
#include "net/hp.h"

#include "runtime/alloc.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void round_trip(const hm_hp_msg *m)
{
    hm_hp_envelope env = {.type = hm_hp_kind_name(m->kind),
                          .id = m->id,
                          .from = m->from,
                          .to = m->to,
                          .body = m->body};
    hm_hp_msg again;
    hm_hp_fail fail;
    char *line;
    size_t len;

    if (m->kind == HM_HP_HELLO && m->version != 1)
        return; /* re-encoding stamps v1; the version is the point here */
    if (hm_hp_encode(&env, 4u << 20, &line, &len) != HM_OK)
        return; /* e.g. a body larger than the limit */
    check(hm_hp_decode((const uint8_t *)line, len - 1, &again, &fail) == HM_OK);
    check(again.kind == m->kind && again.id == m->id);
    hm_hp_msg_fini(&again);
    hm_free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_hp_msg m;
    hm_hp_fail fail;
    char *line;
    size_t len;

    if (hm_hp_decode(data, size, &m, &fail) == HM_OK) {
        round_trip(&m);
        hm_hp_msg_fini(&m);
        return 0;
    }
    check((unsigned)fail.code < HM_HP_CODE_COUNT);
    check(hm_hp_encode_error(fail.code, fail.reason, fail.id, &line, &len) ==
          HM_OK);
    hm_free(line);
    return 0;
}
