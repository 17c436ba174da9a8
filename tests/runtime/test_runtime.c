/* tests/runtime/test_runtime.c: receivers in deterministic manual mode:
 * activation, dead letters, become, failure, idle deactivation, timers,
 * bounds, fairness, spawn, counters and close. */
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const hm_type PING = {.name = "t.ping"};
static const hm_type FAIL = {.name = "t.fail"};
static const hm_type FLIP = {.name = "t.flip"};
static const hm_type STOP = {.name = "t.stop"};

/* What the receivers did, in order, as short strings. */
typedef struct journal {
    char lines[256][64];
    int count;
    int activations, deactivations, dead;
    hm_deactivate_reason last_reason;
    hm_err last_dead_reason;
    bool refuse; /* the factory refuses every name */
} journal;

static journal J;

static void note(const char *fmt, const char *a, unsigned long n)
{
    char line[160];

    snprintf(line, sizeof line, fmt, a, n);
    if (J.count < 256)
        snprintf(J.lines[J.count++], sizeof J.lines[0], "%.63s", line);
}

typedef struct rstate {
    char name[48];
    unsigned long seen;
} rstate;

static hm_err handle_b(hm_ctx *ctx, void *state, hm_msg *msg);

static hm_err handle_a(hm_ctx *ctx, void *state, hm_msg *msg)
{
    rstate *s = state;

    s->seen++;
    if (hm_msg_type(msg) == &FAIL)
        return HM_EPROTO;
    if (hm_msg_type(msg) == &FLIP)
        hm_ctx_become(ctx, handle_b, s);
    if (hm_msg_type(msg) == &STOP)
        hm_ctx_deactivate(ctx);
    note("%s a %lu", s->name, (unsigned long)hm_msg_arg(msg));
    return HM_OK;
}

static hm_err handle_b(hm_ctx *ctx, void *state, hm_msg *msg)
{
    rstate *s = state;

    (void)ctx;
    s->seen++;
    note("%s b %lu", s->name, (unsigned long)hm_msg_arg(msg));
    return HM_OK;
}

static void on_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    rstate *s = state;

    (void)ctx;
    J.deactivations++;
    J.last_reason = why;
    note("%s deactivated %lu", s->name, (unsigned long)why);
    free(s);
}

static const hm_hooks hooks = {.deactivate = on_deactivate};

static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    rstate *s;

    (void)arg;
    if (J.refuse || strncmp(name, "r/", 2) != 0)
        return HM_ENOTFOUND;
    s = calloc(1, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    J.activations++;
    *out = (hm_receiver){.handler = handle_a, .state = s, .hooks = &hooks};
    return HM_OK;
}

static void on_dead(void *arg, const char *to, const hm_msg *msg, hm_err why)
{
    (void)arg;
    (void)msg;
    J.dead++;
    J.last_dead_reason = why;
    note("dead %s %lu", to, (unsigned long)why);
}

static hm_runtime *rt;

static void setup(void)
{
    memset(&J, 0, sizeof J);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.manual = true,
                                                        .idle_timeout_ms = 800,
                                                        .factory = factory,
                                                        .dead_letter = on_dead},
                                   &rt),
                 HM_OK);
}

static void teardown(void)
{
    hm_runtime_destroy(rt);
}

static hm_addr *addr(const char *name)
{
    hm_addr *a;
    cr_assert_eq(hm_runtime_intern(rt, name, &a), HM_OK);
    return a;
}

static void send(hm_addr *a, const hm_type *t, uint64_t arg)
{
    cr_assert_eq(hm_runtime_send(rt, a, hm_msg_create(t, NULL, arg)), HM_OK);
}

TestSuite(runtime, .init = setup, .fini = teardown, .timeout = 10);

Test(runtime, the_first_message_activates_a_receiver_through_the_factory)
{
    hm_addr *a = addr("r/1");

    send(a, &PING, 7);
    cr_assert_eq(J.activations, 0); /* nothing runs until asked */
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.activations, 1);
    cr_assert_str_eq(J.lines[0], "r/1 a 7");
    hm_addr_release(a);
}

Test(runtime, later_messages_reuse_the_live_activation)
{
    hm_addr *a = addr("r/1");

    for (int i = 0; i < 10; i++)
        send(a, &PING, (uint64_t)i);
    hm_runtime_run_until_idle(rt);
    send(a, &PING, 10);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.activations, 1);
    cr_assert_eq(J.count, 11);
    hm_addr_release(a);
}

