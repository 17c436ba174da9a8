/* tests/apps/mqtt/test_session_msg.c: the connection <-> session messages
 * as they cross a cluster link (apps/mqtt/session_msg.h): every codec
 * round-trips its payload (binary bytes included), the decoders refuse bad
 * input with HM_EPROTO, base64 is strict and canonical, connection names
 * carry their node; a fail-over's restore crosses too (docs/adr/0265);
 * and a handoff's state record keeps packet ids, stages and order. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/outbox.h"
#include "apps/mqtt/session_msg.h"
#include "apps/mqtt/session_state.h"
#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

/* Encodes with `to`, serialises and parses the JSON (as a link does), then
 * decodes with `from`. */
static hm_err through_json(json_t *(*to)(const void *), hm_err (*from)(const json_t *, void **),
                           const void *payload, void **out)
{
    json_t *j = to(payload), *back;
    char *text;
    hm_err err;

    cr_assert_not_null(j);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    back = json_loads(text, 0, NULL);
    free(text);
    cr_assert_not_null(back);
    err = from(back, out);
    json_decref(back);
    return err;
}

static hm_err decode_text(hm_err (*from)(const json_t *, void **),
                          const char *text, void **out)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    hm_err err;

    cr_assert_not_null(j, "bad test JSON: %s", text);
    err = from(j, out);
    json_decref(j);
    return err;
}

Test(mqtt_session_msg, attach_round_trips_without_the_local_handle)
{
    mqtt_attach a = {.conn_name = "mqtt/conn/n1/7",
                     .ws = true,
                     .clean = false,
                     .username = "alice"};
    mqtt_attach *b;

    cr_assert_eq(through_json(mqtt_attach_to_json, mqtt_attach_from_json, &a,
                              (void **)&b),
                 HM_OK);
    cr_assert_null(b->conn);
    cr_assert_str_eq(b->conn_name, "mqtt/conn/n1/7");
    cr_assert(b->ws);
    cr_assert_not(b->clean);
    cr_assert_str_eq(b->username, "alice");
    mqtt_attach_type.free(b);
}

Test(mqtt_session_msg, attach_without_user_is_anonymous)
{
    mqtt_attach a = {.conn_name = "mqtt/conn/n1/7", .clean = true};
    mqtt_attach *b;

    cr_assert_eq(through_json(mqtt_attach_to_json, mqtt_attach_from_json, &a,
                              (void **)&b),
                 HM_OK);
    cr_assert_null(b->username);
    cr_assert(b->clean);
    mqtt_attach_type.free(b);
}

Test(mqtt_session_msg, blob_keeps_every_byte_value)
{
    uint8_t bytes[256];
    mqtt_blob *a, *b;

    for (int i = 0; i < 256; i++)
        bytes[i] = (uint8_t)(255 - i);
    for (size_t len = 0; len <= sizeof bytes; len += 1 + len / 3) {
        a = mqtt_blob_create(len % 2 ? "mqtt/conn/x/1" : NULL, bytes, len);
        cr_assert_eq(through_json(mqtt_blob_to_json, mqtt_blob_from_json, a,
                                  (void **)&b),
                     HM_OK);
        cr_assert_eq(b->len, len);
        cr_assert_eq(memcmp(b->data, bytes, len), 0);
        if (len % 2)
            cr_assert_str_eq(b->conn, "mqtt/conn/x/1");
        else
            cr_assert_null(b->conn);
        mqtt_blob_destroy(a);
        mqtt_blob_destroy(b);
    }
}

Test(mqtt_session_msg, ctl_round_trips_name_and_ids_sorted)
{
    mqtt_qos2_ids *ids = hm_calloc(1, sizeof *ids);
    mqtt_ctl *a, *b;

    mqtt_qos2_ids_receive(ids, 65535);
    mqtt_qos2_ids_receive(ids, 1);
    mqtt_qos2_ids_receive(ids, 300);
    a = mqtt_ctl_create("node-2", ids);
    cr_assert_eq(
        through_json(mqtt_ctl_to_json, mqtt_ctl_from_json, a, (void **)&b),
        HM_OK);
    cr_assert_str_eq(b->name, "node-2");
    cr_assert_eq(b->ids->count, 3);
    cr_assert_eq(b->ids->ids[0], 1);
    cr_assert_eq(b->ids->ids[1], 300);
    cr_assert_eq(b->ids->ids[2], 65535);
    mqtt_ctl_destroy(a);
    mqtt_ctl_destroy(b);
}

