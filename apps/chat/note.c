/* apps/chat/note.c: the chat message types and their one codec.
 *
 * The codec writes each present field of a note as a JSON member and reads
 * them back, checking types and lengths: a note that crossed a link is
 * network input like any other, so a string that is not a string, or a
 * name longer than a chat name can be, refuses the message (HM_EPROTO) and
 * the cluster layer answers "delivery_failed". */
#include "apps/chat/note.h"

#include "apps/chat/proto.h"
#include "runtime/alloc.h"

#include <jansson.h>
#include <string.h>

static json_t *note_to_json(const void *payload);
static hm_err note_from_json(const json_t *json, void **payload_out);

#define CHAT_TYPE(var, wire)                                                  \
    const hm_type var = {.name = wire,                                        \
                         .free = chat_note_free,                              \
                         .to_json = note_to_json,                             \
                         .from_json = note_from_json}

CHAT_TYPE(chat_dm_type, "chat.dm");
CHAT_TYPE(chat_event_type, "chat.event");
CHAT_TYPE(chat_rejoin_type, "chat.rejoin");
CHAT_TYPE(chat_join_type, "chat.join");
CHAT_TYPE(chat_leave_type, "chat.leave");
CHAT_TYPE(chat_say_type, "chat.say");
CHAT_TYPE(chat_who_type, "chat.who");
CHAT_TYPE(chat_online_type, "chat.online");
CHAT_TYPE(chat_offline_type, "chat.offline");
CHAT_TYPE(chat_rooms_type, "chat.rooms");
CHAT_TYPE(chat_room_open_type, "chat.room_open");
CHAT_TYPE(chat_room_close_type, "chat.room_close");
CHAT_TYPE(chat_node_gone_type, "chat.node_gone");
CHAT_TYPE(chat_node_up_type, "chat.node_up");
CHAT_TYPE(chat_nudge_type, "chat.nudge");
CHAT_TYPE(chat_result_type, "chat.result");

static const hm_type *const ALL_TYPES[] = {
    &chat_dm_type,        &chat_event_type,      &chat_rejoin_type,
    &chat_join_type,      &chat_leave_type,      &chat_say_type,
    &chat_who_type,       &chat_online_type,
    &chat_offline_type,   &chat_rooms_type,      &chat_room_open_type,
    &chat_room_close_type, &chat_node_gone_type, &chat_node_up_type,
    &chat_nudge_type,
    &chat_result_type,
};

/* The fields of a note, by name, for the codec's two loops. */
#define NOTE_FIELDS(X)                                                        \
    X(user, CHAT_MAX_NAME)                                                    \
    X(room, CHAT_MAX_NAME)                                                    \
    X(node, 64)                                                               \
    X(text, CHAT_MAX_TEXT)                                                    \
    X(event, 16)                                                              \
    X(code, 32)

chat_note *chat_note_create(const char *user, const char *room,
                            const char *text)
{
    chat_note *n = hm_calloc(1, sizeof *n);

    chat_note_set(&n->user, user);
    chat_note_set(&n->room, room);
    chat_note_set(&n->text, text);
    return n;
}

void chat_note_free(void *p)
{
    chat_note *n = p;

    if (!n)
        return;
#define FREE_FIELD(f, max) hm_free(n->f);
    NOTE_FIELDS(FREE_FIELD)
#undef FREE_FIELD
    json_decref(n->list);
    hm_free(n);
}

void chat_note_set(char **field, const char *value)
{
    hm_free(*field);
    *field = value ? hm_strdup(value) : NULL;
}

hm_msg *chat_note_msg(const hm_type *type, const char *user, const char *room,
                      const char *text)
{
    return hm_msg_create(type, chat_note_create(user, room, text), 0);
}

const chat_note *chat_msg_note(const hm_msg *m)
{
    static const chat_note empty; /* read-only: never written */
    const chat_note *n = hm_msg_payload(m);

    return n ? n : &empty;
}

static json_t *note_to_json(const void *payload)
{
    const chat_note *n = payload;
    json_t *j = json_object();

    if (!n)
        return j;
#define PUT_FIELD(f, max)                                                     \
    if (n->f)                                                                 \
        json_object_set_new(j, #f, json_string(n->f));
    NOTE_FIELDS(PUT_FIELD)
#undef PUT_FIELD
    if (n->list)
        json_object_set(j, "list", n->list);
    return j;
}

/* Reads the optional string `key` of at most `max` bytes into `*dst`. */
static hm_err get_field(const json_t *j, const char *key, size_t max,
                        char **dst)
{
    const json_t *v = json_object_get(j, key);

    if (!v)
        return HM_OK;
    if (!json_is_string(v) || json_string_length(v) > max)
        return HM_EPROTO;
    *dst = hm_strdup(json_string_value(v));
    return HM_OK;
}

static hm_err note_from_json(const json_t *j, void **payload_out)
{
    chat_note *n;
    const json_t *list;

    if (j && json_is_null(j)) {
        *payload_out = NULL;
        return HM_OK;
    }
    if (!json_is_object(j))
        return HM_EPROTO;
    n = hm_calloc(1, sizeof *n);
#define GET_FIELD(f, max)                                                     \
    if (get_field(j, #f, (max), &n->f) != HM_OK)                              \
        goto fail;
    NOTE_FIELDS(GET_FIELD)
#undef GET_FIELD
    if ((list = json_object_get(j, "list")) != NULL) {
        size_t i;
        const json_t *v;

        if (!json_is_array(list))
            goto fail;
        /* Strings only (note.h): the list goes on to clients as the
         * users or rooms of a chat.ok (found by fuzz/fuzz_chat_note.c). */
        json_array_foreach(list, i, v)
        {
            if (!json_is_string(v))
                goto fail;
        }
        n->list = json_deep_copy(list);
    }
    *payload_out = n;
    return HM_OK;

fail:
    chat_note_free(n);
    return HM_EPROTO;
}

hm_err chat_note_register_types(hm_runtime *rt)
{
    hm_err err;

    for (size_t i = 0; i < sizeof ALL_TYPES / sizeof ALL_TYPES[0]; i++)
        if ((err = hm_runtime_register_type(rt, ALL_TYPES[i])) != HM_OK)
            return err;
    return HM_OK;
}