Test(runtime, messages_arrive_in_send_order)
{
    hm_addr *a = addr("r/1");

    for (int i = 0; i < 200; i++)
        send(a, &PING, (uint64_t)i);
    hm_runtime_run_until_idle(rt);
    for (int i = 0; i < 200; i++) {
        char want[64];
        snprintf(want, sizeof want, "r/1 a %d", i);
        cr_assert_str_eq(J.lines[i], want);
    }
    hm_addr_release(a);
}

Test(runtime, interning_a_name_twice_gives_the_same_handle)
{
    hm_addr *a = addr("r/x"), *b = addr("r/x"), *c = addr("r/y");

    cr_assert_eq(a, b);
    cr_assert_neq(a, c);
    cr_assert_str_eq(hm_addr_name(a), "r/x");
    hm_addr_release(a);
    hm_addr_release(b);
    hm_addr_release(c);
}

Test(runtime, bad_and_reserved_names_are_refused)
{
    hm_addr *a;
    char big[HM_ADDR_MAX_LEN + 2];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(hm_runtime_intern(rt, "", &a), HM_EINVAL);
    cr_assert_eq(hm_runtime_intern(rt, "$call/1", &a), HM_EINVAL);
    cr_assert_eq(hm_runtime_intern(rt, big, &a), HM_EINVAL);
}

Test(runtime, a_refused_activation_sends_the_message_to_dead_letters)
{
    hm_addr *a = addr("nobody/1");

    send(a, &PING, 1);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.dead, 1);
    cr_assert_eq(J.last_dead_reason, HM_ENOTFOUND);
    cr_assert_str_eq(J.lines[0], "dead nobody/1 6");
    hm_addr_release(a);
}

Test(runtime, send_by_name_activates_like_send_by_handle)
{
    cr_assert_eq(hm_runtime_send_name(rt, "r/n", hm_msg_create(&PING, NULL, 3)),
                 HM_OK);
    hm_runtime_run_until_idle(rt);
    cr_assert_str_eq(J.lines[0], "r/n a 3");
}

Test(runtime, become_switches_the_handler_for_following_messages)
{
    hm_addr *a = addr("r/1");

    send(a, &PING, 1);
    send(a, &FLIP, 2);
    send(a, &PING, 3);
    hm_runtime_run_until_idle(rt);
    cr_assert_str_eq(J.lines[0], "r/1 a 1");
    cr_assert_str_eq(J.lines[1], "r/1 a 2");
    cr_assert_str_eq(J.lines[2], "r/1 b 3");
    hm_addr_release(a);
}

Test(runtime, a_failing_handler_discards_the_activation_and_the_next_message_reactivates)
{
    hm_addr *a = addr("r/1"), *b = addr("r/2");

    send(a, &PING, 1);
    send(a, &FAIL, 2);
    send(b, &PING, 9);
    send(a, &PING, 3);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.activations, 3); /* r/1 twice, r/2 once */
    cr_assert_eq(J.deactivations, 1);
    cr_assert_eq(J.last_reason, HM_DEACTIVATE_ERROR);
    hm_runtime_stats st;
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.handler_errors, 1);
    hm_addr_release(a);
    hm_addr_release(b);
}

Test(runtime, a_receiver_can_ask_to_be_deactivated_after_a_message)
{
    hm_addr *a = addr("r/1");

    send(a, &STOP, 1);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.deactivations, 1);
    cr_assert_eq(J.last_reason, HM_DEACTIVATE_REQUESTED);
    send(a, &PING, 2);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(J.activations, 2);
    hm_addr_release(a);
}

Test(runtime, an_idle_receiver_is_deactivated_after_the_timeout_and_not_before)
{
    hm_addr *a = addr("r/1");

    send(a, &PING, 1);
    hm_runtime_run_until_idle(rt);
    hm_runtime_advance(rt, 700);
    cr_assert_eq(J.deactivations, 0);
    hm_runtime_advance(rt, 300); /* idle timeout 800 ms, sweep every 100 */
    cr_assert_eq(J.deactivations, 1);
    cr_assert_eq(J.last_reason, HM_DEACTIVATE_IDLE);
    hm_addr_release(a);
}

