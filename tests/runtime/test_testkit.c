/* tests/runtime/test_testkit.c: testing one receiver in isolation, with the
 * receivers it talks to mocked. The receiver under test is a small "greeter"
 * that, for each name it is sent, asks "directory" for a nickname (a
 * request) and sends a greeting to "log". */
#include "runtime/testkit.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static const hm_type GREET = {.name = "g.greet"};
static const hm_type NICK = {.name = "g.nick"};
static const hm_type LINE = {.name = "g.line"};
static const hm_type PING = {.name = "g.ping"};

static void on_nick(hm_ctx *ctx, void *state, hm_msg *reply, hm_err err,
                    void *arg)
{
    (void)state;
    (void)arg;
    uint64_t code = err == HM_OK ? hm_msg_arg(reply) : 0;
    hm_ctx_send_name(ctx, "log", hm_msg_create(&LINE, NULL, code));
}

static hm_err greeter(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_addr *dir;

    (void)state;
    if (hm_msg_type(msg) == &PING)
        return hm_ctx_reply(ctx, msg, hm_msg_create(&PING, NULL, 1));
    hm_runtime_intern(hm_ctx_runtime(ctx), "directory", &dir);
    hm_err err = hm_ctx_request(ctx, dir,
                                hm_msg_create(&NICK, NULL, hm_msg_arg(msg)),
                                50, on_nick, NULL, NULL);
    hm_addr_release(dir);
    return err;
}

static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    (void)arg;
    (void)name;
    *out = (hm_receiver){.handler = greeter};
    return HM_OK;
}

static hm_msg *directory_answers(void *arg, const char *mock,
                                 const hm_msg *request)
{
    (void)arg;
    if (strcmp(mock, "directory") != 0)
        return NULL;
    return hm_msg_create(&NICK, NULL, hm_msg_arg(request) + 100);
}

Test(testkit, captures_what_the_receiver_sends_to_mocks)
{
    hm_testkit *kit = hm_testkit_create("greeter", factory, NULL);

    hm_testkit_on_request(kit, directory_answers, NULL);
    cr_assert_eq(hm_testkit_send(kit, hm_msg_create(&GREET, NULL, 7)), HM_OK);
    cr_assert_eq(hm_testkit_captured_count(kit), 2);
    cr_assert_str_eq(hm_testkit_captured_to(kit, 0), "directory");
    cr_assert_eq(hm_msg_type(hm_testkit_captured(kit, 0)), &NICK);
    cr_assert_str_eq(hm_testkit_captured_to(kit, 1), "log");
    cr_assert_eq(hm_msg_arg(hm_testkit_captured(kit, 1)), 107);
    hm_testkit_destroy(kit);
}

Test(testkit, an_unanswered_mock_lets_the_request_time_out_on_the_manual_clock)
{
    hm_testkit *kit = hm_testkit_create("greeter", factory, NULL);

    hm_testkit_send(kit, hm_msg_create(&GREET, NULL, 7));
    cr_assert_eq(hm_testkit_captured_count(kit), 1); /* only the request */
    hm_testkit_advance(kit, 49);
    cr_assert_eq(hm_testkit_captured_count(kit), 1);
    hm_testkit_advance(kit, 1);
    cr_assert_eq(hm_testkit_captured_count(kit), 2);
    cr_assert_eq(hm_msg_arg(hm_testkit_captured(kit, 1)), 0);
    hm_testkit_destroy(kit);
}

Test(testkit, a_request_to_the_receiver_under_test_is_answered_to_the_client)
{
    hm_testkit *kit = hm_testkit_create("greeter", factory, NULL);
    uint64_t id;

    cr_assert_eq(hm_testkit_request(kit, hm_msg_create(&PING, NULL, 0), &id),
                 HM_OK);
    cr_assert_eq(hm_testkit_captured_count(kit), 1);
    cr_assert_str_eq(hm_testkit_captured_to(kit, 0), "test/client");
    cr_assert_eq(hm_msg_req_id(hm_testkit_captured(kit, 0)), id);
    cr_assert(hm_msg_is_reply(hm_testkit_captured(kit, 0)));
    hm_testkit_clear(kit);
    cr_assert_eq(hm_testkit_captured_count(kit), 0);
    hm_testkit_destroy(kit);
}
