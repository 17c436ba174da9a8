/* apps/chat/note.h: the runtime messages chat receivers send each other.
 *
 * Users, rooms and the directory talk only through runtime messages sent by
 * name ("chat/room/lobby"), never through pointers, so that any of them may
 * live on another node: the cluster layer then encodes the message with its
 * type's codec into an HP line and decodes it on the other side. All the
 * types share one payload, chat_note (a few optional strings and a list),
 * and one codec, which keeps every message readable on the wire:
 *   {"type":"chat.dm","data":{"user":"alice","text":"hi"}}
 *
 * Key decision: one small payload for every type rather than one struct per
 * type. The type says what a message means; the note only carries names and
 * text, so one codec (tested once) serves them all. */
#ifndef CHAT_NOTE_H
#define CHAT_NOTE_H

#include "runtime/runtime.h"

struct json_t;

/* The payload of every chat message type. Every field is optional and
 * owned (hm_free / json_decref). */
typedef struct chat_note {
    char *user;          /* a user name ("alice") */
    char *room;          /* a room name ("lobby") */
    char *node;          /* the node a user lives on */
    char *text;          /* message text */
    char *event;         /* presence: joined, left, online, offline */
    char *code;          /* a result's chat error code; NULL: success */
    struct json_t *list; /* an array of strings (users, rooms) */
} chat_note;

/* Messages to a user ("chat/user/<name>"). */
extern const hm_type chat_dm_type;       /* request {user: from, text} */
extern const hm_type chat_event_type;    /* {event, user, room?, text?} */
extern const hm_type chat_rejoin_type;   /* {}: a node left; re-announce */
/* Messages to a room ("chat/room/<name>"). */
extern const hm_type chat_join_type; /* request {user, node}; arg 1: silent */
extern const hm_type chat_leave_type;    /* request {user, event?} */
extern const hm_type chat_say_type;      /* request {user, text} */
extern const hm_type chat_who_type;      /* request {}; also to the directory */
/* Messages to the directory ("chat/directory"). */
extern const hm_type chat_online_type;   /* {user, node}; arg 1: silent */
extern const hm_type chat_offline_type;  /* {user} */
extern const hm_type chat_rooms_type;    /* request {} */
extern const hm_type chat_room_open_type;  /* {room} */
extern const hm_type chat_room_close_type; /* {room} */
/* To rooms, chat/local and the directory: every user of `node` is gone.
 * arg 1: and the node is dead or left, so an announcement from it that
 * arrives late is ignored until chat_node_up_type says it is back. */
extern const hm_type chat_node_gone_type; /* {node} */
extern const hm_type chat_node_up_type;   /* {node} */
/* To any chat name: ignored by every chat receiver. A login that finds a
 * stale proxy standing under a user's name sends it one, so the proxy
 * looks the name up again and ends (cluster/proxy.c). */
extern const hm_type chat_nudge_type; /* {} */
/* The answer to every request above: {code?, list?}. */
extern const hm_type chat_result_type;

/* A note with copies of the given strings (each borrowed; NULL: absent).
 * Returns owned (never NULL). */
chat_note *chat_note_create(const char *user, const char *room,
                            const char *text);
/* Frees `n` and everything it owns. Accepts NULL. */
void chat_note_free(void *n);

/* A message of `type` with a note of `user`, `room` and `text` (borrowed).
 * Returns owned. */
hm_msg *chat_note_msg(const hm_type *type, const char *user,
                      const char *room, const char *text);
/* The note of a chat message, or an empty static note if it has none.
 * Returns borrowed: valid while `m` lives. */
const chat_note *chat_msg_note(const hm_msg *m);

/* Sets a copied string field (`*field` is freed first). */
void chat_note_set(char **field, const char *value);

/* Registers every type above in `rt` so that nodes decode them by name.
 * Errors: those of hm_runtime_register_type(). */
hm_err chat_note_register_types(hm_runtime *rt);

#endif
