/* tests/cluster/test_presence.c: the replicated registry, alone and on five
 * simulated nodes whose messages are delayed, reordered and dropped. Every
 * message goes through the real wire codec. Times are simulated. */
#include "cluster/presence.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 5
#define NAMES 40 /* the pool of names the workload draws from */

typedef struct {
    uint64_t at, seq;
    int from, to;
    char *line; /* owned */
} pflight;

typedef struct {
    hm_presence *node[N];
    char name[N][8];
    uint64_t inc[N];
    bool up[N];     /* the node runs */
    pflight *q;
    size_t qn, qcap;
    uint64_t now, seq, rng;
    double drop;        /* probability a message is lost */
    uint32_t max_delay; /* delays are uniform in 1..max_delay: reordering */
} psim;

static uint64_t rnd(psim *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static void start_node(psim *s, int i, uint64_t inc)
{
    s->inc[i] = inc;
    s->up[i] = true;
    cr_assert_eq(hm_presence_create(&(hm_presence_config){.self_name =
                                                              s->name[i],
                                                          .self_inc = inc},
                                    &s->node[i]),
                 HM_OK);
}

static void drain(psim *s, int i)
{
    hm_presence_action a;
    while (hm_presence_next_action(s->node[i], &a)) {
        int j = a.peer[1] - '0';
        char *line;
        cr_assert_eq(hm_wire_encode_line(&a.msg, &line), HM_OK);
        hm_wire_msg_fini(&a.msg);
        if ((double)(rnd(s) % 10000) / 10000.0 < s->drop) {
            hm_free(line);
            continue;
        }
        if (s->qn == s->qcap) {
            s->qcap = s->qcap ? 2 * s->qcap : 64;
            s->q = hm_realloc(s->q, s->qcap * sizeof *s->q);
        }
        s->q[s->qn++] = (pflight){.at = s->now + 1 + rnd(s) % s->max_delay,
                                  .seq = s->seq++,
                                  .from = i,
                                  .to = j,
                                  .line = line};
    }
}

/* Link every pair of running nodes (both directions). */
static void link_all(psim *s)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (i != j && s->up[i] && s->up[j])
                hm_presence_on_link_up(s->node[i], s->name[j], s->now);
    for (int i = 0; i < N; i++)
        if (s->up[i])
            drain(s, i);
}

static void psim_init(psim *s, uint64_t seed, double drop, uint32_t delay)
{
    memset(s, 0, sizeof *s);
    s->rng = seed;
    s->drop = drop;
    s->max_delay = delay;
    for (int i = 0; i < N; i++) {
        snprintf(s->name[i], sizeof s->name[i], "n%u", (unsigned)i % 100u);
        start_node(s, i, 100 + (uint64_t)i);
    }
    link_all(s);
}

static void psim_fini(psim *s)
{
    for (int i = 0; i < N; i++)
        hm_presence_destroy(s->node[i]);
    for (size_t k = 0; k < s->qn; k++)
        hm_free(s->q[k].line);
    hm_free(s->q);
}

static void step(psim *s)
{
    size_t k = 0;
    while (k < s->qn) {
        if (s->q[k].at > s->now) {
            k++;
            continue;
        }
        pflight f = s->q[k];
        s->q[k] = s->q[--s->qn];
        if (s->up[f.to] && s->up[f.from]) {
            hm_wire_msg msg;
            cr_assert_eq(hm_wire_decode_line(f.line, strlen(f.line), &msg),
                         HM_OK);
            cr_assert_eq(hm_presence_on_message(s->node[f.to],
                                                s->name[f.from], &msg,
                                                s->now),
                         HM_OK);
            hm_wire_msg_fini(&msg);
            drain(s, f.to);
        }
        hm_free(f.line);
    }
    for (int i = 0; i < N; i++)
        if (s->up[i]) {
            hm_presence_tick(s->node[i], s->now);
            drain(s, i);
        }
}

static void run_until(psim *s, uint64_t t)
{
    while (s->now < t) {
        s->now++;
        step(s);
    }
}

