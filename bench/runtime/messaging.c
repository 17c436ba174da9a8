/* bench/runtime/messaging.c: the message-passing scenarios: pingpong,
 * ring, fanin and request (docs/benchmarks.md says what each measures). */
#include "bench/runtime/bench_runtime.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

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

void run_pingpong(const sizes *sz, bool smoke)
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

void run_ring(const sizes *sz, bool smoke)
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
 * server's own threads would be, and they use the API such a thread
 * should use to feed one receiver: the sink has a mailbox bound and the
 * senders block in hm_runtime_send_wait() while it is full (ADR 0240),
 * as the Go peer's senders block on their buffered channel. The bound is
 * FANIN_BOUND, or HM_BENCH_FANIN_BOUND from the environment; 0 means an
 * unbounded mailbox and plain hm_runtime_send() (the old scenario, for
 * A/B runs). */
#define FANIN_BOUND 8192u

typedef struct fanin_sender {
    bench *b;
    hm_addr *sink;
    uint64_t index, count;
    bool wait; /* hm_runtime_send_wait() (bounded sink) */
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
        hm_err err = f->wait ? hm_runtime_send_wait(f->b->rt, f->sink, m,
                                                    UINT32_MAX)
                             : hm_runtime_send(f->b->rt, f->sink, m);
        if (err != HM_OK)
            bench_fail(PROG, "fanin send: %s", hm_err_str(err));
    }
    return NULL;
}

static uint32_t fanin_bound(void)
{
    const char *s = getenv("HM_BENCH_FANIN_BOUND");

    return s && *s ? (uint32_t)strtoul(s, NULL, 10) : FANIN_BOUND;
}

void run_fanin(const sizes *sz, bool smoke)
{
    bench b;
    uint64_t per = sz->fanin_count / FANIN_SENDERS, t0, t1;
    uint32_t bound = fanin_bound();
    fanin_state s = {.b = &b, .total = per * FANIN_SENDERS};
    hm_receiver r = {.handler = fanin_handle, .state = &s, .pinned = true,
                     .mailbox_limit = bound};
    hm_err err;
    fanin_sender snd[FANIN_SENDERS];
    pthread_t th[FANIN_SENDERS];
    atomic_bool go = false;
    hm_runtime_stats st;
    hm_addr *sink;

    open_runtime(&b, sz, smoke, 0);
    if ((err = hm_runtime_spawn(b.rt, "fanin/sink", &r, &sink)) != HM_OK)
        bench_fail(PROG, "spawn fanin/sink: %s", hm_err_str(err));
    for (int i = 0; i < FANIN_SENDERS; i++) {
        snd[i] = (fanin_sender){.b = &b, .sink = sink, .index = (uint64_t)i,
                                .count = per, .wait = bound != 0, .go = &go};
        if (pthread_create(&th[i], NULL, fanin_send, &snd[i]) != 0)
            bench_fail(PROG, "pthread_create failed");
    }
    t0 = bench_now_ns();
    /* release: pairs with the acquire load in fanin_send(). */
    atomic_store_explicit(&go, true, memory_order_release);
    for (int i = 0; i < FANIN_SENDERS; i++)
        pthread_join(th[i], NULL);
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
        fprintf(stderr, "fanin: mailbox bound %u, high-water mark %llu\n",
                bound, (unsigned long long)st.mailbox_hwm);
    }
    hm_addr_release(sink);
    hm_runtime_destroy(b.rt);
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

void run_request(const sizes *sz, bool smoke)
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