Test(runtime, traffic_keeps_a_receiver_active)
{
    hm_addr *a = addr("r/1");

    for (int i = 0; i < 20; i++) {
        send(a, &PING, (uint64_t)i);
        hm_runtime_advance(rt, 100);
    }
    cr_assert_eq(J.deactivations, 0);
    cr_assert_eq(J.activations, 1);
    hm_addr_release(a);
}

Test(runtime, a_timer_reactivates_a_deactivated_receiver)
{
    hm_addr *a = addr("r/1");

    send(a, &PING, 1);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(hm_runtime_send_after(rt, a, hm_msg_create(&PING, NULL, 2),
                                       2000, NULL),
                 HM_OK);
    hm_runtime_advance(rt, 1500);
    cr_assert_eq(J.deactivations, 1);
    hm_runtime_advance(rt, 600);
    cr_assert_eq(J.activations, 2);
    cr_assert_str_eq(J.lines[J.count - 1], "r/1 a 2");
    hm_addr_release(a);
}

Test(runtime, timers_fire_at_their_deadline_in_order)
{
    hm_addr *a = addr("r/1");

    hm_runtime_send_after(rt, a, hm_msg_create(&PING, NULL, 30), 30, NULL);
    hm_runtime_send_after(rt, a, hm_msg_create(&PING, NULL, 10), 10, NULL);
    hm_runtime_send_after(rt, a, hm_msg_create(&PING, NULL, 20), 20, NULL);
    hm_runtime_advance(rt, 9);
    cr_assert_eq(J.count, 0);
    hm_runtime_advance(rt, 1);
    cr_assert_eq(J.count, 1);
    hm_runtime_advance(rt, 20);
    cr_assert_str_eq(J.lines[0], "r/1 a 10");
    cr_assert_str_eq(J.lines[1], "r/1 a 20");
    cr_assert_str_eq(J.lines[2], "r/1 a 30");
    hm_addr_release(a);
}

Test(runtime, a_cancelled_timer_never_fires)
{
    hm_addr *a = addr("r/1");
    hm_timer_id id;

    hm_runtime_send_after(rt, a, hm_msg_create(&PING, NULL, 1), 50, &id);
    cr_assert(hm_runtime_cancel_timer(rt, id));
    cr_assert_not(hm_runtime_cancel_timer(rt, id));
    hm_runtime_advance(rt, 100);
    cr_assert_eq(J.count, 0);
    hm_addr_release(a);
}

Test(runtime, a_periodic_timer_ticks_until_cancelled)
{
    hm_addr *a = addr("r/1");
    hm_timer_id id;

    cr_assert_eq(hm_runtime_send_every(rt, a, 10, 77, &id), HM_OK);
    hm_runtime_advance(rt, 55);
    cr_assert_eq(J.count, 5);
    cr_assert_str_eq(J.lines[0], "r/1 a 77");
    cr_assert(hm_runtime_cancel_timer(rt, id));
    hm_runtime_advance(rt, 100);
    cr_assert_eq(J.count, 5);
    hm_addr_release(a);
}

static hm_err bounded_factory(void *arg, const char *name, hm_receiver *out)
{
    hm_err err = factory(arg, name, out);
    out->mailbox_limit = 3;
    return err;
}

Test(runtime, a_send_beyond_the_mailbox_bound_fails_with_efull)
{
    hm_runtime *r2;
    hm_addr *a;
    hm_msg *m = hm_msg_create(&PING, NULL, 0);

    hm_runtime_create(&(hm_runtime_config){.manual = true,
                                           .mailbox_limit = 3,
                                           .factory = bounded_factory},
                      &r2);
    hm_runtime_intern(r2, "r/1", &a);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(hm_runtime_send(r2, a, hm_msg_create(&PING, NULL, 0)),
                     HM_OK);
    cr_assert_eq(hm_runtime_send(r2, a, m), HM_EFULL);
    hm_runtime_run_until_idle(r2);
    cr_assert_eq(hm_runtime_send(r2, a, m), HM_OK); /* drained: room again */
    hm_runtime_run_until_idle(r2);
    hm_runtime_stats st;
    hm_runtime_stats_get(r2, &st);
    cr_assert_eq(st.delivered, 4);
    cr_assert_geq(st.mailbox_hwm, 3);
    hm_addr_release(a);
    hm_runtime_destroy(r2);
}

