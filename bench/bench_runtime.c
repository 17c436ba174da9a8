/* bench/bench_runtime.c: the Hermes side of the runtime benchmark suite.
 *
 * Eight scenarios after the Savina suite, written the way a user of
 * runtime/runtime.h would write them: receivers addressed by interned
 * handles on every hot path (hm_runtime_intern once, then hm_ctx_send),
 * request/reply through hm_ctx_request, timers through
 * hm_runtime_send_after, receivers created on demand by the factory and
 * retired with hm_ctx_deactivate. The same scenarios exist for Erlang and
 * Go in bench/peers/, and bench/suite_runtime.sh runs them side by side
 * (docs/benchmarks.md says what each one measures).
 *
 * The key decision: the end of a run is stamped by the receiver that sees
 * the last message, not by the main thread noticing it, so the main
 * thread's polling never shows up in a figure. Each scenario gets a fresh
 * runtime (and the suite runs each scenario in a fresh process), so one
 * scenario's heap never inflates the next one's memory figure.
 *
 * Usage: bench_runtime [--smoke] [--div N] [SCENARIO...]  (default: all)
 * --div N divides every count by N, to profile under valgrind.
 * Prints TSV rows `scenario hermes value unit better`; with --smoke it runs
 * tiny sizes, checks every count, token and reply, and prints `ok` lines
 * instead of times. Exits 1 on a failed check. */
#include "bench/bench_common.h"
#include "runtime/runtime.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define PROG "bench_runtime"
#define FANIN_SENDERS 4
#define REQUEST_PAIRS 4
#define CREATE_CHUNK 1024 /* children the parent addresses per turn */

typedef struct sizes {
    uint64_t pingpong_rounds;
    uint64_t ring_actors, ring_hops;
    uint64_t fanin_count;
    uint64_t create_count;
    uint64_t churn_cycles, churn_names;
    uint64_t timer_count, timer_max_ms;
    uint64_t request_total;
    uint64_t memory_count;
    uint32_t wait_s; /* give up (and fail) after this long */
} sizes;

static const sizes FULL = {
    .pingpong_rounds = 1000000,
    .ring_actors = 503, .ring_hops = 10000000,
    .fanin_count = 20000000,
    .create_count = 1000000,
    .churn_cycles = 1000000, .churn_names = 1000,
    .timer_count = 1000000, .timer_max_ms = 1000,
    .request_total = 1000000,
    .memory_count = 1000000,
    .wait_s = 300,
};

static const sizes SMOKE = {
    .pingpong_rounds = 1000,
    .ring_actors = 503, .ring_hops = 1000,
    .fanin_count = 1000,
    .create_count = 1000,
    .churn_cycles = 1000, .churn_names = 100,
    .timer_count = 1000, .timer_max_ms = 20,
    .request_total = 1000,
    .memory_count = 1000,
    .wait_s = 30,
};

/* Message types: payload-free, the argument carries everything. */
static const hm_type T_START = {.name = "bench.start"};
static const hm_type T_PING = {.name = "bench.ping"};
static const hm_type T_PONG = {.name = "bench.pong"};
static const hm_type T_TOKEN = {.name = "bench.token"};
static const hm_type T_ITEM = {.name = "bench.item"};
static const hm_type T_WORK = {.name = "bench.work"};
static const hm_type T_DONE = {.name = "bench.done"};
static const hm_type T_MORE = {.name = "bench.more"};
static const hm_type T_FIRE = {.name = "bench.fire"};
static const hm_type T_REQ = {.name = "bench.req"};
static const hm_type T_REP = {.name = "bench.rep"};

/* One scenario run: the runtime, its sizes, and what the receivers report
 * back to the main thread. */
typedef struct bench {
    hm_runtime *rt;
    const sizes *sz;
    bool smoke;
    atomic_uint_fast64_t end_ns;   /* stamped by the last receiver */
    atomic_uint_fast64_t progress; /* scenario-defined count */
    atomic_uint_fast64_t errors;   /* failed sends or replies */
    atomic_uint_fast64_t last;     /* scenario-defined final value */
} bench;

/* ------------------------------------------------------------ helpers */

/* Stamps the end of the run. release: pairs with the acquire load in
 * await_end(), so the main thread sees every receiver's state written
 * before the stamp. */
