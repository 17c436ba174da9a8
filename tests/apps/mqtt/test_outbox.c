/* tests/apps/mqtt/test_outbox.c: a session's QoS bookkeeping: queue,
 * inflight window, packet ids, acknowledgements and resends (section 4.3,
 * 4.4 and 4.6 of MQTT 3.1.1), and incoming QoS 2 de-duplication. Messages
 * are small integers cast to pointers; the release callback counts them. */
#include "apps/mqtt/outbox.h"

#include <criterion/criterion.h>
#include <stdint.h>

static int released[64];

static void count_release(void *msg)
{
    released[(uintptr_t)msg]++;
}

#define MSG(n) ((void *)(uintptr_t)(n))

static mqtt_outbox *make(uint32_t inflight, uint32_t queued)
{
    mqtt_outbox *o =
        mqtt_outbox_create(&(mqtt_outbox_config){.max_inflight = inflight,
                                                 .max_queued = queued,
                                                 .release = count_release});
    mqtt_outbox_go_online(o);
    return o;
}

Test(mqtt_outbox, qos0_goes_out_at_once_and_the_caller_owns_it)
{
    mqtt_outbox *o = make(2, 0);
    mqtt_out_action a;
    cr_assert_eq(mqtt_outbox_push(o, MSG(1), 0), HM_OK);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBLISH);
    cr_assert_eq(a.msg, MSG(1));
    cr_assert_eq(a.packet_id, 0);
    cr_assert(a.caller_owns_msg);
    cr_assert_not(mqtt_outbox_next(o, &a));
    mqtt_outbox_destroy(o);
    cr_assert_eq(released[1], 0);
}

Test(mqtt_outbox, qos1_waits_for_puback_mqtt_4_3_2_1)
{
    mqtt_outbox *o = make(2, 0);
    mqtt_out_action a;
    mqtt_outbox_push(o, MSG(1), 1);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.qos, 1);
    cr_assert_neq(a.packet_id, 0);
    cr_assert_not(a.dup);
    cr_assert_not(a.caller_owns_msg);
    cr_assert_eq(mqtt_outbox_inflight_count(o), 1);
    cr_assert_eq(mqtt_outbox_ack(o, 4, a.packet_id), HM_OK);
    cr_assert_eq(released[1], 1);
    cr_assert_eq(mqtt_outbox_inflight_count(o), 0);
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, qos2_goes_pubrec_pubrel_pubcomp_mqtt_4_3_3_1)
{
    mqtt_outbox *o = make(2, 0);
    mqtt_out_action a;
    uint16_t id;
    mqtt_outbox_push(o, MSG(2), 2);
    cr_assert(mqtt_outbox_next(o, &a));
    id = a.packet_id;
    cr_assert_eq(mqtt_outbox_ack(o, 7, id), HM_ENOTFOUND); /* too early */
    cr_assert_eq(mqtt_outbox_ack(o, 5, id), HM_OK);
    cr_assert_eq(released[2], 1); /* payload no longer needed */
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBREL);
    cr_assert_eq(a.packet_id, id);
    cr_assert_eq(mqtt_outbox_ack(o, 7, id), HM_OK);
    cr_assert_eq(mqtt_outbox_inflight_count(o), 0);
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, window_limits_messages_in_flight_and_keeps_order)
{
    mqtt_outbox *o = make(2, 0);
    mqtt_out_action a, first;
    mqtt_outbox_push(o, MSG(1), 1);
    mqtt_outbox_push(o, MSG(2), 1);
    mqtt_outbox_push(o, MSG(3), 1);
    mqtt_outbox_push(o, MSG(4), 0);
    cr_assert(mqtt_outbox_next(o, &first));
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.msg, MSG(2));
    /* Window full: message 3 waits, and QoS 0 message 4 does not overtake
     * it [MQTT-4.6.0-6]. */
    cr_assert_not(mqtt_outbox_next(o, &a));
    cr_assert_eq(mqtt_outbox_queued_count(o), 2);
    mqtt_outbox_ack(o, 4, first.packet_id);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.msg, MSG(3));
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.msg, MSG(4));
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, full_queue_refuses_and_leaves_the_message_to_the_caller)
{
    mqtt_outbox *o = make(1, 2);
    mqtt_outbox_go_offline(o);
    cr_assert_eq(mqtt_outbox_push(o, MSG(1), 1), HM_OK);
    cr_assert_eq(mqtt_outbox_push(o, MSG(2), 1), HM_OK);
    cr_assert_eq(mqtt_outbox_push(o, MSG(3), 1), HM_EFULL);
    cr_assert_eq(released[3], 0);
    mqtt_outbox_destroy(o);
    cr_assert_eq(released[1], 1);
    cr_assert_eq(released[2], 1);
}

