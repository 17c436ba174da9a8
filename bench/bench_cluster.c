/* bench/bench_cluster.c: the cluster's figures, measured with real
 * processes on 127.0.0.1.
 *
 * Node A runs in this process; the other nodes are this same program
 * re-executed as child nodes (tests/cluster/node_child.h: HM_TEST_NODE=1),
 * each with its own runtime, net and I/O threads. Scenarios:
 *   detect-crash   ms from kill -9 of a member to A's DEAD event (median)
 *   detect-silent  ms from a member's stop (SIGSTOP, timed once waitpid
 *                  reports it stopped; its links stay open) to A's DEAD
 *                  event, in a 3-node cluster (median)
 *   presence-p99   ms from a child's registration command to A resolving
 *                  the name, 5 nodes, p99
 *   remote-send    messages/s from A to a receiver on another node, one
 *                  stream paced only by backpressure (HM_EFULL), until
 *                  the receiver has counted them all; and the same
 *                  lines through a bare loopback TCP connection
 *                  (limit-tcp-lines), the ceiling in the same run
 * `--smoke` runs each once at tiny sizes with shrunk timers and checks
 * results (events seen, counts exact); it never reports timing. */
#include "bench/bench_common.h"
#include "tests/cluster/node_child.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>

static const char *PROG = "bench_cluster";


typedef struct bench {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char dead[HM_NODE_NAME_MAX + 1]; /* guarded by: lock: last DEAD */
    uint64_t dead_ns;                /* guarded by: lock */
    size_t ups;                      /* guarded by: lock */
    echo_env env;
    hm_runtime *rt;
    hm_net *net;
    hm_node *node;
    bool smoke;
    char secret[64];
} bench;

