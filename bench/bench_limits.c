/* bench/bench_limits.c: what this machine allows at all, measured in the
 * same run as the runtime so that every Hermes figure has a floor and a
 * ceiling next to it.
 *
 * Three hand-offs between threads, with no runtime around them:
 *   - an SPSC ring (one cache line for each index, spinning waiters): the
 *     fastest possible ping-pong between two threads, and the fastest
 *     one-way stream;
 *   - a Vyukov intrusive MPSC queue (one atomic exchange per push, the shape
 *     of the Hermes and Pony mailboxes) fed by 4 producer threads, the
 *     ceiling for `fanin`;
 *   - a mutex + condition variable hand-off, the cost of putting a thread to
 *     sleep and waking it for every message, which is what a runtime pays if
 *     it parks its workers too eagerly.
 *
 * The key decision: waiters spin (with a pause, yielding to the kernel only
 * after a long wait), because a spinning hand-off is the floor of what a
 * runtime on two cores can do; the condvar row shows the other extreme.
 * These programs start their own threads and locks because those threads and
 * locks are the thing being measured (docs/adr/0020).
 *
 * Usage: bench_limits [--smoke] [pingpong] [fanin]  (default: both)
 * Rows: pingpong and request (the same ping-pong counted per round trip) for
 * limit-spsc and limit-condvar; fanin for limit-spsc (one producer) and
 * limit-mpsc (4 producers). --smoke runs tiny sizes and checks every value
 * arrived, in order, instead of printing times. */
#include "bench/bench_common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#define PROG "bench_limits"
#define RING_SLOTS 1024u /* a power of two */
#define MPSC_PRODUCERS 4
#define MPSC_POOL 4096u /* nodes each producer cycles through (>= 2) */

typedef struct sizes {
    uint64_t spsc_rounds;
    uint64_t condvar_rounds;
    uint64_t stream_count;
    uint64_t mpsc_count; /* total over all producers */
} sizes;

static const sizes FULL = {1000000, 50000, 20000000, 20000000};
static const sizes SMOKE = {1000, 1000, 1000, 1000};

/* ------------------------------------------------------------ spinning */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* One spin of a waiter. After ~64k spins the other thread is most likely
 * not running (2 vCPUs, shared), so give the core back to the kernel. */
static inline void spin_once(unsigned *spins)
{
    if (++*spins < 65536u) {
        cpu_relax();
        return;
    }
    *spins = 0;
    sched_yield();
}

/* A start line: threads wait for `go` so that thread creation is not timed. */
typedef struct start_line {
    atomic_bool go;
} start_line;

static void wait_start(start_line *s)
{
    unsigned spins = 0;
    /* acquire: pairs with the release store in open_start(). */
    while (!atomic_load_explicit(&s->go, memory_order_acquire))
        spin_once(&spins);
}

static void open_start(start_line *s)
{
    /* release: pairs with the acquire load in wait_start(). */
    atomic_store_explicit(&s->go, true, memory_order_release);
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    if (pthread_create(t, NULL, fn, arg) != 0)
        bench_fail(PROG, "pthread_create failed");
}

/* ----------------------------------------------------------- SPSC ring */

/* A bounded single-producer single-consumer ring. Each index lives on its
 * own cache line, and each side caches the other side's index so that it
 * reads the shared line only when the cached value says "full" or
 * "empty". */
typedef struct spsc {
    _Alignas(64) atomic_uint_fast64_t head; /* written by the producer */
    uint64_t tail_cache;                    /* producer's copy of tail */
    _Alignas(64) atomic_uint_fast64_t tail; /* written by the consumer */
    uint64_t head_cache;                    /* consumer's copy of head */
    _Alignas(64) uint64_t slot[RING_SLOTS];
} spsc;

static void spsc_push(spsc *q, uint64_t v)
{
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    unsigned spins = 0;

    while (h - q->tail_cache == RING_SLOTS) {
        /* acquire: pairs with the release store of tail in spsc_pop(), so
         * the slot is not overwritten before the consumer has read it. */
        q->tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (h - q->tail_cache == RING_SLOTS)
            spin_once(&spins);
    }
    q->slot[h & (RING_SLOTS - 1)] = v;
    /* release: pairs with the acquire load of head in spsc_pop(), so the
     * consumer sees the slot's value before the new head. */
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
}

