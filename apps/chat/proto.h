/* apps/chat/proto.h: the chat protocol's codec, on HP v1 (docs/chat.md).
 *
 * Every chat line is an HP "msg" envelope whose body names a chat type and
 * carries its data:
 *   {"v":1,"type":"msg","id":2,"body":{"type":"chat.login","data":{"user":"alice"}}}
 * A client's command carries an id and gets exactly one answer with that
 * id: "chat.ok" (or "chat.delivered" for a direct message) or "chat.error"
 * with a stable code. Events (a message, a presence change) carry no id.
 *
 * Key decision: this module is pure. It turns a decoded HP message into a
 * chat_cmd (or a chat_fail naming the code) and builds answer lines; it does
 * no I/O and touches no runtime, so the server, the client and the tests all
 * share it and it is unit tested (tests/apps/chat/test_proto.c). */
#ifndef CHAT_PROTO_H
#define CHAT_PROTO_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

#define CHAT_MAX_NAME 32         /* bytes of a user or room name */
#define CHAT_MAX_TEXT 1000       /* bytes of a message's text */
#define CHAT_MAX_LINE (16 * 1024) /* bytes of one line from a client */
#define CHAT_MAX_REASON 160      /* bytes of a failure's reason */

/* The chat error codes: C name and wire name. Append only. */
#define CHAT_ERR_LIST(X)                                                      \
    X(CHAT_ERR_BAD_REQUEST, "bad_request")                                    \
    X(CHAT_ERR_UNKNOWN_COMMAND, "unknown_command")                            \
    X(CHAT_ERR_BAD_NAME, "bad_name")                                          \
    X(CHAT_ERR_TEXT_TOO_LONG, "text_too_long")                                \
    X(CHAT_ERR_NOT_LOGGED_IN, "not_logged_in")                                \
    X(CHAT_ERR_ALREADY_LOGGED_IN, "already_logged_in")                        \
    X(CHAT_ERR_NAME_TAKEN, "name_taken")                                      \
    X(CHAT_ERR_NO_SUCH_USER, "no_such_user")                                  \
    X(CHAT_ERR_NOT_MEMBER, "not_member")                                      \
    X(CHAT_ERR_UNDELIVERABLE, "undeliverable")                                \
    X(CHAT_ERR_INTERNAL, "internal")                                          \
    X(CHAT_ERR_BUSY, "busy")

typedef enum {
#define CHAT_ERR_ENUM(code, name) code,
    CHAT_ERR_LIST(CHAT_ERR_ENUM)
#undef CHAT_ERR_ENUM
        CHAT_ERR_COUNT
} chat_err;

/* The wire name ("name_taken"). Returns borrowed static storage. */
const char *chat_err_name(chat_err code);
/* The code named `name` (borrowed), or CHAT_ERR_INTERNAL. */
chat_err chat_err_parse(const char *name);

/* The commands a client sends, by their body type. */
typedef enum {
    CHAT_CMD_LOGIN,  /* "chat.login"  {user} */
    CHAT_CMD_LOGOUT, /* "chat.logout" {} */
    CHAT_CMD_MSG,    /* "chat.msg"    {to, text}: a direct message */
    CHAT_CMD_JOIN,   /* "chat.join"   {room} */
    CHAT_CMD_LEAVE,  /* "chat.leave"  {room} */
    CHAT_CMD_SAY,    /* "chat.say"    {room, text} */
    CHAT_CMD_WHO,    /* "chat.who"    {room?}: a room's members, or everyone */
    CHAT_CMD_ROOMS,  /* "chat.rooms"  {}: the open rooms */
    CHAT_CMD_COUNT
} chat_cmd_kind;

/* The body type of a command ("chat.join"). Borrowed static storage. */
const char *chat_cmd_name(chat_cmd_kind kind);

/* A parsed command. `name` is the user (login), the recipient (msg) or
 * empty; `room` is the room or empty. */
typedef struct chat_cmd {
    chat_cmd_kind kind;
    uint64_t id; /* the envelope's id; 0: none */
    char name[CHAT_MAX_NAME + 1];
    char room[CHAT_MAX_NAME + 1];
    char text[CHAT_MAX_TEXT + 1];
} chat_cmd;

/* Why a command was refused, as it goes back to the client. */
typedef struct chat_fail {
    chat_err code;
    char reason[CHAT_MAX_REASON];
} chat_fail;

/* True if `name` (borrowed) is a valid user or room name:
 * 1..CHAT_MAX_NAME bytes of [A-Za-z0-9._-]. Pure. */
bool chat_name_valid(const char *name);

/* Parses the command of body type `type` with `data` (both borrowed; data
 * may be NULL when absent) and envelope id `id` into `out`. On HM_EPROTO
 * fills `fail` instead (bad_request, unknown_command, bad_name,
 * text_too_long) and `out` is unspecified. Pure. */
hm_err chat_cmd_parse(const char *type, const struct json_t *data,
                      uint64_t id, chat_cmd *out, chat_fail *fail);

/* Builds the data of command `cmd` (borrowed) as a client sends it.
 * Returns owned JSON. */
struct json_t *chat_cmd_data(const chat_cmd *cmd);

/* Encodes one chat line: an HP "msg" envelope with id `id` (0: none) whose
 * body is {"type": type, "data": data}. Takes `data` (NULL: {}), on every
 * path. Returns owned memory (hm_free) in `*line_out`, newline included,
 * and its length. Errors: those of hm_hp_encode() (HM_EINVAL, HM_ETOOBIG). */
hm_err chat_encode(const char *type, uint64_t id, struct json_t *data,
                   char **line_out, size_t *len_out);

/* Encodes a "chat.error" answer to `id` with `code` and `reason`
 * (borrowed). Ownership as chat_encode(). */
hm_err chat_encode_error(uint64_t id, chat_err code, const char *reason,
                         char **line_out, size_t *len_out);

#endif
