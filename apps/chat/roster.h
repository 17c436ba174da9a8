/* apps/chat/roster.h: a small set of names, each with the node it lives
 * on: a room's members, the directory's online users and open rooms.
 *
 * Pure and single-owner (one receiver's state): no locks, no I/O. A linear
 * array, because a chat room of a few hundred members is scanned faster
 * than it is hashed, and the order of joining is kept for "who". */
#ifndef CHAT_ROSTER_H
#define CHAT_ROSTER_H

#include "apps/chat/proto.h"

#include <stdbool.h>
#include <stddef.h>

struct json_t;

#define CHAT_ROSTER_NODE_MAX 64 /* bytes of a node name */
#define CHAT_ROSTER_NAME_MAX 64 /* bytes of a name: a chat name or a node's */

typedef struct chat_roster_entry {
    char name[CHAT_ROSTER_NAME_MAX + 1];
    char node[CHAT_ROSTER_NODE_MAX + 1];
} chat_roster_entry;

/* Storage provided by the caller; chat_roster_fini() frees the entries. */
typedef struct chat_roster {
    chat_roster_entry *entries; /* owned */
    size_t count;
    size_t cap;
} chat_roster;

void chat_roster_init(chat_roster *r);
/* Frees the entries. Accepts a zeroed roster. */
void chat_roster_fini(chat_roster *r);

/* Adds `name` on `node` (both borrowed; node NULL: ""). Names longer than
 * the limits are truncated (callers validate first). True if it was absent;
 * if present, its node is updated and false is returned. */
bool chat_roster_add(chat_roster *r, const char *name, const char *node);
/* Removes `name`; true if it was there. */
bool chat_roster_remove(chat_roster *r, const char *name);
bool chat_roster_has(const chat_roster *r, const char *name);

/* Removes every entry on `node` (borrowed), calling `fn` with each removed
 * name (borrowed for the call) before it goes. Returns how many went. */
size_t chat_roster_remove_node(chat_roster *r, const char *node,
                               void (*fn)(void *arg, const char *name),
                               void *arg);

/* The names as a JSON array of strings, in the order they were added.
 * Returns owned. */
struct json_t *chat_roster_names(const chat_roster *r);

#endif