static uint64_t spsc_pop(spsc *q)
{
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    unsigned spins = 0;
    uint64_t v;

    while (q->head_cache == t) {
        /* acquire: pairs with the release store of head in spsc_push(). */
        q->head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
        if (q->head_cache == t)
            spin_once(&spins);
    }
    v = q->slot[t & (RING_SLOTS - 1)];
    /* release: pairs with the acquire load of tail in spsc_push(). */
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    return v;
}

typedef struct spsc_pair {
    spsc *there, *back; /* ping goes there, pong comes back */
    uint64_t count;     /* rounds, or values in a stream */
    start_line start;
    uint64_t bad; /* values that arrived out of order */
    uint64_t sum;
} spsc_pair;

/* The echo side of the ping-pong: returns every value it receives. */
static void *spsc_echo(void *arg)
{
    spsc_pair *p = arg;

    wait_start(&p->start);
    for (uint64_t i = 0; i < p->count; i++) {
        uint64_t v = spsc_pop(p->there);
        if (v != i)
            p->bad++;
        spsc_push(p->back, v);
    }
    return NULL;
}

/* Round trips per second of a ping-pong over two SPSC rings. */
static double run_spsc_pingpong(uint64_t rounds, bool smoke)
{
    spsc *there = aligned_alloc(64, sizeof *there);
    spsc *back = aligned_alloc(64, sizeof *back);
    spsc_pair p = {.there = there, .back = back, .count = rounds};
    pthread_t echo;
    uint64_t t0, t1, wrong = 0;

    memset(there, 0, sizeof *there);
    memset(back, 0, sizeof *back);
    start_thread(&echo, spsc_echo, &p);
    t0 = bench_now_ns();
    open_start(&p.start);
    for (uint64_t i = 0; i < rounds; i++) {
        spsc_push(there, i);
        if (spsc_pop(back) != i)
            wrong++;
    }
    t1 = bench_now_ns();
    pthread_join(echo, NULL);
    if (smoke) {
        bench_check(PROG, "spsc ping-pong: values out of order", p.bad + wrong,
                    0);
        printf("ok pingpong limit-spsc: %llu round trips\n",
               (unsigned long long)rounds);
    }
    free(there);
    free(back);
    return (double)rounds * 1e9 / (double)(t1 - t0);
}

static void *spsc_consume(void *arg)
{
    spsc_pair *p = arg;

    wait_start(&p->start);
    for (uint64_t i = 0; i < p->count; i++) {
        uint64_t v = spsc_pop(p->there);
        if (v != i)
            p->bad++;
        p->sum += v;
    }
    return NULL;
}

/* Messages per second of a one-way SPSC stream. */
static double run_spsc_stream(uint64_t count, bool smoke)
{
    spsc *q = aligned_alloc(64, sizeof *q);
    spsc_pair p = {.there = q, .count = count};
    pthread_t consumer;
    uint64_t t0, t1;

    memset(q, 0, sizeof *q);
    start_thread(&consumer, spsc_consume, &p);
    t0 = bench_now_ns();
    open_start(&p.start);
    for (uint64_t i = 0; i < count; i++)
        spsc_push(q, i);
    pthread_join(consumer, NULL);
    t1 = bench_now_ns();
    if (smoke) {
        bench_check(PROG, "spsc stream: values out of order", p.bad, 0);
        bench_check(PROG, "spsc stream: sum", p.sum, count * (count - 1) / 2);
        printf("ok fanin limit-spsc: %llu messages\n",
               (unsigned long long)count);
    }
    free(q);
    return (double)count * 1e9 / (double)(t1 - t0);
}

/* ------------------------------------------------------ Vyukov MPSC */

/* Dmitry Vyukov's intrusive MPSC queue: push is one atomic exchange on
 * `head` plus a store to the previous node's link; pop follows links from
 * `tail` and never touches `head`. The node the consumer last moved past
 * stays in the queue as its new stub, so a node is free for reuse only once
 * the consumer has moved past the *next* one; `free` says so. Nodes come
 * from per-producer pools so that malloc is not what gets measured. */
typedef struct mpsc_node {
    _Atomic(struct mpsc_node *) next;
    uint64_t value;
    atomic_bool free;
} mpsc_node;