static const char *pool(int k)
{
    static char names[NAMES][16];
    snprintf(names[k], sizeof names[k], "user-%02d", k);
    return names[k];
}

/* Whether every running node agrees with every running origin about each
 * name of the pool. */
static bool converged(psim *s)
{
    for (int k = 0; k < NAMES; k++) {
        char truth[HM_NODE_NAME_MAX + 1] = "", seen[HM_NODE_NAME_MAX + 1];
        for (int o = N - 1; o >= 0; o--) /* smallest origin wins */
            if (s->up[o] && hm_presence_lookup(s->node[o], pool(k), seen) ==
                                HM_OK &&
                strcmp(seen, s->name[o]) == 0)
                strcpy(truth, s->name[o]);
        for (int i = 0; i < N; i++) {
            if (!s->up[i])
                continue;
            hm_err e = hm_presence_lookup(s->node[i], pool(k), seen);
            bool local = truth[0] && hm_presence_lookup(s->node[i], pool(k),
                                                        seen) == HM_OK &&
                         strcmp(seen, s->name[i]) == 0;
            if (local)
                continue; /* a local registration wins locally */
            if (truth[0] ? e != HM_OK || strcmp(seen, truth) : e == HM_OK)
                return false;
        }
    }
    return true;
}

/* A random register or unregister on a random running node. */
static void random_op(psim *s)
{
    int i = (int)(rnd(s) % N), k = (int)(rnd(s) % NAMES);
    if (!s->up[i])
        return;
    if (hm_presence_register(s->node[i], pool(k), s->now) == HM_EEXIST)
        hm_presence_unregister(s->node[i], pool(k), s->now);
    drain(s, i);
}

static void quiet(void)
{
    hm_log_set_level(HM_LOG_LEVEL_ERROR);
}

TestSuite(presence, .init = quiet);

static void churn_then_converge(uint64_t seed, double drop, uint32_t delay)
{
    psim s;
    psim_init(&s, seed, drop, delay);
    for (int t = 0; t < 3000; t++) {
        if (rnd(&s) % 4 == 0)
            random_op(&s);
        s.now++;
        step(&s);
    }
    /* Quiet: deltas and digests must settle everything within a few
     * digest periods. */
    uint64_t quiet_at = s.now;
    while (!converged(&s) && s.now < quiet_at + 10000)
        run_until(&s, s.now + 10);
    cr_expect(converged(&s), "seed %llu drop %.2f: not converged",
              (unsigned long long)seed, drop);
    cr_log_info("presence seed %llu drop %.2f: converged %llu ms after "
                "the churn stopped",
                (unsigned long long)seed, drop,
                (unsigned long long)(s.now - quiet_at));
    psim_fini(&s);
}

Test(presence, five_nodes_converge_with_reordering_and_no_loss)
{
    churn_then_converge(11, 0.0, 40);
}

Test(presence, five_nodes_converge_with_10pct_loss_and_reordering)
{
    for (uint64_t seed = 1; seed <= 5; seed++)
        churn_then_converge(seed * 7919, 0.10, 40);
}

Test(presence, registration_is_visible_everywhere_after_one_delay)
{
    /* Without loss a name needs one message to each peer: its p99 is the
     * network's. */
    psim s;
    psim_init(&s, 3, 0.0, 20);
    run_until(&s, 100);
    uint64_t worst = 0;
    for (int k = 0; k < 20; k++) {
        int i = k % N;
        uint64_t t0 = s.now;
        cr_assert_eq(hm_presence_register(s.node[i], pool(k), s.now), HM_OK);
        drain(&s, i);
        bool all = false;
        while (!all) {
            all = true;
            for (int j = 0; j < N; j++) {
                char at[HM_NODE_NAME_MAX + 1];
                all &= hm_presence_lookup(s.node[j], pool(k), at) == HM_OK;
            }
            if (!all)
                run_until(&s, s.now + 1);
        }
        worst = s.now - t0 > worst ? s.now - t0 : worst;
    }
    cr_expect_leq(worst, 21);
    psim_fini(&s);
}

