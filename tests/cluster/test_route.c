/* tests/cluster/test_route.c: resolution order and the one-hop rule. */
#include "cluster/route.h"

#include "cluster/placement.h"

#include <criterion/criterion.h>
#include <string.h>

static const char *const members[] = {"n1", "n2", "n3"};

static bool local_alice(void *arg, const char *addr)
{
    return strcmp(addr, "alice") == 0;
}

/* Registry on n1 that knows "bob" lives on n2 and "carol" here. */
static hm_presence *registry(void)
{
    hm_presence *p;
    cr_assert_eq(
        hm_presence_create(
            &(hm_presence_config){.self_name = "n1", .self_inc = 1}, &p),
        HM_OK);
    hm_wire_msg d = {
        .type = HM_WIRE_PRES_DELTA,
        .u.pres_delta = {.at = {.origin = "n2", .inc = 4, .version = 1},
                         .add = true,
                         .name = "bob"}};
    cr_assert_eq(hm_presence_on_message(p, "n2", &d, 0), HM_OK);
    cr_assert_eq(hm_presence_register(p, "carol", 0), HM_OK);
    return p;
}

static hm_route_view view(hm_presence *p)
{
    return (hm_route_view){.self = "n1",
                           .presence = p,
                           .members = {members, 3},
                           .is_local = local_alice};
}

/* An unregistered address that placement puts on `node`. */
static void placed_on(const char *node, char *addr, size_t len)
{
    for (int i = 0;; i++) {
        size_t owner;
        snprintf(addr, len, "session-%d", i);
        hm_placement_set set = {members, 3};
        cr_assert_eq(hm_placement_owner(addr, &set, &owner), HM_OK);
        if (strcmp(members[owner], node) == 0)
            return;
    }
}

Test(route, local_receiver_is_delivered_here)
{
    hm_presence *p = registry();
    hm_route_view v = view(p);
    hm_route r;
    hm_route_resolve(&v, "alice", &r);
    cr_expect_eq(r.kind, HM_ROUTE_LOCAL);
    hm_presence_destroy(p);
}

Test(route, name_registered_on_another_node_goes_there)
{
    hm_presence *p = registry();
    hm_route_view v = view(p);
    hm_route r;
    hm_route_resolve(&v, "bob", &r);
    cr_expect_eq(r.kind, HM_ROUTE_REMOTE);
    cr_expect_str_eq(r.node, "n2");
    hm_presence_destroy(p);
}

Test(route, unregistered_address_goes_to_its_placement_owner)
{
    hm_presence *p = registry();
    hm_route_view v = view(p);
    hm_route r;
    char addr[32];
    placed_on("n3", addr, sizeof addr);
    hm_route_resolve(&v, addr, &r);
    cr_expect_eq(r.kind, HM_ROUTE_REMOTE);
    cr_expect_str_eq(r.node, "n3");
    placed_on("n1", addr, sizeof addr);
    hm_route_resolve(&v, addr, &r);
    cr_expect_eq(r.kind, HM_ROUTE_LOCAL, "owned here: activate here");
    hm_presence_destroy(p);
}

Test(route, inbound_message_for_elsewhere_is_never_forwarded)
{
    hm_presence *p = registry();
    hm_route_view v = view(p);
    char addr[32];
    cr_expect_eq(hm_route_inbound(&v, "alice"), HM_OK);
    cr_expect_eq(hm_route_inbound(&v, "carol"), HM_OK);
    cr_expect_eq(hm_route_inbound(&v, "bob"), HM_ENOTFOUND);
    placed_on("n2", addr, sizeof addr);
    cr_expect_eq(hm_route_inbound(&v, addr), HM_ENOTFOUND);
    placed_on("n1", addr, sizeof addr);
    cr_expect_eq(hm_route_inbound(&v, addr), HM_OK);
    hm_presence_destroy(p);
}

Test(route, alone_everything_is_local)
{
    const char *self_only[] = {"n1"};
    hm_route_view v = {.self = "n1", .members = {self_only, 1}};
    hm_route r;
    hm_route_resolve(&v, "anything", &r);
    cr_expect_eq(r.kind, HM_ROUTE_LOCAL);
}
