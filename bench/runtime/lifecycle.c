/* bench/runtime/lifecycle.c: the scenarios about receivers' lives and
 * time: create, churn, timers and memory. */
#include "bench/runtime/bench_runtime.h"

#include <malloc.h>
#include <string.h>

/* -------------------------------------------------------------- create */

typedef struct create_state {
    bench *b;
    uint64_t total, next, replies;
} create_state;

/* A child (made by the factory for "c<i>"): one reply to whoever woke it,
 * then it stays parked. */
hm_err child_handle(hm_ctx *ctx, void *state, hm_msg *msg)
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

void run_create(const sizes *sz, bool smoke)
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
hm_err worker_handle(hm_ctx *ctx, void *state, hm_msg *msg)
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

void run_churn(const sizes *sz, bool smoke)
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

/* The runtime rounds a deadline up to its next millisecond tick, so a timer
 * never comes before its delay has passed: the due stamp is taken on the
 * same clock just before the runtime reads it, so any negative lateness is
 * a bug. */
#define TIMER_EARLY_US 0

static void report_timers(timer_state *s, double arm_ns, double arm_cpu_ns,
                          double cpu_ns, bool smoke)
{
    uint64_t early = 0;

    for (uint64_t i = 0; i < s->total; i++)
        early += s->late_us[i] < TIMER_EARLY_US;
    if (smoke) {
        bench_check(PROG, "timers: fired", s->fired, s->total);
        bench_check(PROG, "timers: fired before their delay had passed", early, 0);
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
    bench_row("timers-arm-cpu", "hermes", arm_cpu_ns, "ns/timer", "lower");
    bench_row("timers-p50", "hermes",
              (double)bench_percentile(s->late_us, s->total, 50) / 1000.0,
              "ms", "lower");
    bench_row("timers-p99", "hermes",
              (double)bench_percentile(s->late_us, s->total, 99) / 1000.0,
              "ms", "lower");
}

/* The floor under `timers-cpu`: the same messages, created up front (so
 * all are alive at once, as the timers' are) and sent to the same sink with
 * no timer. Returns the process CPU per message. Runs after the timers: it
 * resets the sink's count and the end stamp (the sink is idle). */
static double send_floor(bench *b, timer_state *s, hm_addr *sink, uint64_t n)
{
    hm_msg **m = calloc(n, sizeof *m);
    uint64_t cpu0;
    double ns;

    s->fired = 0;
    /* relaxed: the sink is idle (settled) and this thread wrote it last. */
    atomic_store_explicit(&b->end_ns, 0, memory_order_relaxed);
    cpu0 = bench_cpu_ns();
    for (uint64_t i = 0; i < n; i++)
        m[i] = hm_msg_create(&T_FIRE, NULL, bench_now_ns() / 1000u);
    for (uint64_t i = 0; i < n; i++)
        if (hm_runtime_send(b->rt, sink, m[i]) != HM_OK)
            bench_fail(PROG, "timers floor: send failed");
    await_end(b, "timers floor");
    ns = (double)(bench_cpu_ns() - cpu0) / (double)n;
    free(m);
    if (hm_runtime_wait_idle(b->rt, b->sz->wait_s * 1000u) != HM_OK)
        bench_fail(PROG, "timers floor: runtime did not become idle");
    if (b->smoke)
        bench_check(PROG, "timers floor: received", s->fired, n);
    return ns;
}

void run_timers(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->timer_count, rng = 0x9e3779b97f4a7c15ull;
    uint32_t *delay = calloc(n, sizeof *delay);
    timer_state s = {.b = &b, .total = n};
    uint64_t cpu0, t0, t1, t_end, arm_cpu0, arm_cpu;
    double floor_ns;
    hm_runtime_stats st;
    hm_addr *sink;

    s.late_us = calloc(n, sizeof *s.late_us);
    for (uint64_t i = 0; i < n; i++)
        delay[i] = (uint32_t)(bench_rand(&rng) % (sz->timer_max_ms + 1));
    open_runtime(&b, sz, smoke, 0);
    sink = spawn(&b, "timers/sink", timer_handle, &s);
    cpu0 = bench_cpu_ns();
    arm_cpu0 = bench_thread_cpu_ns();
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t due_us = bench_now_ns() / 1000u + delay[i] * 1000u;
        hm_msg *m = hm_msg_create(&T_FIRE, NULL, due_us);
        hm_err err = hm_runtime_send_after(b.rt, sink, m, delay[i], NULL);
        if (err != HM_OK)
            bench_fail(PROG, "send_after: %s", hm_err_str(err));
    }
    t1 = bench_now_ns();
    arm_cpu = bench_thread_cpu_ns() - arm_cpu0;
    t_end = await_end(&b, "timers");
    (void)t_end;
    report_timers(&s, (double)(t1 - t0) / (double)n,
                  (double)arm_cpu / (double)n,
                  (double)(bench_cpu_ns() - cpu0) / (double)n, smoke);
    settle(&b, &st);
    if (smoke)
        bench_check(PROG, "timers: runtime's fired count", st.timers_fired, n);
    else
        bench_row("timers-hwm", "hermes", (double)st.mailbox_hwm, "msgs",
                  "lower");
    /* After the timers, with the freed memory given back first, so that
     * neither phase runs on memory the other warmed. */
    malloc_trim(0);
    /* HERMES_BENCH_NO_FLOOR=1 leaves the floor out, so that a profile of
     * the scenario (callgrind, perf) holds the timers alone. */
    if (!getenv("HERMES_BENCH_NO_FLOOR")) {
        floor_ns = send_floor(&b, &s, sink, n);
        if (!smoke)
            bench_row("timers-send-cpu", "hermes", floor_ns, "ns/msg",
                      "lower");
    }
    hm_addr_release(sink);
    hm_runtime_destroy(b.rt);
    free(s.late_us);
    free(delay);
}


/* -------------------------------------------------------------- memory */

/* A parked receiver ("m<i>"): it counts its one message and waits. */
hm_err parked_handle(hm_ctx *ctx, void *state, hm_msg *msg)
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

    /* relaxed: a count polled until it is reached; nothing is read
     * through it. */
    while (atomic_load_explicit(&b->progress, memory_order_relaxed) < count) {
        if (bench_now_ns() > give_up)
            bench_fail(PROG, "memory: stuck at %llu of %llu",
                       (unsigned long long)atomic_load_explicit(
                           &b->progress, memory_order_relaxed),
                       (unsigned long long)count);
        bench_sleep_us(200);
    }
}

/* Activates n receivers by name from outside, 10,000 at a time (so that
 * queued messages never pile up and inflate the heap), and reports the RSS
 * and malloc growth per parked receiver. */
void run_memory(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t n = sz->memory_count, rss0, heap0, rss1, heap1;
    hm_runtime_stats st0, st;
    char name[32];

    open_runtime(&b, sz, smoke, UINT32_MAX);
    rss0 = bench_rss_bytes();
    hm_runtime_stats_get(b.rt, &st0);
    heap0 = heap_in_use() + st0.entry_bytes + st0.table_bytes;
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
    /* The directory's slab and mapped tables are outside malloc's count. */
    heap1 = heap_in_use() + st.entry_bytes + st.table_bytes;
    if (smoke) {
        bench_check(PROG, "memory: live receivers", st.live, n);
        /* relaxed: as in await_progress(). */
        bench_check(PROG, "memory: messages handled",
                    atomic_load_explicit(&b.progress, memory_order_relaxed), n);
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

