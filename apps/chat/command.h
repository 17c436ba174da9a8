/* apps/chat/command.h: what the terminal client makes of a typed line and
 * of a line from the server.
 *
 *   /msg USER TEXT   a direct message        /join ROOM   join, make current
 *   /leave [ROOM]    leave (default: current) /say ROOM TEXT
 *   TEXT             say in the current room  /who [ROOM]  members or everyone
 *   /rooms           the open rooms           /quit        log out and exit
 *   /help
 *
 * Key decision: pure, like the protocol codec: a typed line becomes a
 * chat_cmd (or a local action, or a message for the user), and a decoded
 * server line becomes one human-readable line. The client's loop only moves
 * bytes. */
#ifndef CHAT_COMMAND_H
#define CHAT_COMMAND_H

#include "apps/chat/proto.h"

#include <stddef.h>

struct json_t;

typedef enum {
    CHAT_INPUT_NONE,  /* an empty line: nothing to do */
    CHAT_INPUT_SEND,  /* send `cmd` */
    CHAT_INPUT_QUIT,  /* log out and exit */
    CHAT_INPUT_HELP,  /* show `note` (the help text) */
    CHAT_INPUT_ERROR, /* show `note`: the line was not understood */
} chat_input_kind;

typedef struct chat_input {
    chat_input_kind kind;
    chat_cmd cmd;
    char note[200];
} chat_input;

/* Parses the typed `line` (borrowed). `room` is the current room (borrowed;
 * "" if none), used by plain text and /leave. The command's id is left 0
 * for the caller to number. Pure. */
void chat_input_parse(const char *line, const char *room, chat_input *out);

/* Formats a server line, given the body type and data of a chat "msg"
 * (borrowed; data may be NULL), for the terminal: "[lobby] bob: hi",
 * "* alice joined lobby", "! no_such_user: ...". Writes at most `cap` bytes
 * (NUL-terminated) and returns the length; 0 means show nothing. Pure. */
size_t chat_format_line(const char *type, const struct json_t *data,
                        char *out, size_t cap);

#endif