static void on_event(void *arg, const char *name, uint64_t inc,
                     hm_member_event ev)
{
    bench *b = arg;

    (void)inc;
    pthread_mutex_lock(&b->lock);
    if (ev == HM_MEMBER_EV_DEAD) {
        snprintf(b->dead, sizeof b->dead, "%s", name);
        b->dead_ns = bench_now_ns();
    } else if (ev == HM_MEMBER_EV_UP) {
        b->ups++;
    }
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void seen_nothing(void *arg, const char *addr, const char *text)
{
    (void)arg;
    (void)addr;
    (void)text;
}

/* Waits for `ups` UP events in all, or for `name`'s DEAD (then returns the
 * time it was seen). Exits on the hang guard. */
static uint64_t wait_for(bench *b, size_t ups, const char *dead)
{
    struct timespec dl;
    uint64_t at = 0;

    now_plus(&dl, 30000);
    pthread_mutex_lock(&b->lock);
    for (;;) {
        if (dead && strcmp(b->dead, dead) == 0) {
            at = b->dead_ns;
            break;
        }
        if (!dead && b->ups >= ups)
            break;
        if (pthread_cond_timedwait(&b->cond, &b->lock, &dl) == ETIMEDOUT)
            bench_fail(PROG, "no %s event for %s", dead ? "DEAD" : "UP",
                       dead ? dead : "the members");
    }
    b->dead[0] = '\0';
    pthread_mutex_unlock(&b->lock);
    return at;
}

static void start_local(bench *b)
{
    hm_node_config cfg = {.name = "A", .listen = "127.0.0.1:0",
                          .secret_file = b->secret,
                          .factory = echo_factory, .factory_arg = &b->env,
                          .on_event = on_event, .event_arg = b};
    char path[] = "/tmp/hm-bench-secret-XXXXXX";
    int fd = mkstemp(path);

    if (fd < 0 || write(fd, "bench cluster secret, 0600\n", 27) != 27)
        bench_fail(PROG, "cannot write a secret file");
    close(fd);
    snprintf(b->secret, sizeof b->secret, "%s", path);
    cfg.secret_file = b->secret;
    if (b->smoke)
        fast_timers(&cfg.timers);
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    b->env = (echo_env){.node = "A", .seen = seen_nothing};
    hm_log_set_level(HM_LOG_LEVEL_ERROR);
    if (hm_node_create(&cfg, &b->node) != HM_OK ||
        hm_runtime_create(&(hm_runtime_config){.factory = hm_node_factory,
                                               .factory_arg = b->node},
                          &b->rt) != HM_OK ||
        hm_runtime_register_type(b->rt, &TEXT) != HM_OK ||
        hm_net_create(&(hm_net_config){.rt = b->rt}, &b->net) != HM_OK ||
        hm_node_start(b->node, b->rt, b->net) != HM_OK)
        bench_fail(PROG, "node A did not start");
}

static void stop_local(bench *b)
{
    hm_node_stop(b->node, 500);
    hm_net_stop(b->net);
    hm_runtime_destroy(b->rt);
    hm_net_destroy(b->net);
    hm_node_destroy(b->node);
    unlink(b->secret);
}

static void spawn(bench *b, child *c, const char *name)
{
    if (!child_spawn(c, name, hm_node_addr(b->node), b->secret, b->smoke))
        bench_fail(PROG, "node %s did not start", name);
}

/* Sorts `ns` (bench_percentile() reads a sorted array) and returns its
 * median in ms. */
static double median_ms(int64_t *ns, size_t count)
{
    qsort(ns, count, sizeof *ns, bench_cmp_i64);
    return (double)bench_percentile(ns, count, 50) / 1e6;
}

/* A detection scenario's row: the median of its `runs` times, or only
 * "ok" under --smoke (which never reports timing). */
static void detect_row(bench *b, const char *scenario, int64_t *ns,
                       size_t runs)
{
    if (b->smoke)
        printf("ok %s\n", scenario);
    else
        bench_row(scenario, "hermes", median_ms(ns, runs), "ms", "lower");
}

/* ------------------------------------------------------------ scenarios */

static void detect_crash(bench *b, size_t runs, size_t *ups)
{
    int64_t ns[16];

    for (size_t i = 0; i < runs; i++) {
        child c;
        uint64_t t0;

        spawn(b, &c, "C");
        wait_for(b, ++*ups, NULL);
        t0 = bench_now_ns();
        child_kill(&c);
        ns[i] = (int64_t)(wait_for(b, 0, "C") - t0);
    }
    detect_row(b, "detect-crash", ns, runs);
}

static void detect_silent(bench *b, size_t runs, size_t *ups)
{
    int64_t ns[16];
    child w;

    spawn(b, &w, "W"); /* a witness: A has someone to ask */
    wait_for(b, ++*ups, NULL);
    for (size_t i = 0; i < runs; i++) {
        child c;
        uint64_t t0;

        spawn(b, &c, "S");
        wait_for(b, ++*ups, NULL);
        /* The clock starts when every thread of S has stopped (as in
         * the flood test, ADR 0220), not at kill(): until then S goes on
         * answering heartbeats. */
        if (!child_stop(&c))
            bench_fail(PROG, "node S did not stop");
        t0 = bench_now_ns();
        ns[i] = (int64_t)(wait_for(b, 0, "S") - t0);
        child_kill(&c);
    }
    child_quit(&w);
    detect_row(b, "detect-silent", ns, runs);
}

static void presence_p99(bench *b, size_t names, size_t *ups)
{
    child c[4];
    int64_t *ns = calloc(names, sizeof *ns);
    char cmd[128], name[96], where[HM_NODE_NAME_MAX + 1];

    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "P%d", i);
        spawn(b, &c[i], name);
    }
    *ups += 4;
    wait_for(b, *ups, NULL);
    for (size_t i = 0; i < names; i++) {
        uint64_t t0 = bench_now_ns(), deadline = t0 + 10000000000ull;

        snprintf(name, sizeof name, "bench/p/%zu", i);
        snprintf(cmd, sizeof cmd, "register %s", name);
        child_send(&c[i % 4], cmd);
        while (hm_node_lookup(b->node, name, where) != HM_OK) {
            if (bench_now_ns() > deadline)
                bench_fail(PROG, "%s never seen on A", name);
            bench_sleep_us(50);
        }
        ns[i] = (int64_t)(bench_now_ns() - t0);
        if (b->smoke && strcmp(where, c[i % 4].addr) != 0 &&
            where[0] != 'P')
            bench_fail(PROG, "%s resolved to %s", name, where);
    }
    for (int i = 0; i < 4; i++)
        child_quit(&c[i]);
    if (b->smoke)
        printf("ok presence-p99\n");
    else {
        qsort(ns, names, sizeof *ns, bench_cmp_i64);
        bench_row("presence-p99", "hermes",
                  (double)bench_percentile(ns, names, 99) / 1e6, "ms",
                  "lower");
    }
    free(ns);
}

/* The same number of lines of the same length as remote-send puts on the
 * wire, through one loopback TCP connection in 64 KiB writes, counted by
 * a reading thread: the ceiling for moving those bytes, measured in the
 * same run (system "limit-tcp-lines"). */
typedef struct lines_reader {
    int fd;
    size_t count;
} lines_reader;

static void *read_lines(void *arg)
{
    lines_reader *r = arg;
    static char buf[65536];
    size_t seen = 0;

    while (seen < r->count) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            seen += buf[i] == '\n';
    }
    r->count = seen;
    return NULL;
}

