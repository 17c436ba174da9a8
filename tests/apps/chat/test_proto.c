/* tests/apps/chat/test_proto.c: the chat protocol codec, the internal
 * message codec and the roster, pure (no sockets, no threads). */
#include "apps/chat/note.h"
#include "apps/chat/proto.h"
#include "apps/chat/roster.h"
#include "apps/chat/server.h"

#include "net/hp.h"
#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

/* Parses `data_text` (JSON, or NULL for absent data) as command `type`. */
static hm_err parse(const char *type, const char *data_text, chat_cmd *cmd,
                    chat_fail *fail)
{
    json_t *data = data_text ? json_loads(data_text, 0, NULL) : NULL;
    hm_err err;

    cr_assert(!data_text || data, "bad test JSON: %s", data_text);
    err = chat_cmd_parse(type, data, 9, cmd, fail);
    json_decref(data);
    return err;
}

static chat_err fail_code(const char *type, const char *data_text)
{
    chat_cmd cmd;
    chat_fail fail;

    cr_assert_eq(parse(type, data_text, &cmd, &fail), HM_EPROTO,
                 "accepted %s %s", type, data_text);
    return fail.code;
}

Test(chat_proto, login_names_the_user)
{
    chat_cmd cmd;
    chat_fail fail;

    cr_assert_eq(parse("chat.login", "{\"user\":\"alice\"}", &cmd, &fail),
                 HM_OK);
    cr_assert_eq(cmd.kind, CHAT_CMD_LOGIN);
    cr_assert_eq(cmd.id, 9);
    cr_assert_str_eq(cmd.name, "alice");
}

Test(chat_proto, a_direct_message_carries_recipient_and_text)
{
    chat_cmd cmd;
    chat_fail fail;

    cr_assert_eq(parse("chat.msg", "{\"to\":\"bob\",\"text\":\"hi \\u00e9\"}",
                       &cmd, &fail),
                 HM_OK);
    cr_assert_str_eq(cmd.name, "bob");
    cr_assert_str_eq(cmd.text, "hi \xc3\xa9");
}

Test(chat_proto, who_without_a_room_and_rooms_without_data_parse)
{
    chat_cmd cmd;
    chat_fail fail;

    cr_assert_eq(parse("chat.who", NULL, &cmd, &fail), HM_OK);
    cr_assert_str_eq(cmd.room, "");
    cr_assert_eq(parse("chat.rooms", "{}", &cmd, &fail), HM_OK);
    cr_assert_eq(cmd.kind, CHAT_CMD_ROOMS);
}

Test(chat_proto, an_unknown_command_is_unknown_command)
{
    cr_assert_eq(fail_code("chat.teleport", "{}"), CHAT_ERR_UNKNOWN_COMMAND);
}

Test(chat_proto, data_that_is_not_an_object_is_bad_request)
{
    cr_assert_eq(fail_code("chat.join", "[\"lobby\"]"), CHAT_ERR_BAD_REQUEST);
}

Test(chat_proto, a_missing_or_mistyped_field_is_bad_request)
{
    cr_assert_eq(fail_code("chat.login", "{}"), CHAT_ERR_BAD_REQUEST);
    cr_assert_eq(fail_code("chat.join", "{\"room\":7}"), CHAT_ERR_BAD_REQUEST);
    cr_assert_eq(fail_code("chat.msg", "{\"to\":\"bob\"}"),
                 CHAT_ERR_BAD_REQUEST);
    cr_assert_eq(fail_code("chat.say", "{\"room\":\"a\",\"text\":\"\"}"),
                 CHAT_ERR_BAD_REQUEST);
}

Test(chat_proto, names_outside_the_alphabet_or_too_long_are_bad_name)
{
    cr_assert_eq(fail_code("chat.login", "{\"user\":\"a b\"}"),
                 CHAT_ERR_BAD_NAME);
    cr_assert_eq(fail_code("chat.login", "{\"user\":\"\"}"), CHAT_ERR_BAD_NAME);
    cr_assert_eq(fail_code("chat.join", "{\"room\":\"a/b\"}"),
                 CHAT_ERR_BAD_NAME);
    cr_assert_eq(
        fail_code("chat.login",
                  "{\"user\":\"abcdefghijklmnopqrstuvwxyz0123456\"}"),
        CHAT_ERR_BAD_NAME);
}

