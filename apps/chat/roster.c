/* apps/chat/roster.c: a set of (name, node) pairs (see roster.h).
 *
 * Removal shifts the tail down rather than swapping in the last entry, so
 * the order of joining survives; rosters are small and removals rare. */
#include "apps/chat/roster.h"

#include "runtime/alloc.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

void chat_roster_init(chat_roster *r)
{
    memset(r, 0, sizeof *r);
}

void chat_roster_fini(chat_roster *r)
{
    hm_free(r->entries);
    memset(r, 0, sizeof *r);
}

static ptrdiff_t find(const chat_roster *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->entries[i].name, name) == 0)
            return (ptrdiff_t)i;
    return -1;
}

bool chat_roster_add(chat_roster *r, const char *name, const char *node)
{
    ptrdiff_t at = find(r, name);
    chat_roster_entry *e;

    if (at >= 0) {
        e = &r->entries[at];
        snprintf(e->node, sizeof e->node, "%s", node ? node : "");
        return false;
    }
    if (r->count == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 8;
        r->entries = hm_realloc(r->entries, r->cap * sizeof *r->entries);
    }
    e = &r->entries[r->count++];
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->node, sizeof e->node, "%s", node ? node : "");
    return true;
}

static void remove_at(chat_roster *r, size_t at)
{
    r->count--;
    memmove(&r->entries[at], &r->entries[at + 1],
            (r->count - at) * sizeof r->entries[0]);
}

bool chat_roster_remove(chat_roster *r, const char *name)
{
    ptrdiff_t at = find(r, name);

    if (at < 0)
        return false;
    remove_at(r, (size_t)at);
    return true;
}

bool chat_roster_has(const chat_roster *r, const char *name)
{
    return find(r, name) >= 0;
}

size_t chat_roster_remove_node(chat_roster *r, const char *node,
                               void (*fn)(void *arg, const char *name),
                               void *arg)
{
    size_t gone = 0;

    for (size_t i = 0; i < r->count;) {
        if (strcmp(r->entries[i].node, node) != 0) {
            i++;
            continue;
        }
        if (fn)
            fn(arg, r->entries[i].name);
        remove_at(r, i);
        gone++;
    }
    return gone;
}

json_t *chat_roster_names(const chat_roster *r)
{
    json_t *a = json_array();

    for (size_t i = 0; i < r->count; i++)
        json_array_append_new(a, json_string(r->entries[i].name));
    return a;
}
