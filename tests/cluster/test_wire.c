/* tests/cluster/test_wire.c: the cluster message codec. */
#include "cluster/wire.h"

#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <string.h>

static hm_err decode(const char *line, hm_wire_msg *out)
{
    return hm_wire_decode_line(line, strlen(line), out);
}

/* Encodes `m`, decodes the line, re-encodes: the lines must match. */
static void expect_round_trip(const hm_wire_msg *m)
{
    char *a, *b;
    hm_wire_msg back;
    cr_assert_eq(hm_wire_encode_line(m, &a), HM_OK, "type %d", m->type);
    cr_assert_eq(decode(a, &back), HM_OK, "%s", a);
    cr_expect_eq(back.type, m->type);
    cr_assert_eq(hm_wire_encode_line(&back, &b), HM_OK);
    cr_expect_str_eq(a, b);
    hm_wire_msg_fini(&back);
    hm_free(a);
    hm_free(b);
}

static hm_wire_node node(const char *name, uint64_t inc)
{
    hm_wire_node n = {.inc = inc};
    strcpy(n.name, name);
    strcpy(n.addr, "10.0.0.1:7946");
    return n;
}

Test(wire, handshake_and_membership_messages_round_trip)
{
    hm_wire_msg m;
    hm_wire_node nodes[2] = {node("a", 1), node("b.c-d_e", 1700000000000000)};

    m = (hm_wire_msg){.type = HM_WIRE_HELLO};
    strcpy(m.u.hello.cluster, "prod");
    m.u.hello.from = nodes[0];
    m.u.hello.proto_min = 1;
    m.u.hello.proto_max = 2;
    strcpy(m.u.hello.nonce, "00ff");
    expect_round_trip(&m);

    m = (hm_wire_msg){.type = HM_WIRE_CHALLENGE};
    strcpy(m.u.challenge.cluster, "prod");
    m.u.challenge.from = nodes[1];
    m.u.challenge.proto = 1;
    strcpy(m.u.challenge.nonce, "abcd");
    strcpy(m.u.challenge.proof, "0123456789abcdef");
    expect_round_trip(&m);

    m = (hm_wire_msg){.type = HM_WIRE_PROOF, .u.proof.proof = "beef"};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_HEARTBEAT, .u.heartbeat.reply = true};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_PROBE_REQ,
                      .u.probe_req = {.id = 7, .target = "n2"}};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_PROBE_ACK,
                      .u.probe_ack = {.id = 7, .target = "n2", .heard = true}};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_MEMBERS,
                      .u.members = {.nodes = nodes, .count = 2}};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_LEAVE, .u.leave.inc = 5};
    expect_round_trip(&m);
}

Test(wire, presence_and_routing_messages_round_trip)
{
    hm_wire_msg m;
    char *names[] = {"alice", "bob/\xc3\xa9t\xc3\xa9"};
    hm_wire_version vs[2] = {{.origin = "a", .inc = 3, .version = 9},
                             {.origin = "b", .inc = 4, .version = 0}};

    m = (hm_wire_msg){
        .type = HM_WIRE_PRES_DELTA,
        .u.pres_delta = {.at = vs[0], .add = false, .name = names[1]}};
    expect_round_trip(&m);
    m = (hm_wire_msg){
        .type = HM_WIRE_PRES_SNAPSHOT,
        .u.pres_snapshot = {
            .at = vs[1], .part = 1, .parts = 3, .names = names, .count = 2}};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_PRES_REQUEST,
                      .u.pres_request.origin = "a"};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_PRES_DIGEST,
                      .u.pres_digest = {.entries = vs, .count = 2}};
    expect_round_trip(&m);
    m = (hm_wire_msg){.type = HM_WIRE_ACK, .u.ack.seq = 77};
    expect_round_trip(&m);
    m = (hm_wire_msg){
        .type = HM_WIRE_ROUTED,
        .u.routed = {.seq = 78,
                     .body = json_pack("{s:i,s:s}", "v", 1, "type", "msg")}};
    expect_round_trip(&m);
    hm_wire_msg_fini(&m);
}

Test(wire, decoded_fields_match_the_line)
{
    hm_wire_msg m;
    cr_assert_eq(decode("{\"v\":1,\"t\":\"cl.members\",\"members\":["
                        "{\"node\":\"n1\",\"addr\":\"h:1\",\"inc\":5},"
                        "{\"node\":\"n2\",\"addr\":\"h:2\",\"inc\":6}]}",
                        &m),
                 HM_OK);
    cr_assert_eq(m.u.members.count, 2);
    cr_expect_str_eq(m.u.members.nodes[1].name, "n2");
    cr_expect_str_eq(m.u.members.nodes[1].addr, "h:2");
    cr_expect_eq(m.u.members.nodes[1].inc, 6);
    hm_wire_msg_fini(&m);
}