static void finish(bench *b)
{
    atomic_store_explicit(&b->end_ns, bench_now_ns(), memory_order_release);
}

static void count_error(bench *b)
{
    /* relaxed: a plain counter, read after the run. */
    atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
}

/* Sends a payload-free message from inside a receiver. */
static hm_err send_arg(hm_ctx *ctx, bench *b, hm_addr *to, const hm_type *t,
                       uint64_t arg)
{
    hm_msg *m = hm_msg_create(t, NULL, arg);
    hm_err err = hm_ctx_send(ctx, to, m);

    if (err != HM_OK) {
        hm_msg_destroy(m);
        count_error(b);
    }
    return err;
}

/* Sends a payload-free message from outside the runtime; fails the run on
 * error. */
static void post(bench *b, hm_addr *to, const hm_type *t, uint64_t arg)
{
    hm_msg *m = hm_msg_create(t, NULL, arg);
    hm_err err = hm_runtime_send(b->rt, to, m);

    if (err != HM_OK)
        bench_fail(PROG, "send to %s: %s", hm_addr_name(to), hm_err_str(err));
}

static hm_addr *intern(bench *b, const char *name)
{
    hm_addr *a;
    hm_err err = hm_runtime_intern(b->rt, name, &a);

    if (err != HM_OK)
        bench_fail(PROG, "intern %s: %s", name, hm_err_str(err));
    return a;
}

/* Spawns a pinned receiver at `name`; returns an owned reference. */
static hm_addr *spawn(bench *b, const char *name, hm_handler_fn fn,
                      void *state)
{
    hm_receiver r = {.handler = fn, .state = state, .pinned = true};
    hm_addr *a;
    hm_err err = hm_runtime_spawn(b->rt, name, &r, &a);

    if (err != HM_OK)
        bench_fail(PROG, "spawn %s: %s", name, hm_err_str(err));
    return a;
}

/* Waits until a receiver stamps the end, sleeping in the runtime's own
 * idle wait when it can and polling every millisecond when the runtime is
 * idle but not finished (timers pending). Returns the end stamp. */
static uint64_t await_end(bench *b, const char *what)
{
    uint64_t give_up = bench_now_ns() + (uint64_t)b->sz->wait_s * 1000000000u;
    uint64_t end;

    /* acquire: pairs with the release store in finish(). */
    while ((end = atomic_load_explicit(&b->end_ns, memory_order_acquire)) ==
           0) {
        if (bench_now_ns() > give_up)
            bench_fail(PROG, "%s: no end after %u s (progress %llu)", what,
                       b->sz->wait_s,
                       (unsigned long long)atomic_load(&b->progress));
        if (hm_runtime_wait_idle(b->rt, 100) == HM_OK)
            bench_sleep_us(1000);
    }
    return end;
}

/* Waits for the runtime to drain after the end (deactivations, replies in
 * flight) so that its counters are exact. */
static void settle(bench *b, hm_runtime_stats *st)
{
    if (hm_runtime_wait_idle(b->rt, b->sz->wait_s * 1000u) != HM_OK)
        bench_fail(PROG, "runtime did not become idle");
    hm_runtime_stats_get(b->rt, st);
    bench_check(PROG, "failed sends or replies", atomic_load(&b->errors), 0);
}

static hm_err factory(void *arg, const char *name, hm_receiver *out);

static void open_runtime(bench *b, const sizes *sz, bool smoke,
                         uint32_t idle_timeout_ms)
{
    hm_runtime_config cfg = {.threads = 0,
                             .idle_timeout_ms = idle_timeout_ms,
                             .factory = factory,
                             .factory_arg = b};
    hm_err err;

    memset(b, 0, sizeof *b);
    b->sz = sz;
    b->smoke = smoke;
    if ((err = hm_runtime_create(&cfg, &b->rt)) != HM_OK)
        bench_fail(PROG, "hm_runtime_create: %s", hm_err_str(err));
}

static double seconds(uint64_t t0, uint64_t t1)
{
    return (double)(t1 - t0) / 1e9;
}

/* Writes `prefix` and the decimal `i` into `buf` (at least 32 bytes). Not
 * snprintf: formatting a million names with it cost a fifth of the
 * instructions of `create` under callgrind, which would be charged to the
 * runtime although the peers format no names at all. */