Test(runtime, a_busy_receiver_yields_after_a_batch)
{
    hm_addr *a = addr("r/a"), *b = addr("r/b");

    for (int i = 0; i < 200; i++)
        send(a, &PING, (uint64_t)i);
    send(b, &PING, 999);
    hm_runtime_run_until_idle(rt);
    /* r/b's one message is handled after r/a's first batch of 64, not
     * after all 200. */
    int pos = -1;
    for (int i = 0; i < J.count; i++)
        if (strcmp(J.lines[i], "r/b a 999") == 0)
            pos = i;
    cr_assert_eq(pos, 64);
    hm_addr_release(a);
    hm_addr_release(b);
}

static hm_err spawned_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)ctx;
    (void)state;
    note("%s spawned %lu", "s", (unsigned long)hm_msg_arg(msg));
    return HM_OK;
}

Test(runtime, spawn_installs_a_receiver_without_the_factory)
{
    hm_addr *s;

    cr_assert_eq(hm_runtime_spawn(rt, "svc/x",
                                  &(hm_receiver){.handler = spawned_handle},
                                  &s),
                 HM_OK);
    send(s, &PING, 5);
    hm_runtime_run_until_idle(rt);
    cr_assert_str_eq(J.lines[0], "s spawned 5");
    cr_assert_eq(J.activations, 0);
    cr_assert_eq(hm_runtime_spawn(rt, "svc/x",
                                  &(hm_receiver){.handler = spawned_handle},
                                  NULL),
                 HM_EEXIST);
    hm_addr_release(s);
}

Test(runtime, counters_count_what_happened)
{
    hm_addr *a = addr("r/1"), *n = addr("nobody/1");
    hm_runtime_stats st;

    send(a, &PING, 1);
    send(a, &PING, 2);
    send(n, &PING, 3);
    hm_runtime_send_after(rt, a, hm_msg_create(&PING, NULL, 4), 5, NULL);
    hm_runtime_advance(rt, 10);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.sent, 3);
    cr_assert_eq(st.delivered, 3);
    cr_assert_eq(st.activations, 1);
    cr_assert_eq(st.dead_letters, 1);
    cr_assert_eq(st.timers_fired, 1);
    cr_assert_eq(st.live, 1);
    cr_assert_geq(st.addresses, 2);
    hm_addr_release(a);
    hm_addr_release(n);
}

Test(runtime, unreferenced_inactive_addresses_are_reclaimed)
{
    hm_addr *a = addr("r/1");
    hm_runtime_stats st;

    send(a, &STOP, 1);
    hm_runtime_run_until_idle(rt);
    hm_addr_release(a);
    hm_runtime_advance(rt, 200); /* a sweep pass */
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.addresses, 0);
}

/* The directory's open-addressing table grows, and removals shift runs
 * back: after thousands of names come and go, every held name still finds
 * its own entry, and names that are prefixes of each other stay apart. */
Test(runtime, the_directory_keeps_held_names_through_growth_and_reclaim)
{
    enum { N = 6000 };
    static hm_addr *held[N];
    char name[1200];
    hm_runtime_stats st;
    uint64_t kept = 0;

    for (int i = 0; i < N; i++) {
        /* "r/<i>", and every 97th name longer than the slab's classes. */
        if (i % 97 == 0) {
            memset(name, 'x', 1000);
            snprintf(name + 1000, sizeof name - 1000, "/%d", i);
        } else {
            snprintf(name, sizeof name, "r/%d", i);
        }
        held[i] = addr(name);
        send(held[i], &STOP, (uint64_t)i); /* activates, then deactivates */
    }
    hm_runtime_run_until_idle(rt);
    for (int i = 0; i < N; i++) {
        if (i % 3 != 0) {
            hm_addr_release(held[i]);
            held[i] = NULL;
        }
    }
    hm_runtime_advance(rt, 200); /* a sweep pass reclaims two thirds */
    hm_runtime_stats_get(rt, &st);
    for (int i = 0; i < N; i++) {
        hm_addr *again;
        if (!held[i])
            continue;
        kept++;
        cr_assert_eq(hm_runtime_intern(rt, hm_addr_name(held[i]), &again),
                     HM_OK);
        cr_assert_eq(again, held[i], "%s", hm_addr_name(held[i]));
        hm_addr_release(again);
    }
    cr_assert_eq(st.addresses, kept);
    for (int i = 0; i < N; i++)
        hm_addr_release(held[i]);
    hm_runtime_advance(rt, 200);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.addresses, 0);
    cr_assert_eq(st.entry_bytes, 0);
}

