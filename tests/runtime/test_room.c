/* tests/runtime/test_room.c: waiting for room in a bounded mailbox (ADR
 * 0240). hm_runtime_send_wait() from a plain thread sleeps while the
 * receiver's mailbox is full and returns once it drains; it times out, it
 * never sleeps on a worker or in manual mode, and a sleeper is woken with
 * HM_ECLOSED by hm_runtime_destroy(). hm_ctx_notify_room() sends a
 * receiver its notice when the mailbox it could not send to has drained,
 * at once when it has room, and frees it unsent at close. The full
 * receiver is a gate that holds its first message (hm_ctx_hold) until the
 * test opens it, so "full" lasts exactly as long as the test says. */
#include "runtime/runtime.h"
#include "tests/runtime/gate.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>

#define BOUND 4u

static const hm_type NUM = {.name = "t.num"};
static const hm_type GO = {.name = "t.go"};
static const hm_type ROOM = {.name = "t.room"};

static hm_addr *spawn_gate(hm_runtime *rt, const char *name, gate *g)
{
    hm_addr *a;

    cr_assert_eq(hm_runtime_spawn(rt, name,
                                  &(hm_receiver){.handler = gate_handle,
                                                 .state = g,
                                                 .mailbox_limit = BOUND},
                                  &a),
                 HM_OK);
    return a;
}

static void open_gate(hm_runtime *rt, hm_addr *a, gate *g)
{
    atomic_store(&g->open, true);
    hm_runtime_wake(rt, a);
}

static void pause_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded by the suite's timeout) until `n` threads are inside
 * hm_runtime_send_wait() past a refused send. */
static void await_waiting(hm_runtime *rt, uint64_t n)
{
    hm_runtime_stats st;

    for (;;) {
        hm_runtime_stats_get(rt, &st);
        if (st.send_waiting == n)
            return;
        pause_ms(1);
    }
}

/* A plain thread that sends 0..count-1 with hm_runtime_send_wait(). */
typedef struct sender {
    hm_runtime *rt;
    hm_addr *to;
    uint64_t count;
    uint32_t timeout_ms;
    _Atomic uint64_t accepted;
    hm_err err; /* the first error, or HM_OK */
} sender;

static void *sender_main(void *arg)
{
    sender *s = arg;

    s->err = HM_OK;
    for (uint64_t i = 0; i < s->count; i++) {
        hm_msg *m = hm_msg_create(&NUM, NULL, i);
        hm_err err = hm_runtime_send_wait(s->rt, s->to, m, s->timeout_ms);

        if (err != HM_OK) {
            hm_msg_destroy(m); /* still ours on error */
            s->err = err;
            break;
        }
        atomic_fetch_add(&s->accepted, 1);
    }
    return NULL;
}

Test(room, send_wait_sleeps_while_full_and_wakes_when_drained, .timeout = 30)
{
    hm_runtime *rt;
    static gate g;
    static sender s;
    pthread_t th;
    hm_addr *a;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    a = spawn_gate(rt, "gate", &g);
    s = (sender){.rt = rt, .to = a, .count = 1000, .timeout_ms = UINT32_MAX};
    pthread_create(&th, NULL, sender_main, &s);
    /* The gate holds 0; 1..3 fill the bound; the fifth send sleeps. */
    await_waiting(rt, 1);
    cr_assert_eq(atomic_load(&s.accepted), BOUND);
    cr_assert_eq(atomic_load(&g.next), 0);
    open_gate(rt, a, &g);
    pthread_join(th, NULL);
    cr_assert_eq(s.err, HM_OK);
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    cr_assert_eq(atomic_load(&g.next), 1000);
    cr_assert(!atomic_load(&g.bad), "a message out of order");
    hm_addr_release(a);
    hm_runtime_destroy(rt);
}

Test(room, send_wait_times_out_and_leaves_the_message_to_the_caller,
     .timeout = 30)
{
    hm_runtime *rt;
    static gate g;
    hm_addr *a;
    hm_msg *m;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    a = spawn_gate(rt, "gate", &g);
    for (uint64_t i = 0; i < BOUND; i++)
        cr_assert_eq(hm_runtime_send_wait(rt, a, hm_msg_create(&NUM, NULL, i),
                                          UINT32_MAX),
                     HM_OK);
    m = hm_msg_create(&NUM, NULL, BOUND);
    cr_assert_eq(hm_runtime_send_wait(rt, a, m, 0), HM_ETIMEDOUT);
    cr_assert_eq(hm_runtime_send_wait(rt, a, m, 20), HM_ETIMEDOUT);
    open_gate(rt, a, &g);
    cr_assert_eq(hm_runtime_send_wait(rt, a, m, UINT32_MAX), HM_OK);
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    cr_assert_eq(atomic_load(&g.next), BOUND + 1);
    cr_assert(!atomic_load(&g.bad));
    hm_addr_release(a);
    hm_runtime_destroy(rt);
}