static const char *name_of(char *buf, char prefix, uint64_t i)
{
    char digits[24];
    size_t n = 0, len = 0;

    do {
        digits[n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i > 0);
    buf[len++] = prefix;
    while (n > 0)
        buf[len++] = digits[--n];
    buf[len] = '\0';
    return buf;
}

/* ------------------------------------------------------------ pingpong */

typedef struct pp_state {
    bench *b;
    hm_addr *peer; /* borrowed: main holds the reference */
    uint64_t received;
} pp_state;

/* A gets START(n) from main and PONG(k) from B; B answers PING(k) with
 * PONG(k). A round trip is one PING and one PONG. */
static hm_err pp_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    pp_state *s = state;
    const hm_type *t = hm_msg_type(msg);
    uint64_t k = hm_msg_arg(msg);

    s->received++;
    if (t == &T_PING)
        return send_arg(ctx, s->b, s->peer, &T_PONG, k);
    if (t == &T_PONG && k == 1) {
        finish(s->b);
        return HM_OK;
    }
    return send_arg(ctx, s->b, s->peer, &T_PING, t == &T_PONG ? k - 1 : k);
}

static void run_pingpong(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->pingpong_rounds, t0, t1;
    pp_state sa = {&b, NULL, 0}, sb = {&b, NULL, 0};
    hm_addr *a, *bb;
    hm_runtime_stats st;

    open_runtime(&b, sz, smoke, 0);
    a = intern(&b, "pp/a");
    bb = intern(&b, "pp/b");
    sa.peer = bb;
    sb.peer = a;
    hm_addr_release(spawn(&b, "pp/a", pp_handle, &sa));
    hm_addr_release(spawn(&b, "pp/b", pp_handle, &sb));
    t0 = bench_now_ns();
    post(&b, a, &T_START, n);
    t1 = await_end(&b, "pingpong");
    settle(&b, &st);
    if (smoke) {
        bench_check(PROG, "pingpong: pongs at A", sa.received, n + 1);
        bench_check(PROG, "pingpong: pings at B", sb.received, n);
        printf("ok pingpong hermes: %llu round trips\n",
               (unsigned long long)n);
    } else {
        bench_row("pingpong", "hermes", 2.0 * (double)n / seconds(t0, t1),
                  "msg/s", "higher");
    }
    hm_addr_release(a);
    hm_addr_release(bb);
    hm_runtime_destroy(b.rt);
}

/* ---------------------------------------------------------------- ring */

typedef struct ring_state {
    bench *b;
    hm_addr *next; /* borrowed: main holds the reference */
    uint64_t index, received;
} ring_state;

/* TOKEN(k): k hops are left; the receiver that gets TOKEN(0) ends it. */
static hm_err ring_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    ring_state *s = state;
    uint64_t k = hm_msg_arg(msg);

    s->received++;
    if (k > 0)
        return send_arg(ctx, s->b, s->next, &T_TOKEN, k - 1);
    /* relaxed: published by finish()'s release store. */
    atomic_store_explicit(&s->b->last, s->index, memory_order_relaxed);
    finish(s->b);
    return HM_OK;
}

static void run_ring(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->ring_actors, hops = sz->ring_hops, t0, t1, sum = 0;
    ring_state *rs = calloc(n, sizeof *rs);
    hm_addr **addr = calloc(n, sizeof *addr);
    hm_runtime_stats st;
    char name[32];

    open_runtime(&b, sz, smoke, 0);
    for (uint64_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "ring/%llu", (unsigned long long)i);
        addr[i] = intern(&b, name);
    }
    for (uint64_t i = 0; i < n; i++) {
        rs[i] = (ring_state){.b = &b, .next = addr[(i + 1) % n], .index = i};
        hm_addr_release(spawn(&b, hm_addr_name(addr[i]), ring_handle, &rs[i]));
    }
    t0 = bench_now_ns();
    post(&b, addr[0], &T_TOKEN, hops);
    t1 = await_end(&b, "ring");
    settle(&b, &st);
    for (uint64_t i = 0; i < n; i++)
        sum += rs[i].received;
    if (smoke) {
        bench_check(PROG, "ring: messages handled", sum, hops + 1);
        bench_check(PROG, "ring: receiver holding the token at the end",
                    atomic_load(&b.last), hops % n);
        printf("ok ring hermes: %llu hops over %llu receivers\n",
               (unsigned long long)hops, (unsigned long long)n);
    } else {
        bench_row("ring", "hermes", (double)hops / seconds(t0, t1), "hops/s",
                  "higher");
    }
    for (uint64_t i = 0; i < n; i++)
        hm_addr_release(addr[i]);
    hm_runtime_destroy(b.rt);
    free(addr);
    free(rs);
}

