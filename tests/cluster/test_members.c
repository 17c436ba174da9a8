/* tests/cluster/test_members.c: membership and failure detection, driven by
 * a fake clock over the simulated network of sim_members.h. Times asserted
 * here are simulated milliseconds, not wall-clock time. */
#include "sim_members.h"

#include "runtime/log.h"

static void quiet(void)
{
    hm_log_set_level(HM_LOG_LEVEL_ERROR);
}

/* A cluster of n nodes, formed, with default timers. */
static void formed(sim *s, int n, const hm_members_config *timers)
{
    sim_init(s, n, timers);
    sim_run(s, 2000, 5);
    cr_assert(sim_all_alive(s), "the cluster did not form");
}

TestSuite(members, .init = quiet);

Test(members, nodes_seeded_with_one_node_form_a_full_mesh)
{
    sim s;
    sim_init(&s, 5, NULL);
    sim_run(&s, 2000, 5);
    cr_expect(sim_all_alive(&s));
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            cr_expect(i == j || s.linked[i][j], "n%d has no link to n%d", i, j);
    sim_fini(&s);
}

Test(members, crashed_node_is_seen_dead_by_all_within_100ms)
{
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    sim_crash(&s, 2);
    sim_run(&s, t0 + 1000, 1);
    for (int i = 0; i < 2; i++) {
        uint64_t t = sim_first(&s, i, HM_MEMBER_EV_DEAD, 2, t0);
        cr_log_info("crash: n%d saw n2 dead after %llu ms", i,
                    (unsigned long long)(t - t0));
        cr_expect(t != UINT64_MAX && t - t0 < 100,
                  "n%d saw n2 dead after %llu ms", i,
                  (unsigned long long)(t - t0));
    }
    sim_fini(&s);
}

Test(members, crash_is_confirmed_by_peers_even_without_refusal)
{
    /* A host that vanished with its process: links drop, dials time out. */
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    int dead[] = {2}, rest[] = {0, 1};
    sim_cut(&s, dead, 1, rest, 2, true);
    s.linked[0][2] = s.linked[1][2] = false;
    hm_members_on_link_down(s.node[0], "n2", s.now);
    hm_members_on_link_down(s.node[1], "n2", s.now);
    sim_drain(&s, 0);
    sim_drain(&s, 1);
    sim_run(&s, t0 + 1000, 1);
    cr_expect_lt(sim_first(&s, 0, HM_MEMBER_EV_DEAD, 2, t0) - t0, 100);
    cr_expect_lt(sim_first(&s, 1, HM_MEMBER_EV_DEAD, 2, t0) - t0, 100);
    sim_fini(&s);
}

Test(members, silently_cut_off_node_is_seen_dead_within_3s)
{
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    int lost[] = {2}, rest[] = {0, 1};
    sim_cut(&s, lost, 1, rest, 2, true);
    sim_run(&s, t0 + 5000, 5);
    for (int i = 0; i < 2; i++) {
        uint64_t t = sim_first(&s, i, HM_MEMBER_EV_DEAD, 2, t0);
        cr_log_info("silent: n%d saw n2 dead after %llu ms", i,
                    (unsigned long long)(t - t0));
        cr_expect(t != UINT64_MAX && t - t0 <= 3000,
                  "n%d saw n2 dead after %llu ms", i,
                  (unsigned long long)(t - t0));
    }
    sim_fini(&s);
}

Test(members, node_cut_off_from_all_peers_declares_nobody_dead)
{
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    int lost[] = {2}, rest[] = {0, 1};
    sim_cut(&s, lost, 1, rest, 2, true);
    sim_run(&s, t0 + 10000, 5);
    cr_expect_eq(sim_first(&s, 2, HM_MEMBER_EV_DEAD, 0, t0), UINT64_MAX);
    cr_expect_eq(sim_first(&s, 2, HM_MEMBER_EV_DEAD, 1, t0), UINT64_MAX);
    cr_expect(hm_members_is_isolated(s.node[2], s.now));
    sim_fini(&s);
}

Test(members, minority_side_of_a_partition_evicts_nobody)
{
    sim s;
    formed(&s, 5, NULL);
    uint64_t t0 = s.now;
    int minority[] = {0, 1}, majority[] = {2, 3, 4};
    sim_cut(&s, minority, 2, majority, 3, true);
    sim_run(&s, t0 + 10000, 5);
    for (int i = 0; i < 2; i++)
        for (int j = 2; j < 5; j++)
            cr_expect_eq(sim_state(&s, i, j), HM_MEMBER_SUSPECT,
                         "n%d evicted n%d", i, j);
    for (int i = 2; i < 5; i++)
        for (int j = 0; j < 2; j++)
            cr_expect_eq(sim_state(&s, i, j), HM_MEMBER_DEAD, "n%d kept n%d", i,
                         j);
    sim_fini(&s);
}