Test(mqtt_session_msg, ctl_decoder_sorts_and_dedups_ids_from_the_wire)
{
    mqtt_ctl *c;

    cr_assert_eq(decode_text(mqtt_ctl_from_json, "{\"ids\":[9,3,9,1]}",
                             (void **)&c),
                 HM_OK);
    cr_assert_null(c->name);
    cr_assert_eq(c->ids->count, 3);
    cr_assert_eq(c->ids->ids[0], 1);
    cr_assert_eq(c->ids->ids[2], 9);
    mqtt_ctl_destroy(c);
}

Test(mqtt_session_msg, empty_ack_outside_a_cluster_encodes)
{
    mqtt_ctl *c;

    cr_assert_eq(
        through_json(mqtt_ctl_to_json, mqtt_ctl_from_json, NULL, (void **)&c),
        HM_OK);
    cr_assert_null(c->name);
    cr_assert_null(c->ids);
    mqtt_ctl_destroy(c);
}

Test(mqtt_session_msg, pub_round_trips_binary_payload_qos_and_retain)
{
    const uint8_t payload[] = {0, 1, 0xff, '\n', 0x80};
    mqtt_pub *a = mqtt_pub_create("a/b/ü", strlen("a/b/ü"), payload,
                                  sizeof payload, 2, true);
    mqtt_pub *b;

    cr_assert_eq(
        through_json(mqtt_pub_to_json, mqtt_pub_from_json, a, (void **)&b),
        HM_OK);
    cr_assert_str_eq(b->topic, "a/b/ü");
    cr_assert_eq(b->payload_len, sizeof payload);
    cr_assert_eq(memcmp(b->payload, payload, sizeof payload), 0);
    cr_assert_eq(b->qos, 2);
    cr_assert(b->retain);
    mqtt_pub_release(a);
    mqtt_pub_release(b);
}

Test(mqtt_session_msg, handoff_round_trips)
{
    uint8_t state[] = {'H', 'M', 'Q', 'S', 0, 1, 2};
    mqtt_handoff a = {.client_id = "cid-1",
                      .from = "n3",
                      .conn = "mqtt/conn/n3/12",
                      .username = "u",
                      .ws = false,
                      .persistent = true,
                      .present = true,
                      .state = state,
                      .state_len = sizeof state};
    mqtt_handoff *b;

    cr_assert_eq(through_json(mqtt_handoff_to_json, mqtt_handoff_from_json,
                              &a, (void **)&b),
                 HM_OK);
    cr_assert_str_eq(b->conn, "mqtt/conn/n3/12");
    cr_assert_str_eq(b->client_id, "cid-1");
    cr_assert_str_eq(b->from, "n3");
    cr_assert_str_eq(b->username, "u");
    cr_assert(b->persistent);
    cr_assert(b->present);
    cr_assert_eq(b->state_len, sizeof state);
    cr_assert_eq(memcmp(b->state, state, sizeof state), 0);
    mqtt_handoff_destroy(b);
}

Test(mqtt_session_msg, restore_round_trips_with_its_inbound_ids)
{
    uint8_t record[] = {'H', 'M', 'Q', 'S', 0, 1, 2, 255};
    mqtt_restore a = {.record = record, .len = sizeof record, .adopt = true};
    mqtt_restore *b;

    mqtt_qos2_ids_receive(&a.inbound, 9);
    mqtt_qos2_ids_receive(&a.inbound, 65535);
    cr_assert_eq(through_json(mqtt_restore_to_json, mqtt_restore_from_json,
                              &a, (void **)&b),
                 HM_OK);
    cr_assert(b->adopt);
    cr_assert_eq(b->len, sizeof record);
    cr_assert_eq(memcmp(b->record, record, sizeof record), 0);
    cr_assert_eq(b->inbound.count, 2);
    cr_assert_not(mqtt_qos2_ids_receive(&b->inbound, 9)); /* known */
    cr_assert_not(mqtt_qos2_ids_receive(&b->inbound, 65535));
    cr_assert_eq(mqtt_restore_type.to_json, mqtt_restore_to_json,
                 "a fail-over's restore must be able to cross a link");
    mqtt_qos2_ids_fini(&a.inbound);
    mqtt_restore_destroy(b);
}

/* A leaving session keeps one copy and sends another (ADR 0260): the
 * clone owns every field, so either can go first. */
