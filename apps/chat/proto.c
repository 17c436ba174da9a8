/* apps/chat/proto.c: the chat protocol's codec (see proto.h).
 *
 * Parsing checks in a fixed order, so the same bad command always gets the
 * same code: the body type names a command (unknown_command), the data is
 * an object (bad_request), each required field is a string (bad_request),
 * names are valid (bad_name), text fits (text_too_long). Text must be
 * non-empty after the checks because an empty message is almost always a
 * client bug, and refusing it costs the user nothing. */
#include "apps/chat/proto.h"

#include "net/hp.h"
#include "runtime/alloc.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *const ERR_NAMES[] = {
#define CHAT_ERR_NAME(code, name) name,
    CHAT_ERR_LIST(CHAT_ERR_NAME)
#undef CHAT_ERR_NAME
};

static const char *const CMD_NAMES[CHAT_CMD_COUNT] = {
    [CHAT_CMD_LOGIN] = "chat.login", [CHAT_CMD_LOGOUT] = "chat.logout",
    [CHAT_CMD_MSG] = "chat.msg",     [CHAT_CMD_JOIN] = "chat.join",
    [CHAT_CMD_LEAVE] = "chat.leave", [CHAT_CMD_SAY] = "chat.say",
    [CHAT_CMD_WHO] = "chat.who",     [CHAT_CMD_ROOMS] = "chat.rooms",
};

const char *chat_err_name(chat_err code)
{
    return (unsigned)code < CHAT_ERR_COUNT ? ERR_NAMES[code] : "internal";
}

chat_err chat_err_parse(const char *name)
{
    for (int c = 0; c < CHAT_ERR_COUNT; c++)
        if (strcmp(name, ERR_NAMES[c]) == 0)
            return (chat_err)c;
    return CHAT_ERR_INTERNAL;
}

const char *chat_cmd_name(chat_cmd_kind kind)
{
    return (unsigned)kind < CHAT_CMD_COUNT ? CMD_NAMES[kind] : "chat.?";
}

bool chat_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > CHAT_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static hm_err refuse(chat_fail *fail, chat_err code, const char *fmt,
                     const char *what)
{
    fail->code = code;
    snprintf(fail->reason, sizeof fail->reason, fmt, what);
    return HM_EPROTO;
}

/* Copies the string field `key` of `data` into `dst` (a name buffer of
 * CHAT_MAX_NAME + 1 bytes) after checking it is a valid name. */
static hm_err get_name(const json_t *data, const char *key, bool required,
                       char *dst, chat_fail *fail)
{
    const json_t *v = json_object_get(data, key);

    dst[0] = '\0';
    if (!v && !required)
        return HM_OK;
    if (!json_is_string(v))
        return refuse(fail, CHAT_ERR_BAD_REQUEST,
                      "field \"%s\" must be a string", key);
    if (!chat_name_valid(json_string_value(v)))
        return refuse(fail, CHAT_ERR_BAD_NAME,
                      "\"%s\" must be 1-32 of A-Z a-z 0-9 . _ -", key);
    strcpy(dst, json_string_value(v));
    return HM_OK;
}

static hm_err get_text(const json_t *data, char *dst, chat_fail *fail)
{
    const json_t *v = json_object_get(data, "text");
    size_t len;

    if (!json_is_string(v))
        return refuse(fail, CHAT_ERR_BAD_REQUEST,
                      "field \"%s\" must be a string", "text");
    len = json_string_length(v);
    if (len == 0)
        return refuse(fail, CHAT_ERR_BAD_REQUEST, "%s is empty", "text");
    if (len > CHAT_MAX_TEXT)
        return refuse(fail, CHAT_ERR_TEXT_TOO_LONG,
                      "text is longer than %s bytes", "1000");
    /* jansson forbids \u0000 by default, so the text has no inner NUL. */
    memcpy(dst, json_string_value(v), len + 1);
    return HM_OK;
}

static int find_kind(const char *type)
{
    for (int k = 0; k < CHAT_CMD_COUNT; k++)
        if (strcmp(type, CMD_NAMES[k]) == 0)
            return k;
    return -1;
}

hm_err chat_cmd_parse(const char *type, const json_t *data, uint64_t id,
                      chat_cmd *out, chat_fail *fail)
{
    int kind = find_kind(type);
    json_t *empty = NULL; /* stands for absent data; freed at the end */
    hm_err err = HM_OK;

    if (kind < 0)
        return refuse(fail, CHAT_ERR_UNKNOWN_COMMAND,
                      "no chat command \"%.80s\"", type);
    if (data && !json_is_object(data))
        return refuse(fail, CHAT_ERR_BAD_REQUEST, "%s: data must be an object",
                      type);
    if (!data)
        data = empty = json_object();
    memset(out, 0, sizeof *out);
    out->kind = (chat_cmd_kind)kind;
    out->id = id;
    switch (out->kind) {
    case CHAT_CMD_LOGIN:
        err = get_name(data, "user", true, out->name, fail);
        break;
    case CHAT_CMD_MSG:
        if ((err = get_name(data, "to", true, out->name, fail)) == HM_OK)
            err = get_text(data, out->text, fail);
        break;
    case CHAT_CMD_JOIN:
    case CHAT_CMD_LEAVE:
        err = get_name(data, "room", true, out->room, fail);
        break;
    case CHAT_CMD_SAY:
        if ((err = get_name(data, "room", true, out->room, fail)) == HM_OK)
            err = get_text(data, out->text, fail);
        break;
    case CHAT_CMD_WHO:
        err = get_name(data, "room", false, out->room, fail);
        break;
    case CHAT_CMD_LOGOUT:
    case CHAT_CMD_ROOMS:
    case CHAT_CMD_COUNT:
        break;
    }
    json_decref(empty);
    return err;
}

json_t *chat_cmd_data(const chat_cmd *cmd)
{
    json_t *d = json_object();

    switch (cmd->kind) {
    case CHAT_CMD_LOGIN:
        json_object_set_new(d, "user", json_string(cmd->name));
        break;
    case CHAT_CMD_MSG:
        json_object_set_new(d, "to", json_string(cmd->name));
        json_object_set_new(d, "text", json_string(cmd->text));
        break;
    case CHAT_CMD_SAY:
        json_object_set_new(d, "room", json_string(cmd->room));
        json_object_set_new(d, "text", json_string(cmd->text));
        break;
    case CHAT_CMD_JOIN:
    case CHAT_CMD_LEAVE:
    case CHAT_CMD_WHO:
        if (cmd->room[0])
            json_object_set_new(d, "room", json_string(cmd->room));
        break;
    case CHAT_CMD_LOGOUT:
    case CHAT_CMD_ROOMS:
    case CHAT_CMD_COUNT:
        break;
    }
    return d;
}

hm_err chat_encode(const char *type, uint64_t id, json_t *data,
                   char **line_out, size_t *len_out)
{
    json_t *body = json_object();
    hm_err err;

    json_object_set_new(body, "type", json_string(type));
    json_object_set_new(body, "data", data ? data : json_object());
    err = hm_hp_encode(&(hm_hp_envelope){.type = "msg", .id = id, .body = body},
                       CHAT_MAX_LINE, line_out, len_out);
    json_decref(body);
    return err;
}

hm_err chat_encode_error(uint64_t id, chat_err code, const char *reason,
                         char **line_out, size_t *len_out)
{
    json_t *data = json_object();

    json_object_set_new(data, "code", json_string(chat_err_name(code)));
    json_object_set_new(data, "reason", json_string(reason));
    return chat_encode("chat.error", id, data, line_out, len_out);
}
