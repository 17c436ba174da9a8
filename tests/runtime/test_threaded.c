/* tests/runtime/test_threaded.c: the runtime with real worker threads:
 * ping-pong, many senders, calls, timers, idle deactivation, close. */
#include "runtime/runtime.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const hm_type BALL = {.name = "t.ball"};
static const hm_type SEQ = {.name = "t.seq"};
static const hm_type GET = {.name = "t.get"};
static const hm_type SPIN = {.name = "t.spin"};

static sem_t done;

static bool sem_wait_ms(sem_t *s, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return sem_timedwait(s, &ts) == 0;
}

/* --- ping-pong: "p/a" and "p/b" bounce a ball `arg` times. */
static hm_err player(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_addr *other = state;
    uint64_t left = hm_msg_arg(msg);

    (void)ctx;
    if (left == 0) {
        sem_post(&done);
        return HM_OK;
    }
    return hm_ctx_send(ctx, other, hm_msg_create(&BALL, NULL, left - 1));
}

/* --- a sequence checker: state = next expected seq per sender (8). */
typedef struct seqs {
    uint64_t next[8];
    uint64_t total;
} seqs;

static hm_err checker(hm_ctx *ctx, void *state, hm_msg *msg)
{
    seqs *s = state;

    if (hm_msg_type(msg) == &GET)
        return hm_ctx_reply(ctx, msg, hm_msg_create(&GET, NULL, s->total));
    uint64_t sender = hm_msg_arg(msg) >> 32, n = hm_msg_arg(msg) & 0xffffffff;
    if (sender >= 8 || s->next[sender] != n)
        return HM_EPROTO; /* out of order: the test sees handler_errors */
    s->next[sender]++;
    s->total++;
    return HM_OK;
}

static void free_state(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    (void)ctx;
    (void)why;
    free(state);
}
static const hm_hooks free_hooks = {.deactivate = free_state};

static _Atomic int idle_deactivations;
static void idle_hook(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    (void)ctx;
    (void)state;
    if (why == HM_DEACTIVATE_IDLE) {
        atomic_fetch_add(&idle_deactivations, 1);
        sem_post(&done);
    }
}
static const hm_hooks idle_hooks = {.deactivate = idle_hook};

static hm_err poster(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)ctx;
    (void)state;
    (void)msg;
    sem_post(&done);
    return HM_OK;
}

static hm_err spinner(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    (void)msg;
    /* Sends itself a message forever: a busy receiver. Once the runtime
     * closes the send fails and the message is ours to free. */
    hm_msg *m = hm_msg_create(&SPIN, NULL, 0);
    if (hm_ctx_send(ctx, hm_ctx_self(ctx), m) != HM_OK)
        hm_msg_destroy(m);
    return HM_OK;
}

/* Counts timer messages handled before their due time (the argument, in
 * ns of CLOCK_MONOTONIC, stamped just before arming). */
static _Atomic int early_count;
static hm_err due_checker(hm_ctx *ctx, void *state, hm_msg *msg)
{
    struct timespec ts;

    (void)ctx;
    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec <
        hm_msg_arg(msg))
        atomic_fetch_add(&early_count, 1);
    sem_post(&done);
    return HM_OK;
}

/* A child made for "fan/<i>": replies to whoever woke it, then parks. */
static hm_err fan_child(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    return hm_ctx_send(ctx, hm_msg_from(msg),
                       hm_msg_create(&BALL, NULL, hm_msg_arg(msg)));
}

/* A child made for "meet/<i>": counts itself in, then waits (its turn
 * stays long) until a second child has counted in too, or 10 s pass;
 * counts in `met` whether it saw one. Two such children can meet only on
 * two workers at once. */
static atomic_int arrived, met;