Test(mqtt_session_msg, handoff_clone_is_deep)
{
    uint8_t state[] = {'H', 'M', 'Q', 'S', 0, 1, 2};
    mqtt_handoff a = {.client_id = "cid-2",
                      .from = "n1",
                      .old = "n1",
                      .conn = NULL,
                      .username = "u",
                      .persistent = true,
                      .state = state,
                      .state_len = sizeof state};
    mqtt_handoff *b = mqtt_handoff_clone(&a), *c;

    cr_assert_neq(b->client_id, a.client_id);
    cr_assert_str_eq(b->client_id, "cid-2");
    cr_assert_str_eq(b->from, "n1");
    cr_assert_str_eq(b->old, "n1");
    cr_assert_null(b->conn);
    cr_assert_str_eq(b->username, "u");
    cr_assert(b->persistent);
    cr_assert_neq(b->state, state);
    cr_assert_eq(b->state_len, sizeof state);
    cr_assert_eq(memcmp(b->state, state, sizeof state), 0);
    c = mqtt_handoff_clone(b);
    mqtt_handoff_destroy(b);
    cr_assert_str_eq(c->client_id, "cid-2");
    cr_assert_eq(memcmp(c->state, state, sizeof state), 0);
    mqtt_handoff_destroy(c);
}

Test(mqtt_session_msg, decoders_refuse_bad_input)
{
    static const char *const attach_bad[] = {
        "null", "[]", "{}", "{\"conn\":\"\"}", "{\"conn\":7}",
        "{\"conn\":\"mqtt/conn/a/1\",\"ws\":1}",
        "{\"conn\":\"mqtt/conn/a/1\",\"user\":[]}"};
    static const char *const blob_bad[] = {
        "{}", "{\"data\":\"abc\"}", "{\"data\":\"ab=c\"}", "{\"data\":\"a===\"}",
        "{\"data\":\"ab!=\"}", "{\"data\":\"AB==\"}" /* non-canonical */,
        "{\"data\":\"\",\"conn\":1}", "{\"data\":5}"};
    static const char *const ctl_bad[] = {
        "7", "{\"ids\":[0]}", "{\"ids\":[65536]}", "{\"ids\":[\"1\"]}",
        "{\"ids\":{}}", "{\"name\":false}"};
    static const char *const pub_bad[] = {
        "{}", "{\"topic\":\"\",\"payload\":\"\",\"qos\":0}",
        "{\"topic\":\"t\",\"payload\":\"\",\"qos\":3}",
        "{\"topic\":\"t\",\"payload\":\"\",\"qos\":-1}",
        "{\"topic\":\"t\",\"payload\":\"\"}",
        "{\"topic\":\"t\",\"payload\":\"%%%%\",\"qos\":1}",
        "{\"topic\":\"t\",\"payload\":\"\",\"qos\":1,\"retain\":\"y\"}"};
    static const char *const handoff_bad[] = {
        "{}", "{\"state\":\"x\"}", "{\"state\":\"\",\"conn\":\"\"}",
        "{\"state\":\"\",\"persistent\":0}", "{\"state\":\"\",\"cid\":\"\"}",
        "{\"state\":\"\",\"from\":3}"};
    static const char *const restore_bad[] = {
        "[]", "{}", "{\"state\":\"x\"}", "{\"state\":3}",
        "{\"state\":\"\",\"adopt\":1}", "{\"state\":\"\",\"ids\":[0]}",
        "{\"state\":\"\",\"ids\":7}"};
    void *out = NULL;

    for (size_t i = 0; i < sizeof restore_bad / sizeof *restore_bad; i++)
        cr_assert_eq(decode_text(mqtt_restore_from_json, restore_bad[i], &out),
                     HM_EPROTO, "%s", restore_bad[i]);
    for (size_t i = 0; i < sizeof attach_bad / sizeof *attach_bad; i++)
        cr_assert_eq(decode_text(mqtt_attach_from_json, attach_bad[i], &out),
                     HM_EPROTO, "%s", attach_bad[i]);
    for (size_t i = 0; i < sizeof blob_bad / sizeof *blob_bad; i++)
        cr_assert_eq(decode_text(mqtt_blob_from_json, blob_bad[i], &out),
                     HM_EPROTO, "%s", blob_bad[i]);
    for (size_t i = 0; i < sizeof ctl_bad / sizeof *ctl_bad; i++)
        cr_assert_eq(decode_text(mqtt_ctl_from_json, ctl_bad[i], &out),
                     HM_EPROTO, "%s", ctl_bad[i]);
    for (size_t i = 0; i < sizeof pub_bad / sizeof *pub_bad; i++)
        cr_assert_eq(decode_text(mqtt_pub_from_json, pub_bad[i], &out),
                     HM_EPROTO, "%s", pub_bad[i]);
    for (size_t i = 0; i < sizeof handoff_bad / sizeof *handoff_bad; i++)
        cr_assert_eq(decode_text(mqtt_handoff_from_json, handoff_bad[i], &out),
                     HM_EPROTO, "%s", handoff_bad[i]);
}

