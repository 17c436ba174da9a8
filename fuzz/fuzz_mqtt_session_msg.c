/* fuzz/fuzz_mqtt_session_msg.c: libFuzzer target for the decoders of the
 * connection <-> session messages that cross cluster links
 * (apps/mqtt/session_msg.h).
 *
 * The first input byte picks a decoder, the rest is the JSON text another
 * node sent, or (one value of the byte more) a handoff's `owed` string.
 * Checked: no sanitizer report or leak, every payload that decodes
 * encodes again and decodes to the same JSON (the codecs lose nothing
 * they accept), and every owed entry that reads writes back to an entry
 * that reads the same. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/session_msg.h"
#include "runtime/alloc.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct codec {
    json_t *(*to)(const void *);
    hm_err (*from)(const json_t *, void **);
    void (*free)(void *);
} codec;

static void attach_destroy(void *p)
{
    mqtt_attach_type.free(p);
}

static const codec CODECS[] = {
    {mqtt_attach_to_json, mqtt_attach_from_json, attach_destroy},
    {mqtt_blob_to_json, mqtt_blob_from_json, mqtt_blob_destroy},
    {mqtt_ctl_to_json, mqtt_ctl_from_json, mqtt_ctl_destroy},
    {mqtt_pub_to_json, mqtt_pub_from_json, mqtt_pub_release},
    {mqtt_handoff_to_json, mqtt_handoff_from_json, mqtt_handoff_destroy},
    {mqtt_restore_to_json, mqtt_restore_from_json, mqtt_restore_destroy},
};

/* The owed entries of NUL-terminated `s`: each one read is written again
 * and must read back the same. */
static void owed_roundtrip(const char *s)
{
    mqtt_owed_entry e, back;
    hm_err err;

    while ((err = mqtt_owed_next(&s, &e)) != HM_ENOTFOUND) {
        char *acc = NULL;
        const char *cur;
        size_t len = 0;

        if (err != HM_OK)
            continue;
        mqtt_owed_append(&acc, &len, &e);
        cur = acc;
        if (mqtt_owed_next(&cur, &back) != HM_OK || back.kind != e.kind ||
            back.present != e.present || back.len != e.len ||
            (e.len && memcmp(back.packet, e.packet, e.len) != 0) || *cur)
            abort();
        hm_free(back.packet);
        hm_free(e.packet);
        hm_free(acc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const codec *c;
    json_t *j, *again, *again2;
    void *p = NULL, *q = NULL;

    if (size < 1)
        return 0;
    if (data[0] % (sizeof CODECS / sizeof CODECS[0] + 1) ==
        sizeof CODECS / sizeof CODECS[0]) {
        char *s = hm_strndup((const char *)data + 1, size - 1);

        owed_roundtrip(s);
        hm_free(s);
        return 0;
    }
    c = &CODECS[data[0] % (sizeof CODECS / sizeof CODECS[0])];
    j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    if (c->from(j, &p) == HM_OK) {
        if (!(again = c->to(p)))
            abort();
        if (c->from(again, &q) != HM_OK)
            abort();
        if (!(again2 = c->to(q)) || !json_equal(again, again2))
            abort();
        json_decref(again);
        json_decref(again2);
        c->free(p);
        c->free(q);
    }
    json_decref(j);
    return 0;
}