static double limit_tcp_lines(size_t count, size_t line_len)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0), w, one = 1;
    char *chunk = malloc(65536);
    size_t per = 65536 / line_len, sent = 0;
    lines_reader r = {.count = count};
    pthread_t t;
    uint64_t t0, elapsed;

    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0 ||
        (w = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        connect(w, (struct sockaddr *)&a, sizeof a) != 0 ||
        (r.fd = accept(ls, NULL, NULL)) < 0)
        bench_fail(PROG, "loopback baseline: %s", strerror(errno));
    setsockopt(w, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (size_t i = 0; i < per; i++) {
        memset(chunk + i * line_len, 'x', line_len - 1);
        chunk[i * line_len + line_len - 1] = '\n';
    }
    t0 = bench_now_ns();
    pthread_create(&t, NULL, read_lines, &r);
    while (sent < count) {
        size_t n = count - sent < per ? count - sent : per;
        size_t off = 0;
        while (off < n * line_len) {
            ssize_t k = write(w, chunk + off, n * line_len - off);
            if (k <= 0)
                bench_fail(PROG, "loopback baseline write");
            off += (size_t)k;
        }
        sent += n;
    }
    pthread_join(t, NULL);
    elapsed = bench_now_ns() - t0;
    bench_check(PROG, "baseline lines read", r.count, count);
    close(w);
    close(r.fd);
    close(ls);
    free(chunk);
    return (double)count / ((double)elapsed / 1e9);
}

static void remote_send(bench *b, size_t count, size_t *ups)
{
    child c;
    char where[HM_NODE_NAME_MAX + 1];
    hm_addr *to;
    hm_msg *reply = NULL;
    uint64_t t0, elapsed, full = 0;

    spawn(b, &c, "R");
    wait_for(b, ++*ups, NULL);
    child_send(&c, "register test/sink/r");
    while (hm_node_lookup(b->node, "test/sink/r", where) != HM_OK)
        bench_sleep_us(100);
    if (hm_runtime_intern(b->rt, "test/sink/r", &to) != HM_OK)
        bench_fail(PROG, "intern");
    t0 = bench_now_ns();
    for (size_t sent = 0; sent < count; sent++) {
        /* A stream: past the peer's buffer (10 000 unacknowledged) the
         * proxy holds, its mailbox fills and the send says HM_EFULL
         * (backpressure): wait a little and send again. */
        hm_msg *m = text_msg("x");
        while (hm_runtime_send(b->rt, to, m) != HM_OK) {
            full++;
            bench_sleep_us(20);
        }
    }
    /* Answered after every message before it (per-sender order). */
    hm_msg *ask = text_msg("count");
    hm_err err;
    while ((err = hm_runtime_call(b->rt, to, ask, 60000, &reply)) ==
           HM_EFULL)
        bench_sleep_us(100);
    if (err != HM_OK || hm_msg_type(reply) != &TEXT)
        bench_fail(PROG, "no count from the sink");
    elapsed = bench_now_ns() - t0;
    bench_check(PROG, "messages counted on the other node",
                strtoull(hm_msg_payload(reply), NULL, 10), count);
    hm_msg_destroy(reply);
    hm_addr_release(to);
    child_quit(&c);
    if (b->smoke) {
        printf("ok remote-send (%llu sends refused by backpressure)\n",
               (unsigned long long)full);
        return;
    }
    bench_row("remote-send", "hermes",
              (double)count / ((double)elapsed / 1e9), "msg/s", "higher");
}

int main(int argc, char **argv)
{
    bench b = {0};
    size_t ups = 0;

    if (getenv("HM_TEST_NODE"))
        return child_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    b.smoke = argc > 1 && strcmp(argv[1], "--smoke") == 0;
    /* `--remote-send N`: only that scenario, N messages (profiling). */
    if (argc > 2 && strcmp(argv[1], "--remote-send") == 0) {
        start_local(&b);
        remote_send(&b, strtoull(argv[2], NULL, 10), &ups);
        stop_local(&b);
        return 0;
    }
    start_local(&b);
    detect_crash(&b, b.smoke ? 1 : 5, &ups);
    detect_silent(&b, b.smoke ? 1 : 3, &ups);
    presence_p99(&b, b.smoke ? 8 : 400, &ups);
    remote_send(&b, b.smoke ? 1000 : 1000000, &ups);
    /* The line remote-send writes for "x" (the cl.msg around the HP msg,
     * 172 bytes with its newline), through bare TCP: the same-run ceiling. */
    if (!b.smoke)
        bench_row("remote-send", "limit-tcp-lines",
                  limit_tcp_lines(1000000, 172), "msg/s", "higher");
    stop_local(&b);
    return 0;
}