/* A receiver that calls hm_runtime_send_wait() to the full gate: it must
 * get HM_EFULL at once (a worker never sleeps). */
static hm_addr *full_gate;
static _Atomic int inside_result = -1;
static sem_t inside_done;

static hm_err waiter_inside(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_msg *m = hm_msg_create(&NUM, NULL, 99);
    hm_err err = hm_runtime_send_wait(hm_ctx_runtime(ctx), full_gate, m,
                                      UINT32_MAX);

    if (err != HM_OK)
        hm_msg_destroy(m);
    atomic_store(&inside_result, (int)err);
    sem_post(&inside_done);
    return HM_OK;
}

Test(room, send_wait_never_sleeps_on_a_worker_or_in_manual_mode,
     .timeout = 30)
{
    hm_runtime *rt;
    static gate g, g2;
    hm_addr *w, *a;

    sem_init(&inside_done, 0, 0);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 1}, &rt),
                 HM_OK);
    full_gate = spawn_gate(rt, "gate", &g);
    for (uint64_t i = 0; i < BOUND; i++)
        cr_assert_eq(hm_runtime_send(rt, full_gate,
                                     hm_msg_create(&NUM, NULL, i)),
                     HM_OK);
    cr_assert_eq(hm_runtime_spawn(rt, "inside",
                                  &(hm_receiver){.handler = waiter_inside},
                                  &w),
                 HM_OK);
    cr_assert_eq(hm_runtime_send(rt, w, hm_msg_create(&GO, NULL, 0)), HM_OK);
    sem_wait(&inside_done);
    cr_assert_eq(atomic_load(&inside_result), HM_EFULL);
    open_gate(rt, full_gate, &g);
    hm_addr_release(w);
    hm_addr_release(full_gate);
    hm_runtime_destroy(rt);

    /* Manual mode: nothing drains while the caller sleeps. */
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.manual = true}, &rt),
                 HM_OK);
    a = spawn_gate(rt, "gate", &g2);
    for (uint64_t i = 0; i < BOUND; i++)
        cr_assert_eq(hm_runtime_send(rt, a, hm_msg_create(&NUM, NULL, i)),
                     HM_OK);
    hm_msg *m = hm_msg_create(&NUM, NULL, BOUND);
    cr_assert_eq(hm_runtime_send_wait(rt, a, m, UINT32_MAX), HM_EFULL);
    hm_msg_destroy(m);
    hm_addr_release(a);
    hm_runtime_destroy(rt);
    sem_destroy(&inside_done);
}

Test(room, destroy_wakes_the_senders_asleep_in_send_wait, .timeout = 30)
{
    hm_runtime *rt;
    static gate g;
    static sender s[2];
    pthread_t th[2];
    hm_addr *a;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    a = spawn_gate(rt, "gate", &g);
    for (int i = 0; i < 2; i++) {
        s[i] = (sender){.rt = rt, .to = a, .count = 100,
                        .timeout_ms = UINT32_MAX};
        pthread_create(&th[i], NULL, sender_main, &s[i]);
    }
    await_waiting(rt, 2);
    hm_addr_release(a);
    hm_runtime_destroy(rt); /* the gate never opens */
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(s[i].err, HM_ECLOSED);
    }
    cr_assert_eq(atomic_load(&s[0].accepted) + atomic_load(&s[1].accepted),
                 BOUND);
}

/* --- room notices: "pump" sends NUMs to its target; when refused it asks
 * for a ROOM notice and counts it when it comes. */
typedef struct pump {
    hm_addr *target;
    _Atomic uint64_t next;    /* the next number to send */
    _Atomic uint64_t refused; /* sends refused with HM_EFULL */
    _Atomic uint64_t notices;
    _Atomic(hm_addr *) notice_from; /* hm_msg_from() of the last notice */
    _Atomic bool bad;               /* an unexpected error */
    sem_t step;                     /* posted after each GO or ROOM */
} pump;