Test(mqtt_outbox, offline_qos0_is_dropped_and_qos1_is_kept)
{
    mqtt_outbox *o = make(4, 0);
    mqtt_out_action a;
    mqtt_outbox_push(o, MSG(5), 0); /* queued while online... */
    mqtt_outbox_go_offline(o);      /* ...dropped at disconnect */
    cr_assert_eq(released[5], 1);
    mqtt_outbox_push(o, MSG(6), 0);
    cr_assert_eq(released[6], 1);
    mqtt_outbox_push(o, MSG(7), 1);
    cr_assert_not(mqtt_outbox_next(o, &a)); /* nothing sent offline */
    mqtt_outbox_go_online(o);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.msg, MSG(7));
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, reconnect_resends_publish_with_dup_and_pubrel_mqtt_4_4_0_1)
{
    mqtt_outbox *o = make(4, 0);
    mqtt_out_action a, p1, p2;
    mqtt_outbox_push(o, MSG(1), 1);
    mqtt_outbox_push(o, MSG(2), 2);
    mqtt_outbox_next(o, &p1);
    mqtt_outbox_next(o, &p2);
    mqtt_outbox_ack(o, 5, p2.packet_id); /* QoS 2 now awaits PUBCOMP */
    mqtt_outbox_next(o, &a);             /* the PUBREL went out */
    mqtt_outbox_go_offline(o);
    mqtt_outbox_go_online(o);
    /* Original order: the PUBLISH of 1 again, with DUP, same id... */
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBLISH);
    cr_assert_eq(a.msg, MSG(1));
    cr_assert(a.dup);
    cr_assert_eq(a.packet_id, p1.packet_id);
    /* ...then the PUBREL of 2 [MQTT-4.6.0-1]. */
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBREL);
    cr_assert_eq(a.packet_id, p2.packet_id);
    cr_assert_not(mqtt_outbox_next(o, &a));
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, packet_ids_in_flight_are_never_reused_mqtt_2_3_1_2)
{
    mqtt_outbox *o = make(0, 0);
    mqtt_out_action a;
    uint16_t first;
    mqtt_outbox_push(o, MSG(1), 1);
    mqtt_outbox_next(o, &a);
    first = a.packet_id;
    /* Go once round the id space, acking everything but the first. */
    for (int i = 0; i < 65535; i++) {
        mqtt_outbox_push(o, MSG(2), 1);
        cr_assert(mqtt_outbox_next(o, &a));
        cr_assert_neq(a.packet_id, first);
        cr_assert_neq(a.packet_id, 0);
        cr_assert_eq(mqtt_outbox_ack(o, 4, a.packet_id), HM_OK);
    }
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, unknown_or_wrong_acknowledgements_are_notfound)
{
    mqtt_outbox *o = make(4, 0);
    mqtt_out_action a;
    mqtt_outbox_push(o, MSG(1), 1);
    mqtt_outbox_next(o, &a);
    cr_assert_eq(mqtt_outbox_ack(o, 4, a.packet_id + 1), HM_ENOTFOUND);
    cr_assert_eq(mqtt_outbox_ack(o, 5, a.packet_id), HM_ENOTFOUND);
    cr_assert_eq(mqtt_outbox_push(o, MSG(2), 3), HM_EINVAL);
    mqtt_outbox_destroy(o);
}

/* ------------------------------------------- saving and restoring state */

typedef struct seen {
    mqtt_out_entry e[8];
    size_t n;
} seen;

static void see(void *arg, const mqtt_out_entry *e)
{
    seen *s = arg;

    s->e[s->n++] = *e;
}

