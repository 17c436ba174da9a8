/* cluster/members_query.c: read-only views of the membership table, for
 * the API, logs and placement. Kept apart from the state machine in
 * members.c, which they never change. */
#include "cluster/members.h"
#include "cluster/members_impl.h"

#include "runtime/alloc.h"

#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"joining", "alive", "suspect", "dead",
                                          "left"};
static const char *const event_names[] = {"up",   "suspect", "alive",
                                          "dead", "left",    "replaced"};

const char *hm_member_state_name(hm_member_state s)
{
    return (size_t)s < 5 ? state_names[s] : "?";
}

const char *hm_member_event_name(hm_member_event e)
{
    return (size_t)e < 6 ? event_names[e] : "?";
}

/* ------------------------------------------------------------ queries */

static void fill_info(const member *x, hm_member_info *out)
{
    strcpy(out->name, x->name);
    strcpy(out->addr, x->addr);
    out->inc = x->inc;
    out->state = x->state;
    out->linked = x->linked;
    out->last_heard_ms = x->last_heard_ms;
}

hm_err hm_members_get(const hm_members *m, const char *name,
                      hm_member_info *out)
{
    const member *x = hm_members_find_member(m, name);
    if (!x)
        return HM_ENOTFOUND;
    fill_info(x, out);
    return HM_OK;
}

size_t hm_members_count(const hm_members *m)
{
    return m->count;
}

void hm_members_at(const hm_members *m, size_t i, hm_member_info *out)
{
    HM_ASSERT(i < m->count);
    fill_info(m->members[i], out);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t hm_members_live(const hm_members *m, const char **out, size_t cap)
{
    size_t n = 0;
    if (cap > 0)
        out[n] = m->self_name;
    n++;
    for (size_t i = 0; i < m->count; i++) {
        if (!hm_members_is_live_member(m->members[i]))
            continue;
        if (n < cap)
            out[n] = m->members[i]->name;
        n++;
    }
    qsort(out, n < cap ? n : cap, sizeof *out, compare_names);
    return n;
}

const char *hm_members_self(const hm_members *m)
{
    return m->self_name;
}

bool hm_members_keep_new_link(const char *self, const char *peer,
                              bool existing_dialled_by_self,
                              bool new_dialled_by_self)
{
    if (existing_dialled_by_self == new_dialled_by_self)
        return true; /* a reconnection replaces a stale link */
    bool self_is_smaller = strcmp(self, peer) < 0;
    /* Keep the link whose dialler is the smaller name. */
    return new_dialled_by_self == self_is_smaller;
}