static hm_err pump_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    pump *p = state;

    if (hm_msg_type(msg) == &ROOM) {
        atomic_store(&p->notice_from, hm_msg_from(msg));
        atomic_fetch_add(&p->notices, 1);
    }
    /* Sends until refused, then asks for a notice. */
    while (atomic_load(&p->next) < hm_msg_arg(msg)) {
        hm_msg *m = hm_msg_create(&NUM, NULL, atomic_load(&p->next));
        hm_err err = hm_ctx_send(ctx, p->target, m);

        if (err == HM_OK) {
            atomic_fetch_add(&p->next, 1);
            continue;
        }
        hm_msg_destroy(m);
        if (err != HM_EFULL ||
            hm_ctx_notify_room(ctx, p->target,
                               hm_msg_create(&ROOM, NULL, hm_msg_arg(msg))) !=
                HM_OK)
            atomic_store(&p->bad, true);
        atomic_fetch_add(&p->refused, 1);
        break;
    }
    sem_post(&p->step);
    return HM_OK;
}

/* A runtime with a closed gate and a pump told to send it 0..99: the
 * gate holds 0, 1..3 fill the bound, 4 is refused and a notice asked. */
static hm_runtime *start_pump(gate *g, pump *p, hm_addr **a, hm_addr **pa)
{
    hm_runtime *rt;

    sem_init(&p->step, 0, 0);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    *a = spawn_gate(rt, "gate", g);
    p->target = *a;
    cr_assert_eq(hm_runtime_spawn(rt, "pump",
                                  &(hm_receiver){.handler = pump_handle,
                                                 .state = p},
                                  pa),
                 HM_OK);
    cr_assert_eq(hm_runtime_send(rt, *pa, hm_msg_create(&GO, NULL, 100)),
                 HM_OK);
    sem_wait(&p->step);
    return rt;
}

Test(room, a_receiver_refused_by_a_full_mailbox_is_sent_a_notice_when_it_drains,
     .timeout = 30)
{
    hm_runtime *rt;
    static gate g;
    static pump p;
    hm_addr *a, *pa;

    rt = start_pump(&g, &p, &a, &pa);
    cr_assert_eq(atomic_load(&p.next), BOUND);
    cr_assert_eq(atomic_load(&p.refused), 1);
    cr_assert_eq(atomic_load(&p.notices), 0); /* the gate is still full */
    /* Each drain sends the notice; the pump refills until refused again,
     * so it finishes on notices alone, no polling. */
    open_gate(rt, a, &g);
    while (atomic_load(&p.next) < 100)
        sem_wait(&p.step);
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    cr_assert_eq(atomic_load(&g.next), 100);
    cr_assert(!atomic_load(&g.bad));
    cr_assert(!atomic_load(&p.bad));
    cr_assert_eq(atomic_load(&p.notices), atomic_load(&p.refused));
    cr_assert_eq(atomic_load(&p.notice_from), a);
    hm_addr_release(pa);
    hm_addr_release(a);
    hm_runtime_destroy(rt);
    sem_destroy(&p.step);
}

/* A notice asked of a mailbox with room comes at once. */
static sem_t noticed;
static hm_addr *noticed_from;

static hm_err ask_room(hm_ctx *ctx, void *state, hm_msg *msg)
{
    if (hm_msg_type(msg) == &ROOM) {
        noticed_from = hm_msg_from(msg);
        sem_post(&noticed);
        return HM_OK;
    }
    return hm_ctx_notify_room(ctx, state, hm_msg_create(&ROOM, NULL, 0));
}

Test(room, a_notice_asked_of_a_mailbox_with_room_comes_at_once,
     .timeout = 30)
{
    hm_runtime *rt;
    static gate g;
    hm_addr *a, *asker;

    sem_init(&noticed, 0, 0);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    a = spawn_gate(rt, "gate", &g); /* empty: room */
    cr_assert_eq(hm_runtime_spawn(rt, "asker",
                                  &(hm_receiver){.handler = ask_room,
                                                 .state = a},
                                  &asker),
                 HM_OK);
    cr_assert_eq(hm_runtime_send(rt, asker, hm_msg_create(&GO, NULL, 0)),
                 HM_OK);
    sem_wait(&noticed);
    cr_assert_eq(noticed_from, a);
    hm_addr_release(asker);
    hm_addr_release(a);
    hm_runtime_destroy(rt);
    sem_destroy(&noticed);
}

Test(room, a_notice_never_sent_is_freed_at_close, .timeout = 30)
{
    hm_runtime *rt;
    static gate g;
    static pump p;
    hm_addr *a, *pa;

    rt = start_pump(&g, &p, &a, &pa);
    cr_assert_eq(atomic_load(&p.refused), 1);
    hm_addr_release(pa);
    hm_addr_release(a);
    hm_runtime_destroy(rt); /* the gate never opens (ASan: no leak) */
    cr_assert_eq(atomic_load(&p.notices), 0);
    sem_destroy(&p.step);
}