/* --------------------------------------------------------------- fanin */

typedef struct fanin_state {
    bench *b;
    uint64_t total, received, out_of_order;
    uint64_t next_seq[FANIN_SENDERS];
} fanin_state;

/* ITEM(sender << 48 | seq): counts, and checks each sender's order. */
static hm_err fanin_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    fanin_state *s = state;
    uint64_t arg = hm_msg_arg(msg), who = arg >> 48;

    if (who >= FANIN_SENDERS || (arg & 0xffffffffffffull) != s->next_seq[who])
        s->out_of_order++;
    else
        s->next_seq[who]++;
    if (++s->received == s->total)
        finish(s->b);
    return HM_OK;
}

/* The senders are plain threads outside the runtime (docs/adr/0020), as a
 * server's own threads would be. A refused send (HM_EFULL, only with a
 * mailbox bound) is retried after yielding. */
typedef struct fanin_sender {
    bench *b;
    hm_addr *sink;
    uint64_t index, count, full; /* full: sends refused with HM_EFULL */
    atomic_bool *go;
} fanin_sender;

static void *fanin_send(void *arg)
{
    fanin_sender *f = arg;

    /* acquire: pairs with the release store that starts the run. */
    while (!atomic_load_explicit(f->go, memory_order_acquire))
        sched_yield();
    for (uint64_t i = 0; i < f->count; i++) {
        hm_msg *m = hm_msg_create(&T_ITEM, NULL, f->index << 48 | i);
        hm_err err;
        while ((err = hm_runtime_send(f->b->rt, f->sink, m)) == HM_EFULL) {
            f->full++;
            sched_yield();
        }
        if (err != HM_OK)
            bench_fail(PROG, "fanin send: %s", hm_err_str(err));
    }
    return NULL;
}

static void run_fanin(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t per = sz->fanin_count / FANIN_SENDERS, t0, t1, full = 0;
    fanin_state s = {.b = &b, .total = per * FANIN_SENDERS};
    fanin_sender snd[FANIN_SENDERS];
    pthread_t th[FANIN_SENDERS];
    atomic_bool go = false;
    hm_runtime_stats st;
    hm_addr *sink;

    open_runtime(&b, sz, smoke, 0);
    sink = spawn(&b, "fanin/sink", fanin_handle, &s);
    for (int i = 0; i < FANIN_SENDERS; i++) {
        snd[i] = (fanin_sender){.b = &b, .sink = sink, .index = (uint64_t)i,
                                .count = per, .go = &go};
        if (pthread_create(&th[i], NULL, fanin_send, &snd[i]) != 0)
            bench_fail(PROG, "pthread_create failed");
    }
    t0 = bench_now_ns();
    /* release: pairs with the acquire load in fanin_send(). */
    atomic_store_explicit(&go, true, memory_order_release);
    for (int i = 0; i < FANIN_SENDERS; i++) {
        pthread_join(th[i], NULL);
        full += snd[i].full;
    }
    t1 = await_end(&b, "fanin");
    settle(&b, &st);
    if (smoke) {
        bench_check(PROG, "fanin: messages received", s.received, s.total);
        bench_check(PROG, "fanin: out of per-sender order", s.out_of_order,
                    0);
        printf("ok fanin hermes: %llu messages from %d threads\n",
               (unsigned long long)s.total, FANIN_SENDERS);
    } else {
        bench_row("fanin", "hermes", (double)s.total / seconds(t0, t1),
                  "msg/s", "higher");
        fprintf(stderr, "fanin: mailbox high-water mark %llu, EFULL %llu\n",
                (unsigned long long)st.mailbox_hwm, (unsigned long long)full);
    }
    hm_addr_release(sink);
    hm_runtime_destroy(b.rt);
}

/* -------------------------------------------------------------- create */

typedef struct create_state {
    bench *b;
    uint64_t total, next, replies;
} create_state;

/* A child (made by the factory for "c<i>"): one reply to whoever woke it,
 * then it stays parked. */
