/* tests/runtime/test_hold.c: a receiver that holds a message
 * (hm_ctx_hold) stops taking messages, its bounded mailbox fills and
 * senders get HM_EFULL; hm_runtime_wake runs it again from the held
 * message on, in order, nothing lost or repeated. With real workers and in
 * manual mode. */
#include "runtime/runtime.h"
#include "tests/runtime/gate.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static const hm_type NUM = {.name = "t.num"};

Test(hold, held_receiver_pushes_back_and_resumes_in_order)
{
    hm_runtime *rt;
    hm_addr *a;
    static gate g;
    uint64_t sent = 0;
    hm_err err = HM_OK;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    cr_assert_eq(hm_runtime_spawn(rt, "gate",
                                  &(hm_receiver){.handler = gate_handle,
                                                 .state = &g,
                                                 .mailbox_limit = 100},
                                  &a),
                 HM_OK);
    /* Closed: the first message is held; the mailbox fills to its bound. */
    for (int i = 0; i < 100000 && err == HM_OK; i++) {
        hm_msg *m = hm_msg_create(&NUM, NULL, sent);

        if ((err = hm_runtime_send(rt, a, m)) == HM_OK)
            sent++;
        else
            hm_msg_destroy(m);
        if (err == HM_EFULL && atomic_load(&g.holds) == 0) {
            err = HM_OK; /* not yet run: the bound counts it */
            usleep(1000);
        }
    }
    cr_assert_eq(err, HM_EFULL);
    cr_assert_leq(sent, 101, "the held one counts against the bound");
    cr_assert_eq(atomic_load(&g.next), 0);
    atomic_store(&g.open, true);
    cr_assert_eq(hm_runtime_wake(rt, a), HM_OK);
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    cr_assert_eq(atomic_load(&g.next), sent);
    cr_assert_not(atomic_load(&g.bad));
    /* Room again. */
    cr_assert_eq(hm_runtime_send(rt, a, hm_msg_create(&NUM, NULL, sent)),
                 HM_OK);
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    cr_assert_eq(atomic_load(&g.next), sent + 1);
    hm_addr_release(a);
    hm_runtime_destroy(rt);
}

Test(hold, wake_before_the_hold_ends_runs_it_again)
{
    hm_runtime *rt;
    hm_addr *a;
    static gate g;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.manual = true}, &rt),
                 HM_OK);
    cr_assert_eq(hm_runtime_spawn(rt, "gate",
                                  &(hm_receiver){.handler = gate_handle,
                                                 .state = &g},
                                  &a),
                 HM_OK);
    /* A wake that comes first is remembered: the hold retries at once. */
    cr_assert_eq(hm_runtime_wake(rt, a), HM_OK);
    cr_assert_eq(hm_runtime_send(rt, a, hm_msg_create(&NUM, NULL, 0)), HM_OK);
    hm_runtime_run_until_idle(rt);
    cr_assert_geq(atomic_load(&g.holds), 2);
    cr_assert_eq(atomic_load(&g.next), 0);
    atomic_store(&g.open, true);
    hm_runtime_wake(rt, a);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(atomic_load(&g.next), 1);
    hm_addr_release(a);
    hm_runtime_destroy(rt);
}

Test(hold, held_message_is_a_dead_letter_at_close)
{
    hm_runtime *rt;
    hm_addr *a;
    static gate g;
    hm_runtime_stats st;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.manual = true}, &rt),
                 HM_OK);
    cr_assert_eq(hm_runtime_spawn(rt, "gate",
                                  &(hm_receiver){.handler = gate_handle,
                                                 .state = &g},
                                  &a),
                 HM_OK);
    cr_assert_eq(hm_runtime_send(rt, a, hm_msg_create(&NUM, NULL, 0)), HM_OK);
    cr_assert_eq(hm_runtime_send(rt, a, hm_msg_create(&NUM, NULL, 1)), HM_OK);
    hm_runtime_run_until_idle(rt);
    cr_assert_eq(atomic_load(&g.holds), 1);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.delivered, 1);
    hm_addr_release(a);
    hm_runtime_destroy(rt); /* ASan: both messages freed */
}