Test(mqtt_session_msg, base64_matches_rfc4648_vectors)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob",
                                        "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

    for (size_t i = 0; i < 7; i++) {
        char *s = mqtt_base64_encode(plain[i], strlen(plain[i]));
        uint8_t *back;
        size_t len;

        cr_assert_str_eq(s, coded[i]);
        cr_assert_eq(mqtt_base64_decode(s, 100, &back, &len), HM_OK);
        cr_assert_eq(len, strlen(plain[i]));
        cr_assert_eq(memcmp(back, plain[i], len), 0);
        hm_free(s);
        hm_free(back);
    }
}

Test(mqtt_session_msg, base64_enforces_the_size_limit)
{
    uint8_t *out;
    size_t len;

    cr_assert_eq(mqtt_base64_decode("Zm9vYmFy", 5, &out, &len), HM_ETOOBIG);
    cr_assert_eq(mqtt_base64_decode("Zm9vYmFy", 6, &out, &len), HM_OK);
    hm_free(out);
}

Test(mqtt_session_msg, conn_names_carry_their_node)
{
    char name[64], node[65];

    cr_assert(mqtt_conn_name_format(name, sizeof name, "n-1.a", 42));
    cr_assert_str_eq(name, "mqtt/conn/n-1.a/42");
    cr_assert(mqtt_conn_name_node(name, node, sizeof node));
    cr_assert_str_eq(node, "n-1.a");
    cr_assert_not(mqtt_conn_name_node("mqtt/conn/42", node, sizeof node));
    cr_assert_not(mqtt_conn_name_node("mqtt/conn//42", node, sizeof node));
    cr_assert_not(mqtt_conn_name_node("mqtt/conn/a/", node, sizeof node));
    cr_assert_not(mqtt_conn_name_node("mqtt/conn/a/4x", node, sizeof node));
    cr_assert_not(mqtt_conn_name_node("mqtt/session/a/4", node, sizeof node));
    cr_assert_not(mqtt_conn_name_node("mqtt/conn/abcdef/1", node, 4));
    cr_assert_not(mqtt_conn_name_format(name, 12, "node", 1));
}

/* ------------------------------------------- a handoff's state record */