Test(wire, unknown_type_is_not_found_so_the_caller_can_route_it)
{
    hm_wire_msg m;
    cr_expect_eq(decode("{\"v\":1,\"t\":\"chat.say\"}", &m), HM_ENOTFOUND);
}

Test(wire, malformed_lines_are_protocol_errors)
{
    static const char *const bad[] = {
        "",
        "[1,2]",
        "{\"v\":1}",
        "{\"v\":2,\"t\":\"cl.hb\",\"reply\":false}",
        "{\"t\":\"cl.hb\",\"reply\":false}",
        "{\"v\":1,\"t\":\"cl.hb\"}",
        "{\"v\":1,\"t\":\"cl.hb\",\"reply\":1}",
        "{\"v\":1,\"t\":\"cl.leave\",\"inc\":-1}",
        "{\"v\":1,\"t\":\"cl.leave\",\"inc\":9007199254740992}",
        "{\"v\":1,\"t\":\"cl.leave\",\"inc\":1.5}",
        "{\"v\":1,\"t\":\"cl.probe\",\"id\":1,\"target\":\"a b\"}",
        "{\"v\":1,\"t\":\"cl.probe\",\"id\":1,\"target\":\"\"}",
        "{\"v\":1,\"t\":\"cl.probe\",\"id\":1,\"target\":\"a\\u0000b\"}",
        "{\"v\":1,\"t\":\"cl.probe\",\"id\":1,\"target\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""
        "}",
        "{\"v\":1,\"t\":\"cl.proof\",\"proof\":\"ABCD\"}",
        "{\"v\":1,\"t\":\"cl.proof\",\"proof\":\"abc\"}",
        "{\"v\":1,\"t\":\"cl.pres\",\"origin\":\"a\",\"inc\":1,\"ver\":1,"
        "\"op\":\"put\",\"name\":\"x\"}",
        "{\"v\":1,\"t\":\"cl.pres_snap\",\"origin\":\"a\",\"inc\":1,\"ver\":1,"
        "\"names\":[\"x\",7]}",
        "{\"v\":1,\"t\":\"cl.members\",\"members\":[{\"node\":\"n1\","
        "\"addr\":\"h 1\",\"inc\":5}]}",
        "{\"v\":1,\"t\":\"cl.hello\",\"cluster\":\"c\",\"node\":\"a\","
        "\"addr\":\"h:1\",\"inc\":1,\"proto\":[2,1],\"nonce\":\"ab\"}",
        "{\"v\":1,\"t\":\"cl.hb\",\"reply\":true,\"reply\":false}",
        "{\"v\":1,\"t\":\"cl.msg\",\"seq\":0,\"msg\":{}}",
        "{\"v\":1,\"t\":\"cl.msg\",\"seq\":1,\"msg\":[]}",
        "{\"v\":1,\"t\":\"cl.ack\"}",
        "{\"v\":1,\"t\":\"cl.pres_snap\",\"origin\":\"a\",\"inc\":1,"
        "\"ver\":1,\"part\":2,\"parts\":2,\"names\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hm_wire_msg m = {0};
        cr_expect_eq(decode(bad[i], &m), HM_EPROTO, "accepted: %s", bad[i]);
        cr_expect_eq(m.type, 0, "wrote the output on error: %s", bad[i]);
    }
}

Test(wire, encoder_refuses_what_the_decoder_would_refuse)
{
    char *line = NULL;
    hm_wire_msg m = {.type = HM_WIRE_PROBE_REQ,
                     .u.probe_req = {.id = 1, .target = "has space"}};
    cr_expect_eq(hm_wire_encode_line(&m, &line), HM_EINVAL);
    m = (hm_wire_msg){.type = HM_WIRE_LEAVE,
                      .u.leave.inc = HM_WIRE_INT_MAX + 1};
    cr_expect_eq(hm_wire_encode_line(&m, &line), HM_EINVAL);
    m = (hm_wire_msg){.type = 99};
    cr_expect_eq(hm_wire_encode_line(&m, &line), HM_EINVAL);
    cr_expect_null(line);
}

Test(wire, unknown_fields_are_ignored)
{
    hm_wire_msg m;
    cr_assert_eq(decode("{\"v\":1,\"t\":\"cl.hb\",\"reply\":false,"
                        "\"future\":{\"x\":1}}",
                        &m),
                 HM_OK);
    cr_expect_eq(m.type, HM_WIRE_HEARTBEAT);
}

Test(wire, node_names_allow_only_the_documented_characters)
{
    cr_expect(hm_wire_name_is_valid("node-1.eu_west"));
    cr_expect_not(hm_wire_name_is_valid(""));
    cr_expect_not(hm_wire_name_is_valid("a/b"));
    cr_expect_not(hm_wire_name_is_valid("caf\xc3\xa9"));
}
