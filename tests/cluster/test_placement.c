/* tests/cluster/test_placement.c: rendezvous hashing moves only what it
 * must. */
#include "cluster/placement.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define ADDRS 10000

static char addrs[ADDRS][32];

static void make_addrs(void)
{
    for (int i = 0; i < ADDRS; i++)
        snprintf(addrs[i], sizeof addrs[i], "mqtt/session/client-%d", i);
}

TestSuite(placement, .init = make_addrs);

static const char *owner(const char *addr, const char *const *m, size_t n)
{
    size_t i;
    hm_placement_set set = {m, n};
    cr_assert_eq(hm_placement_owner(addr, &set, &i), HM_OK);
    return m[i];
}

Test(placement, owner_does_not_depend_on_member_order)
{
    const char *a[] = {"n1", "n2", "n3", "n4"}, *b[] = {"n3", "n1", "n4", "n2"};
    for (int i = 0; i < ADDRS; i++)
        cr_assert_str_eq(owner(addrs[i], a, 4), owner(addrs[i], b, 4));
}

Test(placement, addresses_spread_evenly_over_members)
{
    const char *m[] = {"n1", "n2", "n3", "n4", "n5"};
    int count[5] = {0};
    for (int i = 0; i < ADDRS; i++) {
        size_t k;
        hm_placement_set set = {m, 5};
        cr_assert_eq(hm_placement_owner(addrs[i], &set, &k), HM_OK);
        count[k]++;
    }
    for (int k = 0; k < 5; k++) /* 2000 expected; 5 sigma is about 200 */
        cr_expect(count[k] > 1750 && count[k] < 2250, "%s owns %d", m[k],
                  count[k]);
}

Test(placement, joining_member_takes_about_1_over_n_and_only_moves_to_it)
{
    const char *before[] = {"n1", "n2", "n3", "n4", "n5"};
    const char *after[] = {"n1", "n2", "n3", "n4", "n5", "n6"};
    int moved = 0;
    for (int i = 0; i < ADDRS; i++) {
        const char *o1 = owner(addrs[i], before, 5);
        const char *o2 = owner(addrs[i], after, 6);
        if (strcmp(o1, o2) == 0)
            continue;
        moved++;
        cr_assert_str_eq(o2, "n6", "%s moved between old members", addrs[i]);
    }
    cr_log_info("join: %d of %d addresses moved (ideal %d)", moved, ADDRS,
                ADDRS / 6);
    cr_expect(moved > ADDRS / 6 - 250 && moved < ADDRS / 6 + 250, "%d moved",
              moved);
}

Test(placement, leaving_member_moves_only_its_own_addresses)
{
    const char *before[] = {"n1", "n2", "n3", "n4", "n5"};
    const char *after[] = {"n1", "n2", "n4", "n5"};
    for (int i = 0; i < ADDRS; i++) {
        const char *o1 = owner(addrs[i], before, 5);
        if (strcmp(o1, "n3") != 0)
            cr_assert_str_eq(owner(addrs[i], after, 4), o1);
    }
}

Test(placement, moves_lists_the_local_activations_owned_elsewhere_now)
{
    const char *before[] = {"n1", "n2", "n3"};
    const char *after[] = {"n1", "n2", "n3", "n4"};
    const char *local[ADDRS];
    size_t n_local = 0, out[ADDRS];
    for (int i = 0; i < ADDRS; i++)
        if (strcmp(owner(addrs[i], before, 3), "n2") == 0)
            local[n_local++] = addrs[i];
    hm_placement_set mine = {local, n_local}, was = {before, 3},
                     now = {after, 4};
    cr_expect_eq(hm_placement_moves("n2", &was, &mine, out), 0);
    size_t n = hm_placement_moves("n2", &now, &mine, out);
    cr_expect_gt(n, 0);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(owner(local[out[i]], after, 4), "n4");
    size_t staying = 0;
    for (size_t i = 0; i < n_local; i++)
        staying += strcmp(owner(local[i], after, 4), "n2") == 0;
    cr_expect_eq(staying + n, n_local);
}

Test(placement, no_members_means_no_owner)
{
    size_t i;
    hm_placement_set none = {NULL, 0};
    cr_expect_eq(hm_placement_owner("x", &none, &i), HM_ENOTFOUND);
}