static hm_err meet_child(hm_ctx *ctx, void *state, hm_msg *msg)
{
    struct timespec t0, t;

    (void)ctx, (void)state, (void)msg;
    atomic_fetch_add(&arrived, 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (atomic_load(&arrived) >= 2) {
            atomic_fetch_add(&met, 1);
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 10);
    sem_post(&done);
    return HM_OK;
}

/* The parent: wakes "meet/a", "meet/b" and "meet/c" in one turn. */
static hm_err meet_parent(hm_ctx *ctx, void *state, hm_msg *msg)
{
    static const char *const names[] = {"meet/a", "meet/b", "meet/c"};

    (void)state, (void)msg;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(hm_ctx_send_name(ctx, names[i],
                                      hm_msg_create(&BALL, NULL, 0)),
                     HM_OK);
    return HM_OK;
}

static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    (void)arg;
    if (strncmp(name, "meet/", 5) == 0) {
        *out = (hm_receiver){.handler = meet_child};
        return HM_OK;
    }
    if (strncmp(name, "fan/", 4) == 0) {
        *out = (hm_receiver){.handler = fan_child};
        return HM_OK;
    }
    if (strncmp(name, "due/", 4) == 0) {
        *out = (hm_receiver){.handler = due_checker};
        return HM_OK;
    }
    if (strncmp(name, "seq/", 4) == 0)
        /* Pinned: the runtime's idle timeout is 40 ms, and on a loaded
         * machine every sender can be descheduled longer than that; an idle
         * deactivation would free the expected sequence numbers and the next
         * message would look out of order. */
        *out = (hm_receiver){.handler = checker,
                             .state = calloc(1, sizeof(seqs)),
                             .hooks = &free_hooks,
                             .pinned = true};
    else if (strncmp(name, "idle/", 5) == 0)
        *out = (hm_receiver){.handler = poster, .hooks = &idle_hooks};
    else if (strncmp(name, "post/", 5) == 0)
        *out = (hm_receiver){.handler = poster};
    else if (strncmp(name, "spin/", 5) == 0)
        *out = (hm_receiver){.handler = spinner};
    else
        return HM_ENOTFOUND;
    return HM_OK;
}

static hm_runtime *rt;

static void setup(void)
{
    sem_init(&done, 0, 0);
    atomic_store(&idle_deactivations, 0);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                        .idle_timeout_ms = 40,
                                                        .factory = factory},
                                   &rt),
                 HM_OK);
}

static void teardown(void)
{
    hm_runtime_destroy(rt);
    sem_destroy(&done);
}

/* Spawns two pinned players named `na` and `nb` on `r`, each the other's
 * partner; returns their addresses (owned). */
static void spawn_players(hm_runtime *r, const char *na, const char *nb,
                          hm_addr **a, hm_addr **b)
{
    hm_runtime_intern(r, na, a);
    hm_runtime_intern(r, nb, b);
    hm_runtime_spawn(r, na,
                     &(hm_receiver){.handler = player, .state = *b,
                                    .pinned = true},
                     NULL);
    hm_runtime_spawn(r, nb,
                     &(hm_receiver){.handler = player, .state = *a,
                                    .pinned = true},
                     NULL);
}

TestSuite(threaded, .init = setup, .fini = teardown, .timeout = 30);

Test(threaded, two_receivers_play_ping_pong)
{
    hm_addr *a, *b;

    spawn_players(rt, "p/a", "p/b", &a, &b);
    hm_runtime_send(rt, a, hm_msg_create(&BALL, NULL, 100000));
    cr_assert(sem_wait_ms(&done, 20000));
    hm_runtime_stats st;
    cr_assert_eq(hm_runtime_wait_idle(rt, 5000), HM_OK);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.delivered, 100001);
    hm_addr_release(a);
    hm_addr_release(b);
}

typedef struct sender_arg {
    hm_addr *to;
    uint64_t id;
    int count;
} sender_arg;

static void *sender_main(void *p)
{
    sender_arg *s = p;
    for (int i = 0; i < s->count; i++)
        cr_assert_eq(hm_runtime_send(rt, s->to,
                                     hm_msg_create(&SEQ, NULL,
                                                   (s->id << 32) |
                                                       (uint64_t)i)),
                     HM_OK);
    return NULL;
}

/* Four threads send `each` numbered messages to the checker `to` on rt;
 * then a call checks that all arrived, each sender's in order. */
static void send_in_order(hm_addr *to, int each)
{
    enum { SENDERS = 4 };
    pthread_t t[SENDERS];
    sender_arg args[SENDERS];
    hm_msg *reply;

    for (int i = 0; i < SENDERS; i++) {
        args[i] = (sender_arg){.to = to, .id = (uint64_t)i, .count = each};
        pthread_create(&t[i], NULL, sender_main, &args[i]);
    }
    for (int i = 0; i < SENDERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(hm_runtime_call(rt, to, hm_msg_create(&GET, NULL, 0), 10000,
                                 &reply),
                 HM_OK);
    cr_assert_eq(hm_msg_arg(reply), (uint64_t)SENDERS * (uint64_t)each);
    hm_msg_destroy(reply);
}

Test(threaded, each_senders_messages_arrive_in_order_under_contention)
{
    hm_addr *to;
    hm_runtime_stats st;

    hm_runtime_intern(rt, "seq/1", &to);
    send_in_order(to, 50000);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.handler_errors, 0);
    hm_addr_release(to);
}