static hm_err child_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    bench *b = state;
    return send_arg(ctx, b, hm_msg_from(msg), &T_DONE, hm_msg_arg(msg));
}

/* The parent: START(n) or MORE addresses the next CREATE_CHUNK children by
 * name (each send activates one), then asks itself for MORE so that the
 * replies are handled while it is still creating. */
static hm_err create_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    create_state *s = state;
    const hm_type *t = hm_msg_type(msg);
    char name[32];

    if (t == &T_DONE) {
        if (++s->replies == s->total)
            finish(s->b);
        return HM_OK;
    }
    if (t == &T_START)
        s->total = hm_msg_arg(msg);
    for (uint64_t end = s->next + CREATE_CHUNK; s->next < s->total &&
                                                s->next < end;
         s->next++) {
        hm_msg *m = hm_msg_create(&T_WORK, NULL, s->next);
        hm_err err;
        if ((err = hm_ctx_send_name(ctx, name_of(name, 'c', s->next), m)) !=
            HM_OK) {
            hm_msg_destroy(m);
            count_error(s->b);
            return err;
        }
    }
    if (s->next < s->total)
        return send_arg(ctx, s->b, hm_ctx_self(ctx), &T_MORE, 0);
    return HM_OK;
}

static void run_create(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->create_count, t0, t1;
    create_state s = {.b = &b};
    hm_runtime_stats st;
    hm_addr *parent;

    open_runtime(&b, sz, smoke, 0);
    parent = spawn(&b, "create/parent", create_handle, &s);
    t0 = bench_now_ns();
    post(&b, parent, &T_START, n);
    t1 = await_end(&b, "create");
    settle(&b, &st);
    if (smoke) {
        bench_check(PROG, "create: replies", s.replies, n);
        bench_check(PROG, "create: activations", st.activations, n + 1);
        bench_check(PROG, "create: live receivers", st.live, n + 1);
        printf("ok create hermes: %llu receivers\n", (unsigned long long)n);
    } else {
        bench_row("create", "hermes", seconds(t0, t1), "s", "lower");
    }
    hm_addr_release(parent);
    hm_runtime_destroy(b.rt);
}

/* --------------------------------------------------------------- churn */

typedef struct churn_state {
    bench *b;
    hm_addr **names; /* borrowed: main holds the references */
    uint64_t count, total, sent, done;
} churn_state;

/* A churn worker ("w<i>"): replies to the driver, then asks to be
 * deactivated; the driver's next message activates it again. */
static hm_err worker_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    bench *b = state;
    hm_err err = send_arg(ctx, b, hm_msg_from(msg), &T_DONE, hm_msg_arg(msg));

    hm_ctx_deactivate(ctx);
    return err;
}

/* The driver keeps one cycle in flight per name: START sends WORK to every
 * name; each DONE(i) starts the next cycle of name i. */
static hm_err churn_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    churn_state *s = state;
    uint64_t i = hm_msg_arg(msg);

    if (hm_msg_type(msg) == &T_START) {
        for (i = 0; i < s->count; i++) {
            hm_err err = send_arg(ctx, s->b, s->names[i], &T_WORK, i);
            if (err != HM_OK)
                return err;
        }
        s->sent = s->count;
        return HM_OK;
    }
    if (++s->done == s->total) {
        finish(s->b);
        return HM_OK;
    }
    if (s->sent == s->total || i >= s->count)
        return HM_OK;
    s->sent++;
    return send_arg(ctx, s->b, s->names[i], &T_WORK, i);
}

static void run_churn(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->churn_cycles, k = sz->churn_names, t0, t1;
    churn_state s = {.b = &b, .total = n};
    hm_runtime_stats st;
    hm_addr *driver;
    char name[32];

    if (k > n)
        k = n;
    open_runtime(&b, sz, smoke, 0);
    s.count = k;
    s.names = calloc(k, sizeof *s.names);
    for (uint64_t i = 0; i < k; i++) {
        s.names[i] = intern(&b, name_of(name, 'w', i));
    }
    driver = spawn(&b, "churn/driver", churn_handle, &s);
    t0 = bench_now_ns();
    post(&b, driver, &T_START, 0);
    t1 = await_end(&b, "churn");
    settle(&b, &st);
    if (smoke) {
        bench_check(PROG, "churn: cycles", s.done, n);
        bench_check(PROG, "churn: activations", st.activations, n + 1);
        bench_check(PROG, "churn: deactivations", st.deactivations, n);
        printf("ok churn hermes: %llu cycles over %llu names\n",
               (unsigned long long)n, (unsigned long long)k);
    } else {
        bench_row("churn", "hermes", (double)n / seconds(t0, t1), "cycles/s",
                  "higher");
    }
    for (uint64_t i = 0; i < k; i++)
        hm_addr_release(s.names[i]);
    hm_addr_release(driver);
    hm_runtime_destroy(b.rt);
    free(s.names);
}