Test(mqtt_session_msg, session_state_save_and_load_round_trip)
{
    mqtt_outbox_config cfg = {.max_inflight = 2, .release = mqtt_pub_release};
    mqtt_outbox *o = mqtt_outbox_create(&cfg), *r = mqtt_outbox_create(&cfg);
    mqtt_state_sub subs[] = {{{(const uint8_t *)"a/#", 3}, 1},
                             {{(const uint8_t *)"b/+", 3}, 2}};
    mqtt_qos2_ids in = {0}, *in_back = NULL;
    mqtt_session_state st;
    mqtt_out_action a;
    const char *why;
    uint8_t *data;
    size_t len;

    mqtt_outbox_go_online(o);
    for (int i = 0; i < 4; i++) {
        char p[2] = {(char)('0' + i), 0};

        mqtt_outbox_push(o, mqtt_pub_create("a/x", 3, p, 1, 1 + i % 2, i == 3),
                         1 + i % 2);
    }
    cr_assert(mqtt_outbox_next(o, &a)); /* id 1, QoS 1 */
    cr_assert(mqtt_outbox_next(o, &a)); /* id 2, QoS 2 */
    cr_assert_eq(mqtt_outbox_ack(o, 5, 2), HM_OK);
    mqtt_qos2_ids_receive(&in, 77);
    cr_assert_eq(mqtt_session_state_save("cid", 0, subs, 2, o, &in, &data, &len),
                 HM_OK);
    cr_assert_eq(mqtt_session_state_decode(data, len, &st, &why), HM_OK);
    cr_assert_eq(st.sub_count, 2);
    cr_assert_eq(st.inflight_count, 2);
    cr_assert_eq(st.queued_count, 2);
    mqtt_session_state_load(&st, r, &in_back);
    mqtt_session_state_fini(&st);
    hm_free(data);
    cr_assert_eq(in_back->count, 1);
    cr_assert_eq(in_back->ids[0], 77);
    mqtt_outbox_go_online(r);
    cr_assert(mqtt_outbox_next(r, &a));
    cr_assert_eq(a.packet_id, 1);
    cr_assert(a.dup);
    cr_assert_eq(((mqtt_pub *)a.msg)->payload[0], '0');
    cr_assert(mqtt_outbox_next(r, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBREL);
    cr_assert_eq(a.packet_id, 2);
    cr_assert(mqtt_outbox_ack(r, 4, 1) == HM_OK);
    cr_assert(mqtt_outbox_next(r, &a)); /* the queued ones, in order */
    cr_assert_eq(((mqtt_pub *)a.msg)->payload[0], '2');
    cr_assert_eq(a.packet_id, 3);
    cr_assert_not(a.dup);
    cr_assert_not(mqtt_outbox_next(r, &a)); /* window of 2 is full */
    cr_assert_eq(mqtt_outbox_queued_count(r), 1);
    mqtt_qos2_box_destroy(in_back);
    mqtt_qos2_ids_fini(&in);
    mqtt_outbox_destroy(o);
    mqtt_outbox_destroy(r);
}

/* A session that never had to queue has no outbox (ADR 0150): its record
 * holds the subscriptions and the inbound QoS 2 ids, no messages, and
 * loading it needs no outbox either. */
Test(mqtt_session_msg, session_state_without_an_outbox)
{
    mqtt_state_sub subs[] = {{{(const uint8_t *)"a/#", 3}, 1}};
    mqtt_qos2_ids in = {0}, *in_back = NULL;
    mqtt_session_state st;
    const char *why;
    uint8_t *data;
    size_t len;

    mqtt_qos2_ids_receive(&in, 9);
    cr_assert_eq(mqtt_session_state_save("cid", 0, subs, 1, NULL, &in, &data,
                                         &len),
                 HM_OK);
    cr_assert_eq(mqtt_session_state_decode(data, len, &st, &why), HM_OK);
    cr_assert_eq(st.sub_count, 1);
    cr_assert_eq(st.inflight_count, 0);
    cr_assert_eq(st.queued_count, 0);
    cr_assert_eq(st.in_qos2_count, 1);
    mqtt_session_state_load(&st, NULL, &in_back);
    cr_assert_not_null(in_back);
    cr_assert_eq(in_back->count, 1);
    cr_assert_eq(in_back->ids[0], 9);
    mqtt_session_state_fini(&st);
    hm_free(data);
    mqtt_qos2_box_destroy(in_back);
    mqtt_qos2_ids_fini(&in);
    /* Nothing at all: no ids come back. */
    cr_assert_eq(mqtt_session_state_save("cid", 0, NULL, 0, NULL, NULL, &data,
                                         &len),
                 HM_OK);
    cr_assert_eq(mqtt_session_state_decode(data, len, &st, &why), HM_OK);
    mqtt_session_state_load(&st, NULL, &in_back);
    cr_assert_null(in_back);
    mqtt_session_state_fini(&st);
    hm_free(data);
}

/* A handoff's owed answers (ADR 0296): written in order, read back the
 * same, a malformed entry skipped, and carried by the handoff's JSON. */
Test(mqtt_session_msg, owed_entries_round_trip_in_order)
{
    static const uint8_t suback[] = {0x90, 0x03, 0x00, 0x4d, 0x01};
    mqtt_owed_entry in[] = {
        {.kind = 'o', .packet = (uint8_t *)suback, .len = sizeof suback},
        {.kind = 'd'},
        {.kind = 'a', .present = true},
    };
    mqtt_owed_entry e;
    char *acc = NULL;
    const char *cur;
    size_t len = 0;
    mqtt_handoff h = {0}, *back;
    json_t *j;

    for (size_t i = 0; i < 3; i++)
        mqtt_owed_append(&acc, &len, &in[i]);
    cr_assert_str_eq(acc, "okAMATQE=,d,a1");
    cur = acc;
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_OK);
    cr_assert_eq(e.kind, 'o');
    cr_assert_eq(e.len, sizeof suback);
    cr_assert_eq(memcmp(e.packet, suback, sizeof suback), 0);
    hm_free(e.packet);
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_OK);
    cr_assert_eq(e.kind, 'd');
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_OK);
    cr_assert(e.kind == 'a' && e.present);
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_ENOTFOUND);
    cur = "x,o!!,d";
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_EPROTO);
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_EPROTO);
    cr_assert_eq(mqtt_owed_next(&cur, &e), HM_OK);
    cr_assert_eq(e.kind, 'd');
    h.state = (uint8_t *)"s";
    h.state_len = 1;
    h.owed = acc;
    j = mqtt_handoff_to_json(&h);
    cr_assert_eq(mqtt_handoff_from_json(j, (void **)&back), HM_OK);
    cr_assert_str_eq(back->owed, acc);
    mqtt_handoff_destroy(back);
    json_decref(j);
    hm_free(acc);
}