typedef struct mpsc {
    _Alignas(64) _Atomic(mpsc_node *) head; /* producers exchange here */
    _Alignas(64) mpsc_node *tail;           /* consumer only */
    mpsc_node stub;
} mpsc;

static void mpsc_init(mpsc *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->stub.free, false);
    atomic_init(&q->head, &q->stub);
    q->tail = &q->stub;
}

static void mpsc_push(mpsc *q, mpsc_node *n)
{
    mpsc_node *prev;

    /* relaxed: the exchange below publishes it. */
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* acq_rel: the release half publishes n's fields to whoever links
     * after n; the acquire half orders our link store after the previous
     * pusher's initialisation of `prev`. */
    prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    /* release: pairs with the acquire load of `next` in mpsc_pop(), so the
     * consumer sees n->value before it sees the link. */
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* Returns false if the queue looked empty (or a push is half done). */
static bool mpsc_pop(mpsc *q, uint64_t *value)
{
    mpsc_node *tail = q->tail;
    /* acquire: pairs with the release link store in mpsc_push(). */
    mpsc_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);

    if (next == NULL)
        return false;
    *value = next->value;
    q->tail = next;
    /* release: pairs with the acquire load of `free` in take_node(); the
     * producer may overwrite the old tail only after we are done with it. */
    atomic_store_explicit(&tail->free, true, memory_order_release);
    return true;
}

typedef struct mpsc_producer {
    mpsc *q;
    mpsc_node *pool; /* MPSC_POOL nodes */
    uint64_t first, count; /* values first .. first+count-1 */
    start_line *start;
} mpsc_producer;

static mpsc_node *take_node(mpsc_producer *p, uint64_t i)
{
    mpsc_node *n = &p->pool[i % MPSC_POOL];
    unsigned spins = 0;

    /* acquire: pairs with the release store of `free` in mpsc_pop(). */
    while (!atomic_load_explicit(&n->free, memory_order_acquire))
        spin_once(&spins);
    atomic_store_explicit(&n->free, false, memory_order_relaxed);
    return n;
}

static void *mpsc_produce(void *arg)
{
    mpsc_producer *p = arg;

    wait_start(p->start);
    for (uint64_t i = 0; i < p->count; i++) {
        mpsc_node *n = take_node(p, i);
        n->value = p->first + i;
        mpsc_push(p->q, n);
    }
    return NULL;
}

/* Messages per second from MPSC_PRODUCERS threads into one consumer (the
 * calling thread). In smoke mode also checks per-producer FIFO order. */
static double run_mpsc_stream(uint64_t total, bool smoke)
{
    mpsc q;
    mpsc_producer prod[MPSC_PRODUCERS];
    pthread_t threads[MPSC_PRODUCERS];
    uint64_t per = total / MPSC_PRODUCERS, next_expected[MPSC_PRODUCERS];
    uint64_t got = 0, bad = 0, t0, t1, v;
    start_line start = {false};
    unsigned spins = 0;

    mpsc_init(&q);
    for (int i = 0; i < MPSC_PRODUCERS; i++) {
        prod[i] = (mpsc_producer){.q = &q, .first = (uint64_t)i * per,
                                  .count = per, .start = &start};
        prod[i].pool = calloc(MPSC_POOL, sizeof(mpsc_node));
        for (unsigned j = 0; j < MPSC_POOL; j++)
            atomic_init(&prod[i].pool[j].free, true);
        next_expected[i] = prod[i].first;
        start_thread(&threads[i], mpsc_produce, &prod[i]);
    }
    t0 = bench_now_ns();
    open_start(&start);
    while (got < per * MPSC_PRODUCERS) {
        if (!mpsc_pop(&q, &v)) {
            spin_once(&spins);
            continue;
        }
        if (v / per >= MPSC_PRODUCERS || v != next_expected[v / per]++)
            bad++;
        got++;
    }
    t1 = bench_now_ns();
    for (int i = 0; i < MPSC_PRODUCERS; i++) {
        pthread_join(threads[i], NULL);
        free(prod[i].pool);
    }
    if (smoke) {
        bench_check(PROG, "mpsc stream: out of per-producer order", bad, 0);
        printf("ok fanin limit-mpsc: %llu messages from %d producers\n",
               (unsigned long long)got, MPSC_PRODUCERS);
    }
    return (double)got * 1e9 / (double)(t1 - t0);
}