/* -------------------------------------------------------------- timers */

typedef struct timer_state {
    bench *b;
    int64_t *late_us; /* one lateness per fired timer */
    uint64_t total, fired;
} timer_state;

/* FIRE(deadline in µs of bench_now_ns()): records how late it came. */
static hm_err timer_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    timer_state *s = state;
    int64_t now_us = (int64_t)(bench_now_ns() / 1000u);

    if (s->fired < s->total)
        s->late_us[s->fired] = now_us - (int64_t)hm_msg_arg(msg);
    if (++s->fired == s->total)
        finish(s->b);
    return HM_OK;
}

/* Timers fire on the runtime's millisecond clock, so one may come up to
 * 1 ms before a deadline measured in µs; anything earlier is a bug. */
#define TIMER_EARLY_US (-1010)

static void report_timers(timer_state *s, double arm_ns,
                          double cpu_ns, bool smoke)
{
    uint64_t early = 0;

    for (uint64_t i = 0; i < s->total; i++)
        early += s->late_us[i] < TIMER_EARLY_US;
    if (smoke) {
        bench_check(PROG, "timers: fired", s->fired, s->total);
        bench_check(PROG, "timers: fired more than 1 ms early", early, 0);
        printf("ok timers hermes: %llu timers\n",
               (unsigned long long)s->total);
        return;
    }
    if (early > 0)
        fprintf(stderr, "%s: timers: %llu fired early\n", PROG,
                (unsigned long long)early);
    qsort(s->late_us, s->total, sizeof *s->late_us, bench_cmp_i64);
    bench_row("timers-arm", "hermes", arm_ns, "ns/timer", "lower");
    bench_row("timers-cpu", "hermes", cpu_ns, "ns/timer", "lower");
    bench_row("timers-p50", "hermes",
              (double)bench_percentile(s->late_us, s->total, 50) / 1000.0,
              "ms", "lower");
    bench_row("timers-p99", "hermes",
              (double)bench_percentile(s->late_us, s->total, 99) / 1000.0,
              "ms", "lower");
}

static void run_timers(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->timer_count, rng = 0x9e3779b97f4a7c15ull;
    uint32_t *delay = calloc(n, sizeof *delay);
    timer_state s = {.b = &b, .total = n};
    uint64_t cpu0, t0, t1, t_end;
    hm_runtime_stats st;
    hm_addr *sink;

    s.late_us = calloc(n, sizeof *s.late_us);
    for (uint64_t i = 0; i < n; i++)
        delay[i] = (uint32_t)(bench_rand(&rng) % (sz->timer_max_ms + 1));
    open_runtime(&b, sz, smoke, 0);
    sink = spawn(&b, "timers/sink", timer_handle, &s);
    cpu0 = bench_cpu_ns();
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t due_us = bench_now_ns() / 1000u + delay[i] * 1000u;
        hm_msg *m = hm_msg_create(&T_FIRE, NULL, due_us);
        hm_err err = hm_runtime_send_after(b.rt, sink, m, delay[i], NULL);
        if (err != HM_OK)
            bench_fail(PROG, "send_after: %s", hm_err_str(err));
    }
    t1 = bench_now_ns();
    t_end = await_end(&b, "timers");
    (void)t_end;
    report_timers(&s, (double)(t1 - t0) / (double)n,
                  (double)(bench_cpu_ns() - cpu0) / (double)n, smoke);
    settle(&b, &st);
    if (smoke)
        bench_check(PROG, "timers: runtime's fired count", st.timers_fired, n);
    hm_addr_release(sink);
    hm_runtime_destroy(b.rt);
    free(s.late_us);
    free(delay);
}

/* ------------------------------------------------------------- request */

typedef struct client_state {
    bench *b;
    hm_addr *server; /* borrowed: main holds the reference */
    uint64_t left, replies, wrong;
} client_state;

