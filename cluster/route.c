/* cluster/route.c: local, then presence, then placement.
 *
 * Presence outranks placement because a registered receiver is a real
 * process-bound thing (a connection), while placement only says where a
 * virtual receiver *would* be activated. */
#include "cluster/route.h"

#include "cluster/placement.h"

#include <stdio.h>
#include <string.h>

void hm_route_resolve(const hm_route_view *v, const char *addr, hm_route *out)
{
    char origin[HM_NODE_NAME_MAX + 1];
    size_t owner;
    memset(out, 0, sizeof *out);
    out->kind = HM_ROUTE_LOCAL;
    if (v->is_local && v->is_local(v->arg, addr))
        return;
    if (v->presence && hm_presence_lookup(v->presence, addr, origin) == HM_OK) {
        if (strcmp(origin, v->self) != 0) {
            out->kind = HM_ROUTE_REMOTE;
            strcpy(out->node, origin);
        }
        return;
    }
    if (hm_placement_owner(addr, &v->members, &owner) == HM_OK &&
        strcmp(v->members.names[owner], v->self) != 0) {
        out->kind = HM_ROUTE_REMOTE;
        snprintf(out->node, sizeof out->node, "%s", v->members.names[owner]);
    }
}

hm_err hm_route_inbound(const hm_route_view *v, const char *addr)
{
    hm_route r;
    hm_route_resolve(v, addr, &r);
    return r.kind == HM_ROUTE_LOCAL ? HM_OK : HM_ENOTFOUND;
}