Test(chat_proto, text_of_exactly_the_limit_passes_and_one_more_byte_fails)
{
    char data[CHAT_MAX_TEXT + 64];
    char text[CHAT_MAX_TEXT + 2];
    chat_cmd cmd;
    chat_fail fail;

    memset(text, 'x', CHAT_MAX_TEXT);
    text[CHAT_MAX_TEXT] = '\0';
    snprintf(data, sizeof data, "{\"to\":\"b\",\"text\":\"%s\"}", text);
    cr_assert_eq(parse("chat.msg", data, &cmd, &fail), HM_OK);
    cr_assert_eq(strlen(cmd.text), CHAT_MAX_TEXT);
    strcat(text, "x");
    snprintf(data, sizeof data, "{\"to\":\"b\",\"text\":\"%s\"}", text);
    cr_assert_eq(fail_code("chat.msg", data), CHAT_ERR_TEXT_TOO_LONG);
}

Test(chat_proto, an_encoded_command_decodes_to_the_same_command)
{
    chat_cmd in = {.kind = CHAT_CMD_SAY, .room = "lobby", .text = "hi all"};
    chat_cmd out;
    chat_fail fail;
    hm_hp_msg m;
    hm_hp_fail hfail;
    char *line;
    size_t len;

    cr_assert_eq(chat_encode(chat_cmd_name(in.kind), 4, chat_cmd_data(&in),
                             &line, &len),
                 HM_OK);
    cr_assert_eq(line[len - 1], '\n');
    cr_assert_eq(hm_hp_decode((uint8_t *)line, len - 1, &m, &hfail), HM_OK);
    cr_assert_eq(m.kind, HM_HP_MSG);
    cr_assert_eq(chat_cmd_parse(m.u.msg.type, m.u.msg.data, m.id, &out, &fail),
                 HM_OK);
    cr_assert_eq(out.kind, CHAT_CMD_SAY);
    cr_assert_eq(out.id, 4);
    cr_assert_str_eq(out.room, "lobby");
    cr_assert_str_eq(out.text, "hi all");
    hm_hp_msg_fini(&m);
    hm_free(line);
}

Test(chat_proto, an_error_line_names_its_code_and_answers_its_id)
{
    const char *want = "{\"v\":1,\"type\":\"msg\",\"id\":12,\"body\":{"
                       "\"type\":\"chat.error\",\"data\":{\"code\":"
                       "\"name_taken\",\"reason\":\"taken\"}}}\n";
    char *line;
    size_t len;

    cr_assert_eq(chat_encode_error(12, CHAT_ERR_NAME_TAKEN, "taken", &line,
                                   &len),
                 HM_OK);
    /* The line is bytes and a length, not a C string. */
    cr_assert_eq(len, strlen(want));
    cr_assert_eq(memcmp(line, want, len), 0);
    hm_free(line);
}

Test(chat_proto, error_names_round_trip_and_unknown_ones_are_internal)
{
    for (int c = 0; c < CHAT_ERR_COUNT; c++)
        cr_assert_eq(chat_err_parse(chat_err_name((chat_err)c)), c);
    cr_assert_eq(chat_err_parse("no_such_code"), CHAT_ERR_INTERNAL);
}

/* ------------------------------------------------------ the note codec */

Test(chat_note, a_note_survives_the_codec_with_every_field)
{
    hm_msg *m = chat_note_msg(&chat_join_type, "alice", "lobby", "hi");
    chat_note *n = hm_msg_payload(m);
    json_t *j;
    void *back;
    chat_note *b;

    chat_note_set(&n->node, "n1");
    n->list = json_pack("[s,s]", "a", "b");
    j = chat_join_type.to_json(n);
    cr_assert_eq(chat_join_type.from_json(j, &back), HM_OK);
    b = back;
    cr_assert_str_eq(b->user, "alice");
    cr_assert_str_eq(b->room, "lobby");
    cr_assert_str_eq(b->text, "hi");
    cr_assert_str_eq(b->node, "n1");
    cr_assert(json_equal(b->list, n->list));
    cr_assert_null(b->code);
    chat_note_free(b);
    json_decref(j);
    hm_msg_destroy(m);
}