Test(runtime, close_dead_letters_queued_messages_and_runs_every_hook)
{
    hm_addr *a = addr("r/1"), *b = addr("r/2");

    send(a, &PING, 1);
    send(b, &PING, 2);
    hm_runtime_run_until_idle(rt);
    send(a, &PING, 3); /* queued, never run */
    hm_addr_release(a);
    hm_addr_release(b);
    hm_runtime_destroy(rt);
    rt = NULL;
    cr_assert_eq(J.deactivations, 2);
    cr_assert_eq(J.last_reason, HM_DEACTIVATE_CLOSE);
    cr_assert_eq(J.dead, 1);
    cr_assert_eq(J.last_dead_reason, HM_ECLOSED);
}

static json_t *ping_to_json(const void *payload)
{
    return json_pack("{s:s}", "text", (const char *)payload);
}

static hm_err ping_from_json(const json_t *json, void **out)
{
    const char *text;
    if (json_unpack((json_t *)json, "{s:s}", "text", &text) != 0)
        return HM_EPROTO;
    *out = strdup(text);
    return HM_OK;
}

static const hm_type TEXT = {.name = "t.text",
                             .free = free,
                             .to_json = ping_to_json,
                             .from_json = ping_from_json};

Test(runtime, a_registered_type_round_trips_through_json)
{
    hm_msg *m = hm_msg_create(&TEXT, strdup("hello"), 9), *back;
    json_t *j;

    cr_assert_eq(hm_runtime_register_type(rt, &TEXT), HM_OK);
    cr_assert_eq(hm_msg_to_json(m, &j), HM_OK);
    cr_assert_eq(hm_msg_from_json(rt, "t.text", j, 9, &back), HM_OK);
    cr_assert_eq(hm_msg_type(back), &TEXT);
    cr_assert_str_eq(hm_msg_payload(back), "hello");
    cr_assert_eq(hm_msg_arg(back), 9);
    json_decref(j);
    hm_msg_destroy(m);
    hm_msg_destroy(back);
}

Test(runtime, decoding_an_unknown_type_or_bad_body_fails_cleanly)
{
    hm_msg *m;
    json_t *bad = json_pack("{s:i}", "text", 3);

    hm_runtime_register_type(rt, &TEXT);
    cr_assert_eq(hm_msg_from_json(rt, "no.such", bad, 0, &m), HM_ENOTFOUND);
    cr_assert_eq(hm_msg_from_json(rt, "t.text", bad, 0, &m), HM_EPROTO);
    hm_msg *plain = hm_msg_create(&PING, NULL, 0);
    cr_assert_eq(hm_msg_to_json(plain, &bad), HM_ECODEC);
    hm_msg_destroy(plain);
    json_decref(bad);
}

Test(runtime, registering_a_different_type_under_a_taken_name_fails)
{
    static const hm_type OTHER = {.name = "t.text"};

    cr_assert_eq(hm_runtime_register_type(rt, &TEXT), HM_OK);
    cr_assert_eq(hm_runtime_register_type(rt, &TEXT), HM_OK);
    cr_assert_eq(hm_runtime_register_type(rt, &OTHER), HM_EEXIST);
}

static void collect(void *arg, const char *name)
{
    char *out = arg;
    strcat(out, name);
    strcat(out, ";");
}

Test(runtime, deactivate_from_outside_ends_an_activation_after_queued_messages)
{
    hm_addr *a = addr("r/1");
    char names[256] = "";

    send(a, &PING, 1);
    cr_assert_eq(hm_runtime_deactivate(rt, a), HM_OK);
    send(a, &PING, 2);
    hm_runtime_run_until_idle(rt);
    cr_assert_str_eq(J.lines[0], "r/1 a 1");
    cr_assert_str_eq(J.lines[1], "r/1 deactivated 1");
    cr_assert_str_eq(J.lines[2], "r/1 a 2");
    cr_assert_eq(J.activations, 2);
    hm_runtime_foreach_active(rt, collect, names);
    cr_assert_str_eq(names, "r/1;");
    hm_addr_release(a);
}