Test(members, partition_heals_and_evicted_nodes_come_back)
{
    sim s;
    formed(&s, 5, &(hm_members_config){.dial_backoff_max_ms = 1000});
    uint64_t t0 = s.now;
    int minority[] = {0, 1}, majority[] = {2, 3, 4};
    sim_cut(&s, minority, 2, majority, 3, true);
    sim_run(&s, t0 + 6000, 5);
    sim_cut(&s, minority, 2, majority, 3, false);
    sim_run(&s, t0 + 20000, 5);
    cr_expect(sim_all_alive(&s));
    cr_expect_neq(sim_first(&s, 2, HM_MEMBER_EV_UP, 0, t0 + 6000), UINT64_MAX);
    sim_fini(&s);
}

Test(members, cut_off_node_healed_one_link_at_a_time_declares_nobody_dead)
{
    /* The netns partition test's sequence: n2 is cut off from both peers
     * long enough to be isolated (its suspects' silence passes
     * dead_after_ms while it has nobody to ask), then its links come back
     * one at a time. When n0 is heard again, n1 is still silent to n2 but
     * n0 hears it: n2 must ask n0, not take the round it could not hold
     * while cut off ("nobody to ask") as leave to declare n1 dead. */
    sim s;
    formed(&s, 3, &(hm_members_config){.dial_backoff_max_ms = 1000});
    uint64_t t0 = s.now;
    int lost[] = {2}, rest[] = {0, 1}, first[] = {0}, second[] = {1};
    sim_cut(&s, lost, 1, rest, 2, true);
    sim_run(&s, t0 + 6000, 5);
    cr_assert_eq(sim_state(&s, 0, 2), HM_MEMBER_DEAD);
    cr_assert_eq(sim_state(&s, 2, 1), HM_MEMBER_SUSPECT);
    sim_cut(&s, lost, 1, first, 1, false);
    sim_run(&s, t0 + 9000, 5);
    cr_expect_eq(sim_state(&s, 2, 0), HM_MEMBER_ALIVE, "n2 did not hear n0");
    cr_expect_eq(sim_first(&s, 2, HM_MEMBER_EV_DEAD, 1, t0), UINT64_MAX,
                 "n2 declared n1 dead while n0 heard it");
    sim_cut(&s, lost, 1, second, 1, false);
    sim_run(&s, t0 + 15000, 5);
    cr_expect(sim_all_alive(&s));
    cr_expect_eq(sim_first(&s, 2, HM_MEMBER_EV_DEAD, 1, t0), UINT64_MAX);
    cr_expect_eq(sim_first(&s, 2, HM_MEMBER_EV_DEAD, 0, t0), UINT64_MAX);
    sim_fini(&s);
}

Test(members, link_cut_between_two_nodes_only_kills_nobody)
{
    /* n0 and n1 lose their link; n2 still hears both, and says so. */
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    int a[] = {0}, b[] = {1};
    sim_cut(&s, a, 1, b, 1, true);
    sim_run(&s, t0 + 20000, 5);
    cr_expect_eq(sim_count(&s, HM_MEMBER_EV_DEAD), 0);
    cr_expect_eq(sim_state(&s, 0, 1), HM_MEMBER_SUSPECT);
    sim_fini(&s);
}

/* 60 simulated seconds of TCP with 5% segment loss and 50 ms delay. */
static void expect_no_false_death(int n, uint64_t seed)
{
    sim s;
    formed(&s, n, NULL);
    s.loss = 0.05;
    s.delay_ms = 50;
    s.rng = seed;
    uint64_t t0 = s.now;
    sim_run(&s, t0 + 60000, 5);
    cr_log_info("lossy: %d nodes, seed %llu: %zu suspicions, %zu deaths", n,
                (unsigned long long)seed, sim_count(&s, HM_MEMBER_EV_SUSPECT),
                sim_count(&s, HM_MEMBER_EV_DEAD));
    cr_expect_eq(sim_count(&s, HM_MEMBER_EV_DEAD), 0,
                 "%zu false deaths, %d nodes, seed %llu",
                 sim_count(&s, HM_MEMBER_EV_DEAD), n, (unsigned long long)seed);
    sim_fini(&s);
}