Test(chat_note, a_note_with_a_mistyped_or_oversized_field_is_refused)
{
    json_t *j = json_pack("{s:i}", "user", 7);
    char big[CHAT_MAX_NAME + 2];
    void *out;

    cr_assert_eq(chat_dm_type.from_json(j, &out), HM_EPROTO);
    json_decref(j);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    j = json_pack("{s:s}", "room", big);
    cr_assert_eq(chat_dm_type.from_json(j, &out), HM_EPROTO);
    json_decref(j);
    j = json_pack("{s:s}", "list", "not a list");
    cr_assert_eq(chat_dm_type.from_json(j, &out), HM_EPROTO);
    json_decref(j);
    /* Found by fuzz/fuzz_chat_note.c: went on to clients as "users". */
    j = json_pack("{s:[s,b]}", "list", "alice", 1);
    cr_assert_eq(chat_dm_type.from_json(j, &out), HM_EPROTO);
    json_decref(j);
}

/* ------------------------------------------------------------- roster */

static void count_name(void *arg, const char *name)
{
    (*(int *)arg)++;
    cr_assert(name[0]);
}

Test(chat_roster, names_keep_their_joining_order_and_are_unique)
{
    chat_roster r;
    json_t *names;

    chat_roster_init(&r);
    cr_assert(chat_roster_add(&r, "c", "n1"));
    cr_assert(chat_roster_add(&r, "a", "n2"));
    cr_assert_not(chat_roster_add(&r, "c", "n3"));
    names = chat_roster_names(&r);
    cr_assert_str_eq(json_string_value(json_array_get(names, 0)), "c");
    cr_assert_str_eq(json_string_value(json_array_get(names, 1)), "a");
    cr_assert_eq(json_array_size(names), 2);
    json_decref(names);
    chat_roster_fini(&r);
}

Test(chat_roster, removing_a_node_removes_exactly_its_names)
{
    chat_roster r;
    int seen = 0;

    chat_roster_init(&r);
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", i);
        chat_roster_add(&r, name, i % 2 ? "odd" : "even");
    }
    cr_assert_eq(chat_roster_remove_node(&r, "odd", count_name, &seen), 10);
    cr_assert_eq(seen, 10);
    cr_assert_eq(r.count, 10);
    cr_assert(chat_roster_has(&r, "u0"));
    cr_assert_not(chat_roster_has(&r, "u1"));
    cr_assert(chat_roster_remove(&r, "u0"));
    cr_assert_not(chat_roster_remove(&r, "u0"));
    chat_roster_fini(&r);
}

/* ------------------------------------------------------ host and port */

Test(chat_hostport, ipv4_ipv6_and_names_split_into_host_and_port)
{
    char host[64];
    int port;

    cr_assert_eq(chat_parse_hostport("127.0.0.1:7001", host, sizeof host,
                                     &port),
                 HM_OK);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 7001);
    cr_assert_eq(chat_parse_hostport("[::1]:0", host, sizeof host, &port),
                 HM_OK);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 0);
    cr_assert_eq(chat_parse_hostport("localhost:80", host, sizeof host,
                                     &port),
                 HM_OK);
    cr_assert_str_eq(host, "localhost");
}

Test(chat_hostport, a_missing_or_bad_port_or_host_is_refused)
{
    char host[8];
    int port;

    cr_assert_eq(chat_parse_hostport("7001", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(chat_parse_hostport(":7001", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(chat_parse_hostport("h:", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(chat_parse_hostport("h:65536", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(chat_parse_hostport("h:12x", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(chat_parse_hostport("[::1:80", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(chat_parse_hostport("averylonghost:80", host, sizeof host,
                                     &port),
                 HM_EINVAL);
    /* Found by fuzz/fuzz_cmdline.c: taken here, refused by --join (the
     * grammar is the cluster's now; tests/cluster/test_options.c has the
     * rest). */
    cr_assert_eq(chat_parse_hostport("a:b:80", host, sizeof host, &port),
                 HM_EINVAL);
}