static hm_err ask(hm_ctx *ctx, client_state *s);

/* The continuation: checks the reply (REP(k + 1) for REQ(k)), then asks
 * again until its share is done. */
static void client_reply(hm_ctx *ctx, void *state, hm_msg *reply, hm_err err,
                         void *arg)
{
    client_state *s = state;

    if (err != HM_OK || hm_msg_type(reply) != &T_REP ||
        hm_msg_arg(reply) != s->left + 1) {
        count_error(s->b);
        s->wrong++;
    }
    s->replies++;
    if (s->left > 0) {
        s->left--;
        ask(ctx, s);
        return;
    }
    /* acq_rel: the last client to finish sees the others' counts. */
    if (atomic_fetch_add_explicit(&s->b->progress, 1, memory_order_acq_rel) ==
        REQUEST_PAIRS - 1)
        finish(s->b);
}

static hm_err ask(hm_ctx *ctx, client_state *s)
{
    hm_msg *m = hm_msg_create(&T_REQ, NULL, s->left);
    hm_err err = hm_ctx_request(ctx, s->server, m, 60000, client_reply, NULL,
                                NULL);

    if (err != HM_OK) {
        hm_msg_destroy(m);
        count_error(s->b);
    }
    return err;
}

static hm_err client_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    client_state *s = state;
    s->left--;
    return ask(ctx, s);
}

static hm_err server_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_msg *rep = hm_msg_create(&T_REP, NULL, hm_msg_arg(msg) + 1);
    hm_err err = hm_ctx_reply(ctx, msg, rep);

    if (err != HM_OK) {
        hm_msg_destroy(rep);
        count_error(state);
    }
    return err;
}

static void run_request(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t per = sz->request_total / REQUEST_PAIRS, t0, t1, got = 0;
    client_state cs[REQUEST_PAIRS];
    hm_addr *client[REQUEST_PAIRS], *server[REQUEST_PAIRS];
    hm_runtime_stats st;
    char name[32];

    open_runtime(&b, sz, smoke, 0);
    for (int i = 0; i < REQUEST_PAIRS; i++) {
        snprintf(name, sizeof name, "rq/s%d", i);
        server[i] = spawn(&b, name, server_handle, &b);
        cs[i] = (client_state){.b = &b, .server = server[i], .left = per};
        snprintf(name, sizeof name, "rq/c%d", i);
        client[i] = spawn(&b, name, client_handle, &cs[i]);
    }
    t0 = bench_now_ns();
    for (int i = 0; i < REQUEST_PAIRS; i++)
        post(&b, client[i], &T_START, 0);
    t1 = await_end(&b, "request");
    settle(&b, &st);
    for (int i = 0; i < REQUEST_PAIRS; i++)
        got += cs[i].replies;
    if (smoke) {
        bench_check(PROG, "request: replies", got, per * REQUEST_PAIRS);
        for (int i = 0; i < REQUEST_PAIRS; i++)
            bench_check(PROG, "request: wrong replies", cs[i].wrong, 0);
        printf("ok request hermes: %llu round trips over %d pairs\n",
               (unsigned long long)got, REQUEST_PAIRS);
    } else {
        bench_row("request", "hermes", (double)got / seconds(t0, t1), "rt/s",
                  "higher");
    }
    for (int i = 0; i < REQUEST_PAIRS; i++) {
        hm_addr_release(client[i]);
        hm_addr_release(server[i]);
    }
    hm_runtime_destroy(b.rt);
}

/* -------------------------------------------------------------- memory */

/* A parked receiver ("m<i>"): it counts its one message and waits. */
static hm_err parked_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    bench *b = state;
    /* relaxed: main waits on the count, then on the runtime's idle wait. */
    atomic_fetch_add_explicit(&b->progress, 1, memory_order_relaxed);
    return HM_OK;
}

static uint64_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* Waits until the receivers have handled `count` messages. */
static void await_progress(bench *b, uint64_t count)
{
    uint64_t give_up = bench_now_ns() + (uint64_t)b->sz->wait_s * 1000000000u;

    while (atomic_load_explicit(&b->progress, memory_order_relaxed) < count) {
        if (bench_now_ns() > give_up)
            bench_fail(PROG, "memory: stuck at %llu of %llu",
                       (unsigned long long)atomic_load(&b->progress),
                       (unsigned long long)count);
        bench_sleep_us(200);
    }
}