Test(mqtt_outbox, foreach_shows_window_stages_then_the_queue)
{
    mqtt_outbox *o = make(2, 0);
    mqtt_out_action a1, a2;
    seen s = {0};

    mqtt_outbox_push(o, MSG(1), 1);
    mqtt_outbox_push(o, MSG(2), 2);
    mqtt_outbox_push(o, MSG(3), 2);
    cr_assert(mqtt_outbox_next(o, &a1));
    cr_assert(mqtt_outbox_next(o, &a2));
    cr_assert_eq(mqtt_outbox_ack(o, 5, a2.packet_id), HM_OK); /* PUBREC */
    mqtt_outbox_foreach(o, see, &s);
    cr_assert_eq(s.n, 3);
    cr_assert_eq(s.e[0].msg, MSG(1));
    cr_assert_eq(s.e[0].stage, 1); /* awaiting PUBACK */
    cr_assert_eq(s.e[0].packet_id, a1.packet_id);
    cr_assert(s.e[0].sent);
    cr_assert_null(s.e[1].msg); /* only the PUBREL is left */
    cr_assert_eq(s.e[1].stage, 3);
    cr_assert_eq(s.e[2].msg, MSG(3));
    cr_assert_eq(s.e[2].qos, 2);
    cr_assert_eq(s.e[2].stage, 0);
    cr_assert_eq(mqtt_outbox_next_id(o), a2.packet_id + 1);
    mqtt_outbox_destroy(o);
}

Test(mqtt_outbox, restored_window_is_resent_first_with_dup_and_ids_4_4_0_1)
{
    mqtt_outbox *o = mqtt_outbox_create(&(mqtt_outbox_config){
        .max_inflight = 4, .release = count_release});
    mqtt_out_action a;

    cr_assert_eq(mqtt_outbox_restore(
                     o, &(mqtt_out_entry){.msg = MSG(10), .qos = 2,
                                          .stage = 2, .packet_id = 300,
                                          .sent = true}),
                 HM_OK);
    cr_assert_eq(mqtt_outbox_restore(
                     o, &(mqtt_out_entry){.qos = 2, .stage = 3,
                                          .packet_id = 301}),
                 HM_OK);
    /* The same id twice, a QoS that does not fit the stage: refused. */
    cr_assert_eq(mqtt_outbox_restore(
                     o, &(mqtt_out_entry){.msg = MSG(11), .qos = 1,
                                          .stage = 1, .packet_id = 300}),
                 HM_EINVAL);
    cr_assert_eq(mqtt_outbox_restore(
                     o, &(mqtt_out_entry){.msg = MSG(11), .qos = 1,
                                          .stage = 2, .packet_id = 9}),
                 HM_EINVAL);
    cr_assert_eq(mqtt_outbox_restore(
                     o, &(mqtt_out_entry){.msg = MSG(12), .qos = 1}),
                 HM_OK);
    mqtt_outbox_set_next_id(o, 302);
    mqtt_outbox_go_online(o);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBLISH);
    cr_assert_eq(a.packet_id, 300);
    cr_assert(a.dup);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.kind, MQTT_OUT_PUBREL);
    cr_assert_eq(a.packet_id, 301);
    cr_assert(mqtt_outbox_next(o, &a));
    cr_assert_eq(a.msg, MSG(12));
    cr_assert_eq(a.packet_id, 302);
    cr_assert_not(a.dup);
    mqtt_outbox_destroy(o);
}

/* ------------------------------------------------------ incoming QoS 2 */

Test(mqtt_qos2_ids, resent_qos2_publish_is_not_delivered_twice_4_3_3_2)
{
    mqtt_qos2_ids s = {0};
    cr_assert(mqtt_qos2_ids_receive(&s, 7));
    cr_assert_not(mqtt_qos2_ids_receive(&s, 7));
    cr_assert(mqtt_qos2_ids_release(&s, 7));
    cr_assert(mqtt_qos2_ids_receive(&s, 7)); /* a new message now */
    mqtt_qos2_ids_fini(&s);
}

Test(mqtt_qos2_ids, many_ids_stay_distinct)
{
    mqtt_qos2_ids s = {0};
    for (int i = 65535; i >= 1; i -= 7)
        cr_assert(mqtt_qos2_ids_receive(&s, (uint16_t)i));
    for (int i = 65535; i >= 1; i -= 7)
        cr_assert_not(mqtt_qos2_ids_receive(&s, (uint16_t)i));
    cr_assert_not(mqtt_qos2_ids_release(&s, 2));
    for (int i = 65535; i >= 1; i -= 7)
        cr_assert(mqtt_qos2_ids_release(&s, (uint16_t)i));
    cr_assert_eq(s.count, 0);
    mqtt_qos2_ids_fini(&s);
}