Test(members, no_false_death_in_60s_with_5pct_loss_and_50ms_delay)
{
    for (uint64_t seed = 1; seed <= 5; seed++) {
        expect_no_false_death(3, seed * 0x2545F4914F6CDD1Dull);
        expect_no_false_death(5, seed * 0x9E3779B97F4A7C15ull);
    }
}

Test(members, process_paused_for_2s_is_not_declared_dead)
{
    sim s;
    formed(&s, 3, NULL);
    s.delay_ms = 5;
    uint64_t t0 = s.now;
    s.paused[2] = true;
    sim_run(&s, t0 + 2000, 5);
    s.paused[2] = false;
    sim_run(&s, t0 + 10000, 5);
    cr_expect_eq(sim_count(&s, HM_MEMBER_EV_DEAD), 0);
    cr_expect(sim_all_alive(&s));
    sim_fini(&s);
}

Test(members, no_false_death_in_60s_with_5pct_of_messages_dropped_outright)
{
    /* Harsher than TCP: lost messages are never retransmitted. */
    for (uint64_t seed = 1; seed <= 5; seed++) {
        sim s;
        formed(&s, 5, NULL);
        s.drop = 0.05;
        s.delay_ms = 50;
        s.rng = seed * 0xD1B54A32D192ED03ull;
        sim_run(&s, s.now + 60000, 5);
        cr_log_info("drops: seed %llu: %zu suspicions, %zu deaths",
                    (unsigned long long)seed,
                    sim_count(&s, HM_MEMBER_EV_SUSPECT),
                    sim_count(&s, HM_MEMBER_EV_DEAD));
        cr_expect_eq(sim_count(&s, HM_MEMBER_EV_DEAD), 0, "seed %llu",
                     (unsigned long long)seed);
        sim_fini(&s);
    }
}

Test(members, two_node_cluster_sees_a_crash_through_the_refused_dial)
{
    sim s;
    formed(&s, 2, NULL);
    uint64_t t0 = s.now;
    sim_crash(&s, 1);
    sim_run(&s, t0 + 1000, 1);
    cr_expect_lt(sim_first(&s, 0, HM_MEMBER_EV_DEAD, 1, t0) - t0, 100);
    sim_fini(&s);
}

Test(members, two_node_cluster_sees_a_silent_peer_dead_after_dead_after_ms)
{
    sim s;
    formed(&s, 2, NULL);
    uint64_t t0 = s.now;
    int a[] = {0}, b[] = {1};
    sim_cut(&s, a, 1, b, 1, true);
    sim_run(&s, t0 + 5000, 5);
    uint64_t t = sim_first(&s, 0, HM_MEMBER_EV_DEAD, 1, t0);
    cr_expect(t != UINT64_MAX && t - t0 <= 3000, "dead after %llu ms",
              (unsigned long long)(t - t0));
    sim_fini(&s);
}

Test(members, restart_with_new_incarnation_ends_the_old_member)
{
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    sim_crash(&s, 2);
    sim_start(&s, 2, 5000);
    sim_run(&s, t0 + 3000, 5);
    cr_expect(sim_all_alive(&s));
    for (int i = 0; i < 2; i++) {
        hm_member_info info;
        cr_assert_eq(hm_members_get(s.node[i], "n2", &info), HM_OK);
        cr_expect_eq(info.inc, 5000);
        /* The old incarnation ended exactly once, then the new one came. */
        size_t ends = 0, ups = 0;
        for (size_t k = 0; k < s.evn; k++) {
            sim_event *e = &s.ev[k];
            if (e->observer != i || strcmp(e->subject, "n2") || e->at < t0)
                continue;
            ends += (e->ev == HM_MEMBER_EV_DEAD ||
                     e->ev == HM_MEMBER_EV_REPLACED) &&
                    e->inc == 1002;
            ups += e->ev == HM_MEMBER_EV_UP && e->inc == 5000;
        }
        cr_expect_eq(ends, 1, "n%d ended n2/1002 %zu times", i, ends);
        cr_expect_eq(ups, 1, "n%d saw n2/5000 up %zu times", i, ups);
    }
    sim_fini(&s);
}

