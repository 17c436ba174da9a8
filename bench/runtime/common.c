/* bench/runtime/common.c: the runtime benchmark's message types and the
 * helpers every scenario uses (opening a runtime, spawning, posting,
 * waiting for the receiver that stamps the end). */
#include "bench/runtime/bench_runtime.h"

#include <string.h>

/* Message types: payload-free, the argument carries everything. */
const hm_type T_START = {.name = "bench.start"};
const hm_type T_PING = {.name = "bench.ping"};
const hm_type T_PONG = {.name = "bench.pong"};
const hm_type T_TOKEN = {.name = "bench.token"};
const hm_type T_ITEM = {.name = "bench.item"};
const hm_type T_WORK = {.name = "bench.work"};
const hm_type T_DONE = {.name = "bench.done"};
const hm_type T_MORE = {.name = "bench.more"};
const hm_type T_FIRE = {.name = "bench.fire"};
const hm_type T_REQ = {.name = "bench.req"};
const hm_type T_REP = {.name = "bench.rep"};

/* ------------------------------------------------------------ helpers */

/* Stamps the end of the run. release: pairs with the acquire load in
 * await_end(), so the main thread sees every receiver's state written
 * before the stamp. */
void finish(bench *b)
{
    atomic_store_explicit(&b->end_ns, bench_now_ns(), memory_order_release);
}

void count_error(bench *b)
{
    /* relaxed: a plain counter, read after the run. */
    atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
}

/* Sends a payload-free message from inside a receiver. */
hm_err send_arg(hm_ctx *ctx, bench *b, hm_addr *to, const hm_type *t,
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
void post(bench *b, hm_addr *to, const hm_type *t, uint64_t arg)
{
    hm_msg *m = hm_msg_create(t, NULL, arg);
    hm_err err = hm_runtime_send(b->rt, to, m);

    if (err != HM_OK)
        bench_fail(PROG, "send to %s: %s", hm_addr_name(to), hm_err_str(err));
}

hm_addr *intern(bench *b, const char *name)
{
    hm_addr *a;
    hm_err err = hm_runtime_intern(b->rt, name, &a);

    if (err != HM_OK)
        bench_fail(PROG, "intern %s: %s", name, hm_err_str(err));
    return a;
}

/* Spawns a pinned receiver at `name`; returns an owned reference. */
hm_addr *spawn(bench *b, const char *name, hm_handler_fn fn,
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
uint64_t await_end(bench *b, const char *what)
{
    uint64_t give_up = bench_now_ns() + (uint64_t)b->sz->wait_s * 1000000000u;
    uint64_t end;

    /* acquire: pairs with the release store in finish(). */
    while ((end = atomic_load_explicit(&b->end_ns, memory_order_acquire)) ==
           0) {
        if (bench_now_ns() > give_up)
            bench_fail(PROG, "%s: no end after %u s (progress %llu)", what,
                       b->sz->wait_s,
                       (unsigned long long)atomic_load_explicit(
                           &b->progress, memory_order_relaxed)); /* a report */
        if (hm_runtime_wait_idle(b->rt, 100) == HM_OK)
            bench_sleep_us(1000);
    }
    return end;
}

/* Waits for the runtime to drain after the end (deactivations, replies in
 * flight) so that its counters are exact. */
void settle(bench *b, hm_runtime_stats *st)
{
    if (hm_runtime_wait_idle(b->rt, b->sz->wait_s * 1000u) != HM_OK)
        bench_fail(PROG, "runtime did not become idle");
    hm_runtime_stats_get(b->rt, st);
    /* relaxed: the runtime is idle, its workers' writes are visible. */
    bench_check(PROG, "failed sends or replies",
                atomic_load_explicit(&b->errors, memory_order_relaxed), 0);
}

void open_runtime(bench *b, const sizes *sz, bool smoke,
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

double seconds(uint64_t t0, uint64_t t1)
{
    return (double)(t1 - t0) / 1e9;
}

/* Writes `prefix` and the decimal `i` into `buf` (at least 32 bytes). Not
 * snprintf: formatting a million names with it cost a fifth of the
 * instructions of `create` under callgrind, which would be charged to the
 * runtime although the peers format no names at all. */
const char *name_of(char *buf, char prefix, uint64_t i)
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