/* Activates n receivers by name from outside, 10,000 at a time (so that
 * queued messages never pile up and inflate the heap), and reports the RSS
 * and malloc growth per parked receiver. */
static void run_memory(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->memory_count, rss0, heap0, rss1, heap1;
    hm_runtime_stats st;
    char name[32];

    open_runtime(&b, sz, smoke, UINT32_MAX);
    rss0 = bench_rss_bytes();
    heap0 = heap_in_use();
    for (uint64_t i = 0; i < n; i++) {
        hm_msg *m = hm_msg_create(&T_WORK, NULL, i);
        hm_err err;
        if ((err = hm_runtime_send_name(b.rt, name_of(name, 'm', i), m)) !=
            HM_OK)
            bench_fail(PROG, "send to %s: %s", name, hm_err_str(err));
        if ((i + 1) % 10000 == 0)
            await_progress(&b, i + 1);
    }
    await_progress(&b, n);
    settle(&b, &st);
    rss1 = bench_rss_bytes();
    heap1 = heap_in_use();
    if (smoke) {
        bench_check(PROG, "memory: live receivers", st.live, n);
        bench_check(PROG, "memory: messages handled", atomic_load(&b.progress),
                    n);
        printf("ok memory hermes: %llu parked receivers\n",
               (unsigned long long)n);
    } else {
        bench_row("memory", "hermes", (double)(rss1 - rss0) / (double)n,
                  "B/receiver", "lower");
        bench_row("memory-heap", "hermes", (double)(heap1 - heap0) / (double)n,
                  "B/receiver", "lower");
    }
    hm_runtime_destroy(b.rt);
}

/* ---------------------------------------------------------------- main */

/* Receivers made on demand: "c<i>" (create), "w<i>" (churn), "m<i>"
 * (memory). Their state is the bench itself. */
static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    hm_handler_fn fn;

    switch (name[0]) {
    case 'c':
        fn = child_handle;
        break;
    case 'w':
        fn = worker_handle;
        break;
    case 'm':
        fn = parked_handle;
        break;
    default:
        return HM_ENOTFOUND;
    }
    *out = (hm_receiver){.handler = fn, .state = arg};
    return HM_OK;
}

static const struct {
    const char *name;
    void (*run)(const sizes *sz, bool smoke);
} SCENARIOS[] = {
    {"pingpong", run_pingpong}, {"ring", run_ring},
    {"fanin", run_fanin},       {"create", run_create},
    {"churn", run_churn},       {"timers", run_timers},
    {"request", run_request},   {"memory", run_memory},
};
#define NSCENARIOS (sizeof SCENARIOS / sizeof SCENARIOS[0])

static int find_scenario(const char *name)
{
    for (size_t i = 0; i < NSCENARIOS; i++)
        if (strcmp(SCENARIOS[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* FULL with every count divided by `div` (for profiling under valgrind). */
static sizes divided(uint64_t div)
{
    sizes sz = FULL;
    uint64_t *counts[] = {&sz.pingpong_rounds, &sz.ring_hops, &sz.fanin_count,
                          &sz.create_count, &sz.churn_cycles, &sz.timer_count,
                          &sz.request_total, &sz.memory_count};

    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        *counts[i] = *counts[i] / div > 0 ? *counts[i] / div : 1;
    return sz;
}

int main(int argc, char **argv)
{
    bool smoke = false, any = false;
    sizes full = FULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = true;
        } else if (strcmp(argv[i], "--div") == 0 && i + 1 < argc) {
            uint64_t div = strtoull(argv[i + 1], NULL, 10);
            full = divided(div > 0 ? div : 1);
            argv[i][0] = argv[i + 1][0] = '\0'; /* not scenario names */
            i++;
        } else if (find_scenario(argv[i]) < 0) {
            fprintf(stderr, "%s: no scenario '%s'\n", PROG, argv[i]);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        int s = find_scenario(argv[i]);
        if (s >= 0) {
            SCENARIOS[s].run(smoke ? &SMOKE : &full, smoke);
            any = true;
        }
    }
    for (size_t i = 0; !any && i < NSCENARIOS; i++)
        SCENARIOS[i].run(smoke ? &SMOKE : &full, smoke);
    return 0;
}
