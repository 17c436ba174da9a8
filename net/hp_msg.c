/* net/hp_msg.c: the bridge between HP's "msg" envelope and runtime messages.
 *
 * Kept apart from the codec so that the pure codec (and its fuzz target)
 * links without the runtime. The payload crosses through the message type's
 * own codec (hm_msg_to_json / hm_msg_from_json): net never knows what a
 * payload looks like. */
#include "net/hp.h"

#include "runtime/alloc.h"

#include <jansson.h>

hm_err hm_hp_msg_body(const hm_msg *m, bool reply, json_t **body_out)
{
    json_t *data = NULL;
    json_t *body;
    hm_err err;

    if (hm_msg_arg(m) > (uint64_t)INT64_MAX)
        return HM_ECODEC;
    if ((err = hm_msg_to_json(m, &data)) != HM_OK)
        return err;
    body = json_object();
    json_object_set_new(body, "type", json_string(hm_msg_type(m)->name));
    if (hm_msg_arg(m))
        json_object_set_new(body, "arg",
                            json_integer((json_int_t)hm_msg_arg(m)));
    json_object_set_new(body, "data", data);
    if (reply)
        json_object_set_new(body, "reply", json_true());
    *body_out = body;
    return HM_OK;
}

hm_err hm_hp_encode_msg(const hm_msg *m, const hm_hp_envelope *env,
                        size_t max_len, char **line_out, size_t *len_out)
{
    hm_hp_envelope e = *env;
    json_t *body;
    hm_err err;

    if ((err = hm_hp_msg_body(m, hm_msg_is_reply(m), &body)) != HM_OK)
        return err;
    e.type = "msg";
    e.body = body;
    err = hm_hp_encode(&e, max_len, line_out, len_out);
    json_decref(body);
    return err;
}

hm_err hm_hp_decode_msg(hm_runtime *rt, const hm_hp_msg *in, hm_msg **out)
{
    const json_t *data = in->u.msg.data;
    json_t *null_data = NULL;
    hm_err err;

    if (in->kind != HM_HP_MSG)
        return HM_EINVAL;
    if (!data)
        data = null_data = json_null();
    err = hm_msg_from_json(rt, in->u.msg.type, data, in->u.msg.arg, out);
    json_decref(null_data);
    return err;
}