/* ------------------------------------------------ mutex + condvar */

/* Two threads take turns under one mutex; each waits on its own condition
 * variable, so every hand-off puts one thread to sleep and wakes the
 * other. */
typedef struct handoff {
    pthread_mutex_t lock;
    pthread_cond_t wake[2];
    int turn;       /* guarded by: lock */
    uint64_t value; /* guarded by: lock */
    uint64_t rounds, bad;
} handoff;

static void *condvar_echo(void *arg)
{
    handoff *h = arg;

    pthread_mutex_lock(&h->lock);
    for (uint64_t i = 0; i < h->rounds; i++) {
        while (h->turn != 1)
            pthread_cond_wait(&h->wake[1], &h->lock);
        if (h->value != i)
            h->bad++;
        h->turn = 0;
        pthread_cond_signal(&h->wake[0]);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* Round trips per second of a mutex+condvar ping-pong. */
static double run_condvar_pingpong(uint64_t rounds, bool smoke)
{
    handoff h = {.rounds = rounds};
    pthread_t echo;
    uint64_t t0, t1;

    pthread_mutex_init(&h.lock, NULL);
    pthread_cond_init(&h.wake[0], NULL);
    pthread_cond_init(&h.wake[1], NULL);
    start_thread(&echo, condvar_echo, &h);
    t0 = bench_now_ns();
    pthread_mutex_lock(&h.lock);
    for (uint64_t i = 0; i < rounds; i++) {
        h.value = i;
        h.turn = 1;
        pthread_cond_signal(&h.wake[1]);
        while (h.turn != 0)
            pthread_cond_wait(&h.wake[0], &h.lock);
    }
    pthread_mutex_unlock(&h.lock);
    t1 = bench_now_ns();
    pthread_join(echo, NULL);
    pthread_cond_destroy(&h.wake[0]);
    pthread_cond_destroy(&h.wake[1]);
    pthread_mutex_destroy(&h.lock);
    if (smoke) {
        bench_check(PROG, "condvar ping-pong: values out of order", h.bad, 0);
        printf("ok pingpong limit-condvar: %llu round trips\n",
               (unsigned long long)rounds);
    }
    return (double)rounds * 1e9 / (double)(t1 - t0);
}

/* ---------------------------------------------------------------- main */

static void run_pingpong(const sizes *sz, bool smoke)
{
    double rt = run_spsc_pingpong(sz->spsc_rounds, smoke);
    double cv = run_condvar_pingpong(sz->condvar_rounds, smoke);

    if (smoke)
        return;
    bench_row("pingpong", "limit-spsc", 2 * rt, "msg/s", "higher");
    bench_row("request", "limit-spsc", rt, "rt/s", "higher");
    bench_row("pingpong", "limit-condvar", 2 * cv, "msg/s", "higher");
    bench_row("request", "limit-condvar", cv, "rt/s", "higher");
}

static void run_fanin(const sizes *sz, bool smoke)
{
    double stream = run_spsc_stream(sz->stream_count, smoke);
    double many = run_mpsc_stream(sz->mpsc_count, smoke);

    if (smoke)
        return;
    bench_row("fanin", "limit-spsc", stream, "msg/s", "higher");
    bench_row("fanin", "limit-mpsc", many, "msg/s", "higher");
}

int main(int argc, char **argv)
{
    bool smoke = false, any = false;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = true;
        } else if (strcmp(argv[i], "pingpong") != 0 &&
                   strcmp(argv[i], "fanin") != 0) {
            fprintf(stderr, "%s: no scenario '%s' (pingpong, fanin)\n", PROG,
                    argv[i]);
            return 2;
        }
    }
    for (i = 1; i < argc; i++) {
        const sizes *sz = smoke ? &SMOKE : &FULL;
        if (strcmp(argv[i], "pingpong") == 0)
            run_pingpong(sz, smoke);
        else if (strcmp(argv[i], "fanin") == 0)
            run_fanin(sz, smoke);
        else
            continue;
        any = true;
    }
    if (!any) {
        run_pingpong(smoke ? &SMOKE : &FULL, smoke);
        run_fanin(smoke ? &SMOKE : &FULL, smoke);
    }
    return 0;
}