Test(presence, dead_node_names_vanish_and_late_deltas_do_not_revive_them)
{
    psim s;
    psim_init(&s, 5, 0.0, 10);
    cr_assert_eq(hm_presence_register(s.node[4], "alice", s.now), HM_OK);
    drain(&s, 4);
    run_until(&s, 50);
    /* n4 registers bob, then dies before anyone acts on the delta. */
    cr_assert_eq(hm_presence_register(s.node[4], "bob", s.now), HM_OK);
    drain(&s, 4);
    for (int i = 0; i < 4; i++)
        hm_presence_on_node_gone(s.node[i], "n4", s.inc[4]);
    s.up[4] = false; /* its in-flight deltas are still delivered: */
    for (size_t k = 0; k < s.qn; k++)
        s.q[k].from = s.q[k].from == 4 ? 3 : s.q[k].from; /* relayed late */
    run_until(&s, 2000);
    for (int i = 0; i < 4; i++) {
        char at[HM_NODE_NAME_MAX + 1];
        cr_expect_eq(hm_presence_lookup(s.node[i], "alice", at),
                     HM_ENOTFOUND, "n%d still has alice", i);
        cr_expect_eq(hm_presence_lookup(s.node[i], "bob", at), HM_ENOTFOUND,
                     "n%d still has bob", i);
    }
    psim_fini(&s);
}

Test(presence, restarted_node_starts_empty_under_its_new_incarnation)
{
    psim s;
    psim_init(&s, 9, 0.0, 10);
    cr_assert_eq(hm_presence_register(s.node[2], "carol", s.now), HM_OK);
    drain(&s, 2);
    run_until(&s, 50);
    hm_presence_destroy(s.node[2]);
    start_node(&s, 2, 900);
    cr_assert_eq(hm_presence_register(s.node[2], "dave", s.now), HM_OK);
    for (int i = 0; i < N; i++)
        if (i != 2) {
            hm_presence_on_node_gone(s.node[i], "n2", 102);
            hm_presence_on_link_up(s.node[i], "n2", s.now);
            hm_presence_on_link_up(s.node[2], s.name[i], s.now);
            drain(&s, i);
        }
    drain(&s, 2);
    run_until(&s, 200);
    char at[HM_NODE_NAME_MAX + 1];
    cr_expect_eq(hm_presence_lookup(s.node[0], "carol", at), HM_ENOTFOUND);
    cr_assert_eq(hm_presence_lookup(s.node[0], "dave", at), HM_OK);
    cr_expect_str_eq(at, "n2");
    psim_fini(&s);
}

Test(presence, late_joiner_receives_every_origin_by_snapshot)
{
    psim s;
    psim_init(&s, 13, 0.0, 10);
    /* n4 is not running yet; the others register while it is away. */
    hm_presence_destroy(s.node[4]);
    s.up[4] = false;
    for (int i = 0; i < N; i++)
        if (i != 4)
            hm_presence_on_link_down(s.node[i], "n4");
    for (int k = 0; k < 8; k++) {
        cr_assert_eq(hm_presence_register(s.node[k % 4], pool(k), s.now),
                     HM_OK);
        drain(&s, k % 4);
    }
    run_until(&s, 100);
    start_node(&s, 4, 555);
    link_all(&s);
    run_until(&s, 200);
    for (int k = 0; k < 8; k++) {
        char at[HM_NODE_NAME_MAX + 1];
        cr_assert_eq(hm_presence_lookup(s.node[4], pool(k), at), HM_OK);
        cr_expect_eq(at[1] - '0', k % 4);
    }
    psim_fini(&s);
}

/* ----------------------------------------------- single-node unit tests */

static hm_presence *registry(const char *name)
{
    hm_presence *p = NULL;
    cr_assert_eq(hm_presence_create(&(hm_presence_config){.self_name = name,
                                                          .self_inc = 1},
                                    &p),
                 HM_OK);
    return p;
}