Test(members, graceful_leave_is_left_and_never_dead)
{
    sim s;
    formed(&s, 3, NULL);
    uint64_t t0 = s.now;
    hm_members_leave(s.node[2], s.now);
    sim_drain(&s, 2);
    sim_run(&s, s.now + 20, 1);
    sim_crash(&s, 2); /* the process exits after its LEAVE lines went out */
    sim_run(&s, t0 + 5000, 5);
    cr_expect_eq(sim_state(&s, 0, 2), HM_MEMBER_LEFT);
    cr_expect_eq(sim_state(&s, 1, 2), HM_MEMBER_LEFT);
    cr_expect_eq(sim_count(&s, HM_MEMBER_EV_DEAD), 0);
    cr_expect_eq(sim_count(&s, HM_MEMBER_EV_SUSPECT), 0);
    sim_fini(&s);
}

/* --------------------------------------------- single-table unit tests */

static hm_members *table(const char *name)
{
    hm_members *m = NULL;
    cr_assert_eq(hm_members_create(&(hm_members_config){.self_name = name,
                                                        .self_addr = "h:1",
                                                        .self_inc = 10},
                                   &m),
                 HM_OK);
    return m;
}

/* Pops actions until one of `kind`; fails if there is none. */
static hm_member_action expect_action(hm_members *m, hm_member_action_kind kind)
{
    hm_member_action a;
    while (hm_members_next_action(m, &a)) {
        if (a.kind == kind)
            return a;
        hm_wire_msg_fini(&a.msg);
    }
    cr_assert_fail("no action of kind %d", kind);
    return a;
}

static void drop_actions(hm_members *m)
{
    hm_member_action a;
    while (hm_members_next_action(m, &a))
        hm_wire_msg_fini(&a.msg);
}

Test(members, link_with_older_incarnation_is_refused)
{
    hm_members *m = table("a");
    cr_expect_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    hm_members_on_link_down(m, "b", 10);
    cr_expect_eq(hm_members_on_link_up(m, "b", "h:2", 6, 20), HM_EPROTO);
    hm_members_destroy(m);
}

Test(members, link_to_a_node_with_our_own_name_is_refused)
{
    hm_members *m = table("a");
    cr_expect_eq(hm_members_on_link_up(m, "a", "h:9", 7, 0), HM_EINVAL);
    hm_members_destroy(m);
}

Test(members, higher_incarnation_emits_replaced_then_up)
{
    hm_members *m = table("a");
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    drop_actions(m);
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 8, 50), HM_OK);
    hm_member_action a = expect_action(m, HM_MACT_EVENT);
    cr_expect_eq(a.event, HM_MEMBER_EV_REPLACED);
    cr_expect_eq(a.inc, 7);
    a = expect_action(m, HM_MACT_EVENT);
    cr_expect_eq(a.event, HM_MEMBER_EV_UP);
    cr_expect_eq(a.inc, 8);
    hm_members_destroy(m);
}

Test(members, idle_link_gets_a_heartbeat_and_a_busy_one_does_not)
{
    hm_members *m = table("a");
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    cr_assert_eq(hm_members_on_link_up(m, "c", "h:3", 7, 0), HM_OK);
    drop_actions(m);
    hm_members_on_sent(m, "c", 200);
    hm_members_tick(m, 300);
    hm_member_action a = expect_action(m, HM_MACT_SEND);
    cr_expect_str_eq(a.peer, "b");
    cr_expect_eq(a.msg.type, HM_WIRE_HEARTBEAT);
    hm_wire_msg_fini(&a.msg);
    cr_expect_not(hm_members_next_action(m, &a), "c got a heartbeat too");
    hm_members_destroy(m);
}

Test(members, suspect_heard_again_is_alive)
{
    hm_members *m = table("a");
    hm_member_info info;
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    hm_members_tick(m, 1600);
    cr_assert_eq(hm_members_get(m, "b", &info), HM_OK);
    cr_expect_eq(info.state, HM_MEMBER_SUSPECT);
    hm_members_on_heard(m, "b", 1700);
    cr_assert_eq(hm_members_get(m, "b", &info), HM_OK);
    cr_expect_eq(info.state, HM_MEMBER_ALIVE);
    hm_members_destroy(m);
}

static hm_member_state state_of(hm_members *m, const char *name)
{
    hm_member_info info;
    cr_assert_eq(hm_members_get(m, name, &info), HM_OK);
    return info.state;
}

