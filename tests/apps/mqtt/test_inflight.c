/* tests/apps/mqtt/test_inflight.c: a session's outbound window and queue,
 * and its inbound QoS 2 ids (apps/mqtt/inflight.c). Items are small
 * integers cast to pointers; a release hook counts what the flow lets go. */
#include "apps/mqtt/inflight.h"

#include <criterion/criterion.h>
#include <stdint.h>

static int released[64];
static int released_count;

static void count_release(void *item)
{
    if (released_count < 64)
        released[released_count] = (int)(intptr_t)item;
    released_count++;
}

#define ITEM(n) ((void *)(intptr_t)(n))

static mqtt_inflight *flow(uint32_t window, uint32_t queue_limit)
{
    released_count = 0;
    return mqtt_inflight_create(window, queue_limit, count_release);
}

typedef struct resend {
    int item[16];
    uint16_t pid[16];
    mqtt_out_state state[16];
    size_t count;
} resend;

static void record(void *arg, void *item, uint8_t qos, uint16_t pid,
                   mqtt_out_state state)
{
    resend *r = arg;

    (void)qos;
    r->item[r->count] = (int)(intptr_t)item;
    r->pid[r->count] = pid;
    r->state[r->count++] = state;
}

Test(inflight, an_online_offer_with_room_is_sent_with_a_nonzero_id)
{
    mqtt_inflight *f = flow(2, 10);
    uint16_t pid = 0;

    cr_assert_eq(mqtt_inflight_offer(f, ITEM(1), 1, true, &pid),
                 MQTT_OFFER_SEND);
    cr_assert_neq(pid, 0);
    cr_assert_eq(mqtt_inflight_count(f), 1);
    mqtt_inflight_destroy(f);
}

Test(inflight, ids_in_the_window_are_distinct_MQTT_2_3_1_2)
{
    mqtt_inflight *f = flow(3, 10);
    uint16_t a, b, c;

    mqtt_inflight_offer(f, ITEM(1), 1, true, &a);
    mqtt_inflight_offer(f, ITEM(2), 2, true, &b);
    mqtt_inflight_offer(f, ITEM(3), 1, true, &c);
    cr_assert(a != b && b != c && a != c);
    mqtt_inflight_destroy(f);
}

Test(inflight, a_full_window_queues_and_an_ack_lets_the_next_in_order)
{
    mqtt_inflight *f = flow(1, 10);
    uint16_t first, pid;
    uint8_t qos;
    void *item;

    mqtt_inflight_offer(f, ITEM(1), 1, true, &first);
    cr_assert_eq(mqtt_inflight_offer(f, ITEM(2), 2, true, &pid),
                 MQTT_OFFER_QUEUED);
    cr_assert_eq(mqtt_inflight_offer(f, ITEM(3), 1, true, &pid),
                 MQTT_OFFER_QUEUED);
    cr_assert_not(mqtt_inflight_next(f, &item, &qos, &pid));
    cr_assert_eq(mqtt_inflight_puback(f, first), HM_OK);
    cr_assert(mqtt_inflight_next(f, &item, &qos, &pid));
    cr_assert_eq(item, ITEM(2));
    cr_assert_eq(qos, 2);
    cr_assert_eq(mqtt_inflight_queued(f), 1);
    mqtt_inflight_destroy(f);
}

Test(inflight, an_offer_while_offline_is_queued_without_an_id)
{
    mqtt_inflight *f = flow(5, 10);
    uint16_t pid = 0;

    cr_assert_eq(mqtt_inflight_offer(f, ITEM(1), 1, false, &pid),
                 MQTT_OFFER_QUEUED);
    cr_assert_eq(mqtt_inflight_count(f), 0);
    cr_assert_eq(mqtt_inflight_queued(f), 1);
    mqtt_inflight_destroy(f);
}

Test(inflight, a_full_queue_drops_and_leaves_the_item_with_the_caller)
{
    mqtt_inflight *f = flow(1, 2);
    uint16_t pid;

    mqtt_inflight_offer(f, ITEM(1), 1, false, &pid);
    mqtt_inflight_offer(f, ITEM(2), 1, false, &pid);
    cr_assert_eq(mqtt_inflight_offer(f, ITEM(3), 1, false, &pid),
                 MQTT_OFFER_DROPPED);
    cr_assert_eq(released_count, 0);
    mqtt_inflight_destroy(f);
    cr_assert_eq(released_count, 2);
}

Test(inflight, an_offer_never_overtakes_queued_messages_MQTT_4_6_0_2)
{
    mqtt_inflight *f = flow(2, 10);
    uint16_t pid;
    uint8_t qos;
    void *item;

    mqtt_inflight_offer(f, ITEM(1), 1, false, &pid); /* queued offline */
    cr_assert_eq(mqtt_inflight_offer(f, ITEM(2), 1, true, &pid),
                 MQTT_OFFER_QUEUED);
    cr_assert(mqtt_inflight_next(f, &item, &qos, &pid));
    cr_assert_eq(item, ITEM(1));
    cr_assert(mqtt_inflight_next(f, &item, &qos, &pid));
    cr_assert_eq(item, ITEM(2));
    mqtt_inflight_destroy(f);
}

Test(inflight, puback_releases_the_item_and_a_second_is_not_found)
{
    mqtt_inflight *f = flow(2, 10);
    uint16_t pid;

    mqtt_inflight_offer(f, ITEM(7), 1, true, &pid);
    cr_assert_eq(mqtt_inflight_puback(f, pid), HM_OK);
    cr_assert_eq(released_count, 1);
    cr_assert_eq(released[0], 7);
    cr_assert_eq(mqtt_inflight_puback(f, pid), HM_ENOTFOUND);
    mqtt_inflight_destroy(f);
}