static void *caller_main(void *p)
{
    hm_addr *to = p;
    for (int i = 0; i < 200; i++) {
        hm_msg *reply;
        cr_assert_eq(hm_runtime_call(rt, to, hm_msg_create(&GET, NULL, 0),
                                     10000, &reply),
                     HM_OK);
        cr_assert_eq(hm_msg_type(reply), &GET);
        hm_msg_destroy(reply);
    }
    return NULL;
}

Test(threaded, calls_from_many_threads_each_get_their_reply)
{
    pthread_t t[4];
    hm_addr *to;

    hm_runtime_intern(rt, "seq/calls", &to);
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, caller_main, to);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    hm_addr_release(to);
}

Test(threaded, a_timer_delivers_after_its_delay)
{
    hm_addr *a;

    hm_runtime_intern(rt, "post/1", &a);
    hm_runtime_send_after(rt, a, hm_msg_create(&BALL, NULL, 0), 20, NULL);
    cr_assert(sem_wait_ms(&done, 5000));
    hm_addr_release(a);
}

Test(threaded, no_timer_fires_before_its_delay_has_passed)
{
    enum { N = 400 };
    hm_addr *a;
    struct timespec ts;

    atomic_store(&early_count, 0);
    hm_runtime_intern(rt, "due/1", &a);
    for (int i = 0; i < N; i++) {
        /* Spread the arming over many points inside the millisecond: a
         * deadline of now_ms + delay would fire early for most of them. */
        struct timespec pause = {0, 37000L * (i % 7)};
        uint64_t delay = (uint64_t)(i % 4);

        nanosleep(&pause, NULL);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t due = (uint64_t)ts.tv_sec * 1000000000u +
                       (uint64_t)ts.tv_nsec + delay * 1000000u;
        hm_runtime_send_after(rt, a, hm_msg_create(&BALL, NULL, due),
                              (uint32_t)delay, NULL);
    }
    for (int i = 0; i < N; i++)
        cr_assert(sem_wait_ms(&done, 5000));
    cr_assert_eq(atomic_load(&early_count), 0, "%d of %d timers came early",
                 atomic_load(&early_count), N);
    hm_addr_release(a);
}

/* Arms ARMS one-shot timers without ids (the lock-free intake,
 * docs/adr/0250) to "due/1", 0-3 ms, each stamped with its due time. */
enum { ARMERS = 4, ARMS = 3000 };
static void *armer_main(void *arg)
{
    hm_runtime *r = arg;
    hm_addr *a;
    struct timespec ts;

    hm_runtime_intern(r, "due/1", &a);
    for (int i = 0; i < ARMS; i++) {
        uint64_t delay = (uint64_t)(i % 4);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t due = (uint64_t)ts.tv_sec * 1000000000u +
                       (uint64_t)ts.tv_nsec + delay * 1000000u;
        hm_runtime_send_after(r, a, hm_msg_create(&BALL, NULL, due),
                              (uint32_t)delay, NULL);
    }
    hm_addr_release(a);
    return NULL;
}

Test(threaded, timers_armed_from_many_threads_all_fire_and_none_early)
{
    pthread_t t[ARMERS];

    /* 12,000 arms from four threads at once outrun the intake's 4,096
     * cells, so both the intake and the locked fallback are taken. */
    atomic_store(&early_count, 0);
    for (int i = 0; i < ARMERS; i++)
        pthread_create(&t[i], NULL, armer_main, rt);
    for (int i = 0; i < ARMERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < ARMERS * ARMS; i++)
        cr_assert(sem_wait_ms(&done, 5000), "only %d of %d timers fired", i,
                  ARMERS * ARMS);
    cr_assert_eq(atomic_load(&early_count), 0, "%d timers came early",
                 atomic_load(&early_count));
}

Test(threaded, an_idle_receiver_is_deactivated_and_a_timer_brings_it_back)
{
    hm_addr *a;

    hm_runtime_intern(rt, "idle/1", &a);
    hm_runtime_send(rt, a, hm_msg_create(&BALL, NULL, 0));
    cr_assert(sem_wait_ms(&done, 5000)); /* handled */
    cr_assert(sem_wait_ms(&done, 5000)); /* deactivated when idle */
    cr_assert_eq(atomic_load(&idle_deactivations), 1);
    hm_runtime_send_after(rt, a, hm_msg_create(&BALL, NULL, 0), 5, NULL);
    cr_assert(sem_wait_ms(&done, 5000)); /* reactivated and handled */
    hm_runtime_stats st;
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.activations, 2);
    hm_addr_release(a);
}

