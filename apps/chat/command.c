/* apps/chat/command.c: typed lines to commands, server lines to text (see
 * command.h).
 *
 * Names and text are checked here with the same rules the server applies
 * (chat_name_valid, CHAT_MAX_TEXT), so a typing mistake is explained at
 * once instead of after a round trip; the server checks again, because it
 * trusts no client. */
#include "apps/chat/command.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char HELP[] =
    "/msg USER TEXT, /join ROOM, /leave [ROOM], /say ROOM TEXT, "
    "/who [ROOM], /rooms, /quit; other text goes to the current room";

/* Copies the next space-separated word of `*s` into `dst` (`cap` bytes)
 * and advances `*s` past it and the spaces after it. False if the word is
 * empty or does not fit. */
static bool next_word(const char **s, char *dst, size_t cap)
{
    size_t n = strcspn(*s, " ");

    if (n == 0 || n >= cap)
        return false;
    memcpy(dst, *s, n);
    dst[n] = '\0';
    *s += n;
    *s += strspn(*s, " ");
    return true;
}

static void fail(chat_input *out, const char *fmt, const char *what)
{
    out->kind = CHAT_INPUT_ERROR;
    snprintf(out->note, sizeof out->note, fmt, what);
}

/* Reads a name into `dst` (CHAT_MAX_NAME + 1 bytes). */
static bool take_name(const char **s, char *dst, chat_input *out,
                      const char *what)
{
    if (!next_word(s, dst, CHAT_MAX_NAME + 1) || !chat_name_valid(dst)) {
        fail(out, "%s: 1-32 of A-Z a-z 0-9 . _ -", what);
        return false;
    }
    return true;
}

static bool take_text(const char *s, chat_input *out)
{
    size_t len = strlen(s);
    json_t *probe;

    if (len == 0) {
        fail(out, "%s", "nothing to send");
        return false;
    }
    if (len > CHAT_MAX_TEXT) {
        fail(out, "%s", "too long: at most 1000 bytes");
        return false;
    }
    /* The wire is JSON, which carries UTF-8 only: jansson refuses to make
     * a string of anything else, and the command would go out without its
     * text (found by fuzz/fuzz_chat.c). */
    if (!(probe = json_stringn(s, len))) {
        fail(out, "%s", "the text is not valid UTF-8");
        return false;
    }
    json_decref(probe);
    memcpy(out->cmd.text, s, len + 1);
    return true;
}

static void parse_slash(const char *s, const char *room, chat_input *out)
{
    char verb[16];
    chat_cmd *c = &out->cmd;

    out->kind = CHAT_INPUT_SEND;
    if (!next_word(&s, verb, sizeof verb)) {
        fail(out, "%s", HELP);
    } else if (strcmp(verb, "/msg") == 0) {
        c->kind = CHAT_CMD_MSG;
        if (take_name(&s, c->name, out, "/msg USER TEXT"))
            take_text(s, out);
    } else if (strcmp(verb, "/join") == 0 || strcmp(verb, "/who") == 0) {
        c->kind = verb[1] == 'j' ? CHAT_CMD_JOIN : CHAT_CMD_WHO;
        if (*s || c->kind == CHAT_CMD_JOIN)
            take_name(&s, c->room, out, "ROOM");
    } else if (strcmp(verb, "/leave") == 0) {
        c->kind = CHAT_CMD_LEAVE;
        if (*s)
            take_name(&s, c->room, out, "ROOM");
        else if (*room)
            snprintf(c->room, sizeof c->room, "%s", room);
        else
            fail(out, "%s", "/leave ROOM: you are in no room");
    } else if (strcmp(verb, "/say") == 0) {
        c->kind = CHAT_CMD_SAY;
        if (take_name(&s, c->room, out, "/say ROOM TEXT"))
            take_text(s, out);
    } else if (strcmp(verb, "/rooms") == 0) {
        c->kind = CHAT_CMD_ROOMS;
    } else if (strcmp(verb, "/quit") == 0) {
        out->kind = CHAT_INPUT_QUIT;
    } else if (strcmp(verb, "/help") == 0) {
        out->kind = CHAT_INPUT_HELP;
        snprintf(out->note, sizeof out->note, "%s", HELP);
    } else {
        fail(out, "unknown command %s (try /help)", verb);
    }
}

void chat_input_parse(const char *line, const char *room, chat_input *out)
{
    memset(out, 0, sizeof *out);
    line += strspn(line, " ");
    if (!*line) {
        out->kind = CHAT_INPUT_NONE;
    } else if (line[0] == '/') {
        parse_slash(line, room, out);
    } else if (!*room) {
        fail(out, "%s", "you are in no room: /join ROOM first, or /help");
    } else {
        out->kind = CHAT_INPUT_SEND;
        out->cmd.kind = CHAT_CMD_SAY;
        snprintf(out->cmd.room, sizeof out->cmd.room, "%s", room);
        take_text(line, out);
    }
}

static const char *str(const json_t *data, const char *key)
{
    const char *s = json_string_value(json_object_get(data, key));

    return s ? s : "?";
}

/* "a, b, c" from a JSON array of strings, into out[0, cap). */
static void join_list(const json_t *list, char *out, size_t cap)
{
    size_t i, used = 0;
    json_t *v;

    out[0] = '\0';
    json_array_foreach(list, i, v)
    {
        int n = snprintf(out + used, cap - used, "%s%s", i ? ", " : "",
                         json_string_value(v) ? json_string_value(v) : "?");
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
}

static int format_ok(const json_t *data, char *out, size_t cap)
{
    const json_t *users = json_object_get(data, "users");
    const json_t *rooms = json_object_get(data, "rooms");
    char list[600];

    if (json_object_get(data, "user"))
        return snprintf(out, cap, "* logged in as %s on node %s",
                        str(data, "user"), str(data, "node"));
    if (rooms) {
        join_list(rooms, list, sizeof list);
        return snprintf(out, cap, "* rooms: %s", *list ? list : "(none)");
    }
    if (users) {
        join_list(users, list, sizeof list);
        if (json_object_get(data, "room"))
            return snprintf(out, cap, "* in %s: %s", str(data, "room"), list);
        return snprintf(out, cap, "* online: %s", list);
    }
    return 0; /* a plain ok: nothing worth a line */
}

size_t chat_format_line(const char *type, const json_t *data, char *out,
                        size_t cap)
{
    int n = 0;

    if (strcmp(type, "chat.dm") == 0)
        n = snprintf(out, cap, "%s -> you: %s", str(data, "from"),
                     str(data, "text"));
    else if (strcmp(type, "chat.said") == 0)
        n = snprintf(out, cap, "[%s] %s: %s", str(data, "room"),
                     str(data, "from"), str(data, "text"));
    else if (strcmp(type, "chat.presence") == 0 &&
             json_object_get(data, "room"))
        n = snprintf(out, cap, "* %s %s %s", str(data, "user"),
                     str(data, "event"), str(data, "room"));
    else if (strcmp(type, "chat.presence") == 0)
        n = snprintf(out, cap, "* %s is %s", str(data, "user"),
                     str(data, "event"));
    else if (strcmp(type, "chat.delivered") == 0)
        n = snprintf(out, cap, "* delivered to %s", str(data, "to"));
    else if (strcmp(type, "chat.error") == 0)
        n = snprintf(out, cap, "! %s: %s", str(data, "code"),
                     str(data, "reason"));
    else if (strcmp(type, "chat.bye") == 0)
        n = snprintf(out, cap, "! disconnected: %s", str(data, "reason"));
    else if (strcmp(type, "chat.ok") == 0)
        n = format_ok(data, out, cap);
    if (n <= 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}