Test(inflight, puback_for_a_qos2_exchange_is_not_found)
{
    mqtt_inflight *f = flow(2, 10);
    uint16_t pid;

    mqtt_inflight_offer(f, ITEM(1), 2, true, &pid);
    cr_assert_eq(mqtt_inflight_puback(f, pid), HM_ENOTFOUND);
    cr_assert_eq(mqtt_inflight_count(f), 1);
    mqtt_inflight_destroy(f);
}

Test(inflight, qos2_pubrec_releases_the_item_and_pubcomp_ends_it_MQTT_4_3_3_1)
{
    mqtt_inflight *f = flow(2, 10);
    uint16_t pid;

    mqtt_inflight_offer(f, ITEM(5), 2, true, &pid);
    cr_assert_eq(mqtt_inflight_pubcomp(f, pid), HM_ENOTFOUND);
    cr_assert_eq(mqtt_inflight_pubrec(f, pid), HM_OK);
    cr_assert_eq(released_count, 1);
    cr_assert_eq(mqtt_inflight_count(f), 1); /* still holds the id */
    cr_assert_eq(mqtt_inflight_pubrec(f, pid), HM_OK); /* a repeat */
    cr_assert_eq(released_count, 1);
    cr_assert_eq(mqtt_inflight_pubcomp(f, pid), HM_OK);
    cr_assert_eq(mqtt_inflight_count(f), 0);
    mqtt_inflight_destroy(f);
}

Test(inflight, each_lists_the_window_oldest_first_for_a_resend_MQTT_4_4_0_1)
{
    mqtt_inflight *f = flow(3, 10);
    uint16_t a, b, c;
    resend r = {0};

    mqtt_inflight_offer(f, ITEM(1), 1, true, &a);
    mqtt_inflight_offer(f, ITEM(2), 2, true, &b);
    mqtt_inflight_offer(f, ITEM(3), 2, true, &c);
    mqtt_inflight_pubrec(f, b);
    mqtt_inflight_each(f, record, &r);
    cr_assert_eq(r.count, 3);
    cr_assert_eq(r.item[0], 1);
    cr_assert_eq(r.state[0], MQTT_OUT_WAIT_PUBACK);
    cr_assert_eq(r.item[1], 0); /* released at PUBREC: send PUBREL */
    cr_assert_eq(r.state[1], MQTT_OUT_WAIT_PUBCOMP);
    cr_assert_eq(r.pid[1], b);
    cr_assert_eq(r.state[2], MQTT_OUT_WAIT_PUBREC);
    mqtt_inflight_destroy(f);
}

Test(inflight, ids_roll_over_and_skip_ids_still_in_use)
{
    mqtt_inflight *f = flow(2, 0);
    uint16_t held, pid;

    mqtt_inflight_offer(f, ITEM(1), 1, true, &held); /* id 1, kept */
    for (int i = 0; i < 65535; i++) {
        mqtt_inflight_offer(f, ITEM(2), 1, true, &pid);
        cr_assert_neq(pid, held);
        cr_assert_neq(pid, 0);
        mqtt_inflight_puback(f, pid);
    }
    mqtt_inflight_destroy(f);
}

Test(inflight, clear_releases_everything_held)
{
    mqtt_inflight *f = flow(1, 10);
    uint16_t pid;

    mqtt_inflight_offer(f, ITEM(1), 1, true, &pid);
    mqtt_inflight_offer(f, ITEM(2), 1, true, &pid);
    mqtt_inflight_clear(f);
    cr_assert_eq(released_count, 2);
    cr_assert_eq(mqtt_inflight_count(f) + mqtt_inflight_queued(f), 0);
    mqtt_inflight_destroy(f);
    cr_assert_eq(released_count, 2);
}

Test(inflight, the_queue_grows_past_its_first_ring_and_keeps_order)
{
    mqtt_inflight *f = flow(1, 0);
    uint16_t pid;
    uint8_t qos;
    void *item;

    for (int i = 1; i <= 40; i++)
        mqtt_inflight_offer(f, ITEM(i), 1, false, &pid);
    for (int i = 1; i <= 40; i++) {
        cr_assert(mqtt_inflight_next(f, &item, &qos, &pid));
        cr_assert_eq(item, ITEM(i));
        mqtt_inflight_puback(f, pid);
    }
    mqtt_inflight_destroy(f);
}

Test(pidset, add_reports_a_repeat_and_remove_forgets_MQTT_4_3_3_2)
{
    mqtt_pidset *s = mqtt_pidset_create();

    cr_assert(mqtt_pidset_add(s, 9));
    cr_assert(mqtt_pidset_add(s, 3));
    cr_assert_not(mqtt_pidset_add(s, 9));
    cr_assert(mqtt_pidset_contains(s, 3));
    cr_assert(mqtt_pidset_remove(s, 9));
    cr_assert_not(mqtt_pidset_contains(s, 9));
    cr_assert_not(mqtt_pidset_remove(s, 9));
    cr_assert_eq(mqtt_pidset_count(s), 1);
    mqtt_pidset_destroy(s);
}

Test(pidset, holds_many_ids_in_any_order)
{
    mqtt_pidset *s = mqtt_pidset_create();

    for (uint32_t i = 0; i < 1000; i++)
        cr_assert(mqtt_pidset_add(s, (uint16_t)((i * 7919u) % 65535u + 1)));
    for (uint32_t i = 0; i < 1000; i++)
        cr_assert(
            mqtt_pidset_contains(s, (uint16_t)((i * 7919u) % 65535u + 1)));
    cr_assert_eq(mqtt_pidset_count(s), 1000);
    mqtt_pidset_destroy(s);
}