Test(threaded, close_returns_while_a_receiver_is_busy_forever)
{
    hm_addr *a;

    hm_runtime_intern(rt, "spin/1", &a);
    hm_runtime_send(rt, a, hm_msg_create(&SPIN, NULL, 0));
    hm_addr_release(a);
    hm_runtime_destroy(rt); /* must not hang */
    rt = NULL;
    cr_assert(true);
}

static hm_err call_inside(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_msg *reply, *m = hm_msg_create(&GET, NULL, 0);

    (void)state;
    (void)msg;
    cr_assert_eq(hm_runtime_call(hm_ctx_runtime(ctx), hm_ctx_self(ctx), m, 10,
                                 &reply),
                 HM_EINVAL);
    hm_msg_destroy(m);
    sem_post(&done);
    return HM_OK;
}

Test(threaded, a_blocking_call_from_a_handler_is_refused)
{
    hm_addr *a;

    hm_runtime_spawn(rt, "svc/call", &(hm_receiver){.handler = call_inside},
                     &a);
    hm_runtime_send(rt, a, hm_msg_create(&BALL, NULL, 0));
    cr_assert(sem_wait_ms(&done, 5000));
    hm_addr_release(a);
}

Test(threaded, wait_idle_returns_once_all_messages_are_handled)
{
    hm_addr *a;
    hm_runtime_stats st;

    hm_runtime_intern(rt, "seq/w", &a);
    for (int i = 0; i < 10000; i++)
        hm_runtime_send(rt, a, hm_msg_create(&SEQ, NULL, (uint64_t)i));
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.delivered, 10000);
    hm_addr_release(a);
}

/* --- a fan-out: SEQ(n) makes the parent address "fan/0".."fan/<n-1>" by
 * name (activating each on first use); each child's reply is counted. */
typedef struct fan {
    uint64_t replies, want;
} fan;

static hm_err fan_parent(hm_ctx *ctx, void *state, hm_msg *msg)
{
    fan *f = state;
    char name[32];

    if (hm_msg_type(msg) == &BALL) {
        if (++f->replies == f->want)
            sem_post(&done);
        return HM_OK;
    }
    f->want += hm_msg_arg(msg);
    for (uint64_t i = 0; i < hm_msg_arg(msg); i++) {
        hm_msg *m = hm_msg_create(&BALL, NULL, i);
        snprintf(name, sizeof name, "fan/%llu", (unsigned long long)i);
        if (hm_ctx_send_name(ctx, name, m) != HM_OK) {
            hm_msg_destroy(m);
            return HM_EPROTO;
        }
    }
    return HM_OK;
}

/* The workers take the parks they owe off the busy count in batches
 * (docs/adr/0205): whenever they run out of work the count must still
 * reach zero, round after round, or wait_idle would time out. */
Test(threaded, wait_idle_returns_after_each_fan_out_of_activations)
{
    fan f = {0};
    hm_addr *p;
    hm_runtime_stats st;

    cr_assert_eq(hm_runtime_spawn(rt, "fan-parent",
                                  &(hm_receiver){.handler = fan_parent,
                                                 .state = &f,
                                                 .pinned = true},
                                  &p),
                 HM_OK);
    for (int round = 1; round <= 3; round++) {
        hm_runtime_send(rt, p, hm_msg_create(&SEQ, NULL, 20000));
        cr_assert(sem_wait_ms(&done, 20000), "round %d: no last reply",
                  round);
        cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK,
                     "round %d: never idle", round);
        hm_runtime_stats_get(rt, &st);
        cr_assert_eq(f.replies, 20000u * (uint64_t)round);
        /* The suite's 40 ms idle timeout may retire children between
         * rounds; the next round activates them again. */
        cr_assert_geq(st.activations, 20001);
        cr_assert_eq(st.handler_errors, 0);
        cr_assert_eq(st.dead_letters, 0);
    }
    hm_addr_release(p);
}

static hm_err rally(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_addr *other = state;

    (void)msg;
    /* Forever: the pair keeps each other in the worker's runnext slot. */
    hm_msg *m = hm_msg_create(&BALL, NULL, 1);
    if (hm_ctx_send(ctx, other, m) != HM_OK)
        hm_msg_destroy(m);
    return HM_OK;
}