Test(members, own_stall_suspects_nobody_but_silence_while_running_does)
{
    hm_members *m = table("a");
    uint64_t t;

    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    for (t = 0; t <= 1000; t += 20)
        hm_members_tick(m, t);
    hm_members_on_heard(m, "b", 1000);
    /* This node does not run for 2 s (descheduled, stopped): its next
     * tick comes late, and b's lines wait behind it. */
    hm_members_tick(m, 3000);
    cr_expect_eq(state_of(m, "b"), HM_MEMBER_ALIVE);
    hm_members_on_heard(m, "b", 3000);
    /* b falls silent while this node runs: suspected after
     * suspect_after_ms (1500), as ever. */
    for (t = 3020; t < 4500; t += 20) {
        hm_members_tick(m, t);
        cr_assert_eq(state_of(m, "b"), HM_MEMBER_ALIVE, "suspected at %llu",
                     (unsigned long long)t);
    }
    hm_members_tick(m, 4500);
    cr_expect_eq(state_of(m, "b"), HM_MEMBER_SUSPECT);
    drop_actions(m);
    hm_members_destroy(m);
}

Test(members, probe_request_for_an_unlinked_target_is_answered_at_once)
{
    hm_members *m = table("a");
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    drop_actions(m);
    hm_wire_msg req = {.type = HM_WIRE_PROBE_REQ,
                       .u.probe_req = {.id = 42, .target = "zed"}};
    cr_assert_eq(hm_members_on_message(m, "b", &req, 10), HM_OK);
    hm_member_action a = expect_action(m, HM_MACT_SEND);
    cr_expect_eq(a.msg.type, HM_WIRE_PROBE_ACK);
    cr_expect_eq(a.msg.u.probe_ack.id, 42);
    cr_expect_not(a.msg.u.probe_ack.heard);
    hm_members_destroy(m);
}

Test(members, duplicate_links_resolve_to_the_one_dialled_by_the_smaller_name)
{
    /* "a" dialled one link, "b" the other; both ends must keep a's. */
    /* At a: existing = a's own dial, new = b's dial -> keep existing. */
    cr_expect_not(hm_members_keep_new_link("a", "b", true, false));
    /* At a: existing = b's dial, new = a's own dial -> keep new. */
    cr_expect(hm_members_keep_new_link("a", "b", false, true));
    /* At b: existing = a's dial (not b's), new = b's -> keep existing. */
    cr_expect_not(hm_members_keep_new_link("b", "a", false, true));
    /* At b: existing = b's own dial, new = a's dial -> keep new. */
    cr_expect(hm_members_keep_new_link("b", "a", true, false));
    /* A reconnection from the same side replaces the stale link. */
    cr_expect(hm_members_keep_new_link("b", "a", true, true));
}

Test(members, gossiped_member_never_reached_is_forgotten_after_reap_time)
{
    hm_members *m = NULL;
    cr_assert_eq(hm_members_create(&(hm_members_config){.self_name = "a",
                                                        .self_addr = "h:1",
                                                        .self_inc = 10,
                                                        .reap_after_ms = 60000},
                                   &m),
                 HM_OK);
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:2", 7, 0), HM_OK);
    hm_wire_node ghost = {.name = "ghost", .addr = "h:9", .inc = 3};
    hm_wire_msg gossip = {.type = HM_WIRE_MEMBERS,
                          .u.members = {.nodes = &ghost, .count = 1}};
    cr_assert_eq(hm_members_on_message(m, "b", &gossip, 10), HM_OK);
    hm_member_info info;
    cr_assert_eq(hm_members_get(m, "ghost", &info), HM_OK);
    cr_expect_eq(info.state, HM_MEMBER_JOINING);
    for (uint64_t t = 100; t <= 61000; t += 100) {
        hm_members_on_heard(m, "b", t);
        hm_members_tick(m, t);
        drop_actions(m);
    }
    cr_expect_eq(hm_members_get(m, "ghost", &info), HM_ENOTFOUND);
    hm_members_destroy(m);
}

Test(members, live_list_is_sorted_and_includes_self_but_no_tombstones)
{
    hm_members *m = table("m");
    const char *live[8];
    cr_assert_eq(hm_members_on_link_up(m, "z", "h:2", 7, 0), HM_OK);
    cr_assert_eq(hm_members_on_link_up(m, "b", "h:3", 7, 0), HM_OK);
    cr_assert_eq(hm_members_on_link_up(m, "q", "h:4", 7, 0), HM_OK);
    hm_wire_msg leave = {.type = HM_WIRE_LEAVE, .u.leave.inc = 7};
    cr_assert_eq(hm_members_on_message(m, "q", &leave, 5), HM_OK);
    cr_assert_eq(hm_members_live(m, live, 8), 3);
    cr_expect_str_eq(live[0], "b");
    cr_expect_str_eq(live[1], "m");
    cr_expect_str_eq(live[2], "z");
    hm_members_destroy(m);
}