Test(presence, registering_a_name_twice_on_one_node_is_refused)
{
    hm_presence *p = registry("a");
    cr_expect_eq(hm_presence_register(p, "x", 0), HM_OK);
    cr_expect_eq(hm_presence_register(p, "x", 0), HM_EEXIST);
    cr_expect_eq(hm_presence_unregister(p, "y", 0), HM_ENOTFOUND);
    cr_expect_eq(hm_presence_register(p, "", 0), HM_EINVAL);
    cr_expect_eq(hm_presence_register(p, "\xff\xfe", 0), HM_EINVAL);
    hm_presence_destroy(p);
}

static hm_wire_msg delta(const char *origin, uint64_t inc, uint64_t ver,
                         bool add, const char *name)
{
    hm_wire_msg w = {.type = HM_WIRE_PRES_DELTA};
    strcpy(w.u.pres_delta.at.origin, origin);
    w.u.pres_delta.at.inc = inc;
    w.u.pres_delta.at.version = ver;
    w.u.pres_delta.add = add;
    w.u.pres_delta.name = (char *)name;
    return w;
}

Test(presence, delta_after_a_gap_asks_the_sender_for_a_snapshot)
{
    hm_presence *p = registry("a");
    hm_presence_action act;
    hm_wire_msg w = delta("b", 5, 1, true, "x");
    cr_assert_eq(hm_presence_on_message(p, "b", &w, 0), HM_OK);
    w = delta("b", 5, 3, true, "z");
    cr_assert_eq(hm_presence_on_message(p, "b", &w, 1), HM_OK);
    cr_assert(hm_presence_next_action(p, &act));
    cr_expect_eq(act.msg.type, HM_WIRE_PRES_REQUEST);
    cr_expect_str_eq(act.peer, "b");
    cr_expect_str_eq(act.msg.u.pres_request.origin, "b");
    hm_wire_msg_fini(&act.msg);
    cr_expect_eq(hm_presence_count(p, "b"), 1, "the gapped delta applied");
    hm_presence_destroy(p);
}

Test(presence, name_on_two_nodes_resolves_to_the_smallest_origin)
{
    hm_presence *p = registry("m");
    char at[HM_NODE_NAME_MAX + 1];
    hm_wire_msg w = delta("z", 5, 1, true, "x");
    cr_assert_eq(hm_presence_on_message(p, "z", &w, 0), HM_OK);
    w = delta("b", 5, 1, true, "x");
    cr_assert_eq(hm_presence_on_message(p, "b", &w, 0), HM_OK);
    cr_assert_eq(hm_presence_lookup(p, "x", at), HM_OK);
    cr_expect_str_eq(at, "b");
    cr_assert_eq(hm_presence_register(p, "x", 0), HM_OK);
    cr_assert_eq(hm_presence_lookup(p, "x", at), HM_OK);
    cr_expect_str_eq(at, "m", "a local registration wins locally");
    hm_presence_destroy(p);
}

Test(presence, digest_showing_a_newer_version_triggers_one_request)
{
    hm_presence *p = registry("a");
    hm_presence_action act;
    hm_wire_version v = {.origin = "c", .inc = 2, .version = 9};
    hm_wire_msg d = {.type = HM_WIRE_PRES_DIGEST,
                     .u.pres_digest = {.entries = &v, .count = 1}};
    cr_assert_eq(hm_presence_on_message(p, "b", &d, 0), HM_OK);
    cr_assert_eq(hm_presence_on_message(p, "b", &d, 10), HM_OK);
    cr_assert(hm_presence_next_action(p, &act));
    cr_expect_eq(act.msg.type, HM_WIRE_PRES_REQUEST);
    cr_expect_str_eq(act.peer, "b");
    hm_wire_msg_fini(&act.msg);
    cr_expect_not(hm_presence_next_action(p, &act),
                  "a second request within request_retry_ms");
    hm_presence_destroy(p);
}