typedef struct kick {
    hm_addr *first, *then;
} kick;

/* Wakes `first` then `then` from inside the worker: `first` lands in the
 * worker's ring behind `then`, which takes the runnext slot. */
static hm_err kicker(hm_ctx *ctx, void *state, hm_msg *msg)
{
    kick *k = state;

    (void)msg;
    hm_ctx_send(ctx, k->first, hm_msg_create(&BALL, NULL, 0));
    hm_ctx_send(ctx, k->then, hm_msg_create(&BALL, NULL, 1));
    return HM_OK;
}

Test(threaded, a_ping_pong_pair_cannot_starve_a_third_receiver_on_one_worker)
{
    hm_runtime *r1;
    hm_addr *a, *b, *c, *k;
    kick kk;

    hm_runtime_create(&(hm_runtime_config){.threads = 1, .factory = factory},
                      &r1);
    hm_runtime_intern(r1, "rally/a", &a);
    hm_runtime_intern(r1, "rally/b", &b);
    hm_runtime_spawn(r1, "rally/a",
                     &(hm_receiver){.handler = rally, .state = b,
                                    .pinned = true},
                     NULL);
    hm_runtime_spawn(r1, "rally/b",
                     &(hm_receiver){.handler = rally, .state = a,
                                    .pinned = true},
                     NULL);
    hm_runtime_intern(r1, "post/starved", &c);
    kk = (kick){.first = c, .then = a};
    hm_runtime_spawn(r1, "kicker", &(hm_receiver){.handler = kicker,
                                                  .state = &kk},
                     &k);
    hm_runtime_send(r1, k, hm_msg_create(&BALL, NULL, 0));
    cr_assert(sem_wait_ms(&done, 10000));
    hm_addr_release(k);
    hm_addr_release(a);
    hm_addr_release(b);
    hm_addr_release(c);
    hm_runtime_destroy(r1);
}

/* Children woken in one turn that stay long in theirs still spread over
 * the workers: the one whose worker is busy with a long turn (its ring's
 * ends stand still) is taken by the other worker (docs/adr/0285). Left on
 * the waking worker, the first child would wait its 10 s out alone. */
Test(threaded, children_woken_together_that_run_long_spread_over_workers)
{
    hm_addr *p;

    atomic_store(&arrived, 0);
    atomic_store(&met, 0);
    cr_assert_eq(hm_runtime_spawn(rt, "meet/parent",
                                  &(hm_receiver){.handler = meet_parent},
                                  &p),
                 HM_OK);
    cr_assert_eq(hm_runtime_send(rt, p, hm_msg_create(&BALL, NULL, 0)),
                 HM_OK);
    for (int i = 0; i < 3; i++)
        cr_assert(sem_wait_ms(&done, 25000), "child %d never ran", i);
    cr_assert_eq(atomic_load(&met), 3, "only %d of 3 children met another",
                 atomic_load(&met));
    hm_addr_release(p);
}

/* A process that may use one core only (taskset) gets workers that never
 * spin (docs/adr/0235): every hand-off to an idle worker is then a sleep
 * and a wake-up, and none may be lost. Four outside threads send in order
 * while the workers fall asleep between bursts, then a ping-pong of
 * pinned receivers, then calls. A lost wake-up hangs one of them. */
Test(threaded, workers_on_one_core_sleep_without_spinning_and_lose_no_wake_up)
{
    pthread_t t[2];
    hm_runtime *saved = rt, *r1;
    hm_addr *to, *a, *b;
    cpu_set_t one;
    int cpu = sched_getcpu();

    CPU_ZERO(&one);
    CPU_SET(cpu >= 0 ? cpu : 0, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                        .factory = factory},
                                   &r1),
                 HM_OK);
    cr_assert_not(hm_runtime_has_spare_core(r1));
    rt = r1; /* sender_main and caller_main use rt */
    hm_runtime_intern(r1, "seq/onecore", &to);
    send_in_order(to, 20000);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, caller_main, to);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    spawn_players(r1, "p/one-a", "p/one-b", &a, &b);
    hm_runtime_send(r1, a, hm_msg_create(&BALL, NULL, 20000));
    cr_assert(sem_wait_ms(&done, 20000));
    cr_assert_eq(hm_runtime_wait_idle(r1, 5000), HM_OK);
    hm_addr_release(a);
    hm_addr_release(b);
    hm_addr_release(to);
    rt = saved;
    hm_runtime_destroy(r1);
}
