/* runtime/msg.c: messages, the built-in message types and the JSON codec
 * entry points.
 *
 * A message owns its payload (freed through its type's `free` hook) and a
 * reference to its sender's address. Messages are never copied locally: a
 * send moves the pointer, and forwarding moves the payload into a new
 * message (hm_msg_move), so at every moment exactly one party owns it. */
#include "runtime/rt_impl.h"

#include "runtime/alloc.h"
#include "runtime/pool.h"

#include <jansson.h>
#include <string.h>

static json_t *null_to_json(const void *payload)
{
    (void)payload;
    return json_null();
}

static hm_err null_from_json(const json_t *json, void **payload_out)
{
    (void)json;
    *payload_out = NULL;
    return HM_OK;
}

static void json_free(void *payload)
{
    json_decref(payload);
}

static json_t *json_to_json(const void *payload)
{
    return json_incref((json_t *)payload);
}

static hm_err json_from_json(const json_t *json, void **payload_out)
{
    *payload_out = json_incref((json_t *)json);
    return HM_OK;
}

const hm_type hm_type_error = {.name = "hm.error", .to_json = null_to_json,
                               .from_json = null_from_json};
const hm_type hm_type_timeout = {.name = "hm.timeout",
                                 .to_json = null_to_json,
                                 .from_json = null_from_json};
const hm_type hm_type_tick = {.name = "hm.tick", .to_json = null_to_json,
                              .from_json = null_from_json};
const hm_type hm_type_json = {.name = "hm.json", .free = json_free,
                              .to_json = json_to_json,
                              .from_json = json_from_json};

_Static_assert(sizeof(hm_msg) <= HM_POOL_OBJ_LEN, "messages fit the pool");

hm_msg *hm_msg_alloc(void)
{
    hm_msg *m = hm_pool_alloc();
    memset(m, 0, sizeof *m);
    return m;
}

hm_msg *hm_msg_create(const hm_type *type, void *payload, uint64_t arg)
{
    hm_msg *m = hm_msg_alloc();

    HM_ASSERT(type != NULL);
    m->type = type;
    m->payload = payload;
    m->arg = arg;
    return m;
}

void hm_msg_destroy(hm_msg *m)
{
    if (!m)
        return;
    if (m->payload && m->type->free)
        m->type->free(m->payload);
    if (m->from)
        hm_addr_release(m->from);
    hm_pool_free(m);
}

void hm_msg_set_from(hm_msg *m, hm_addr *from)
{
    hm_addr *old = m->from;
    m->from = from ? hm_addr_ref(from) : NULL;
    hm_addr_release(old);
}

const hm_type *hm_msg_type(const hm_msg *m)
{
    return m->type;
}

void *hm_msg_payload(const hm_msg *m)
{
    return m->payload;
}

uint64_t hm_msg_arg(const hm_msg *m)
{
    return m->arg;
}

hm_addr *hm_msg_from(const hm_msg *m)
{
    return m->from;
}

uint64_t hm_msg_req_id(const hm_msg *m)
{
    return m->req_id;
}

bool hm_msg_is_reply(const hm_msg *m)
{
    return (m->flags & MSG_REPLY) != 0;
}

void *hm_msg_take_payload(hm_msg *m)
{
    void *p = m->payload;
    m->payload = NULL;
    return p;
}

hm_msg *hm_msg_move(hm_msg *m)
{
    hm_msg *n = hm_msg_create(m->type, m->payload, m->arg);

    n->from = m->from;
    n->req_id = m->req_id;
    n->flags = m->flags & (MSG_REQUEST | MSG_REPLY | MSG_REPLIED);
    m->payload = NULL;
    m->from = NULL;
    /* The original no longer stands for the request: the runtime will not
     * answer it with an error if the handler fails. */
    m->flags &= ~(uint32_t)MSG_REQUEST;
    return n;
}

hm_err hm_msg_to_json(const hm_msg *m, json_t **out)
{
    json_t *j;

    if (!m->type->to_json)
        return HM_ECODEC;
    j = m->type->to_json(m->payload);
    if (!j)
        return HM_ECODEC;
    *out = j;
    return HM_OK;
}

hm_err hm_msg_from_json(hm_runtime *rt, const char *type_name,
                        const json_t *json, uint64_t arg, hm_msg **out)
{
    const hm_type *type = hm_runtime_find_type(rt, type_name);
    void *payload = NULL;
    hm_err err;

    if (!type)
        return HM_ENOTFOUND;
    if (!type->from_json)
        return HM_ECODEC;
    if ((err = type->from_json(json, &payload)) != HM_OK)
        return err;
    *out = hm_msg_create(type, payload, arg);
    return HM_OK;
}

static bool type_registered_locked(hm_runtime *rt, const char *name,
                                   const hm_type **found)
{
    for (size_t i = 0; i < rt->ntypes; i++) {
        if (strcmp(rt->types[i]->name, name) == 0) {
            *found = rt->types[i];
            return true;
        }
    }
    return false;
}

hm_err hm_runtime_register_type(hm_runtime *rt, const hm_type *type)
{
    const hm_type *found;
    hm_err err = HM_OK;

    if (!type || !type->name || !type->name[0])
        return HM_EINVAL;
    pthread_mutex_lock(&rt->types_lock);
    if (type_registered_locked(rt, type->name, &found)) {
        err = found == type ? HM_OK : HM_EEXIST;
    } else {
        if (rt->ntypes == rt->types_cap) {
            rt->types_cap = rt->types_cap ? 2 * rt->types_cap : 16;
            rt->types =
                hm_realloc(rt->types, rt->types_cap * sizeof *rt->types);
        }
        rt->types[rt->ntypes++] = type;
    }
    pthread_mutex_unlock(&rt->types_lock);
    return err;
}

const hm_type *hm_runtime_find_type(hm_runtime *rt, const char *name)
{
    const hm_type *found = NULL;

    pthread_mutex_lock(&rt->types_lock);
    if (!type_registered_locked(rt, name, &found))
        found = NULL;
    pthread_mutex_unlock(&rt->types_lock);
    return found;
}
