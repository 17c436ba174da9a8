/* fuzz/fuzz_cluster_wire.c: libFuzzer target for the cluster message codec.
 *
 * Any byte string is decoded as one HP line. Whatever decodes must encode
 * again (the encoder accepts everything the decoder produces) and must
 * decode to the same line a second time (the codec is a fixed point), and
 * every path must release what it allocated (ASan's leak check). */
#include "cluster/wire.h"

#include "runtime/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_wire_msg msg, again;
    char *line = NULL, *line2 = NULL;

    if (hm_wire_decode_line((const char *)data, size, &msg) != HM_OK)
        return 0;
    if (hm_wire_encode_line(&msg, &line) != HM_OK)
        abort(); /* the decoder produced something the encoder refuses */
    if (hm_wire_decode_line(line, strlen(line), &again) != HM_OK)
        abort();
    if (hm_wire_encode_line(&again, &line2) != HM_OK ||
        strcmp(line, line2) != 0)
        abort();
    hm_free(line);
    hm_free(line2);
    hm_wire_msg_fini(&msg);
    hm_wire_msg_fini(&again);
    return 0;
}
