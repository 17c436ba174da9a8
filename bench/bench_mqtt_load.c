/* bench/bench_mqtt_load.c: the MQTT load generator, one scenario per run,
 * against any MQTT 3.1.1 broker on a loopback port.
 *
 * One thread, one epoll set (edge-triggered), thousands of non-blocking
 * connections (bench/bench_mqtt_loop.h), and the MQTT client side written
 * by hand in bench/bench_mqtt_wire.h, so that the generator shares no code
 * with the broker it judges. This file holds the scenarios and the command
 * line. Scenarios (see docs/benchmarks-mqtt.md):
 *   - throughput (qos0-2, fanout*, fanin*, topics*): closed loop. A
 *     publisher never has more than `window` messages that some subscriber
 *     has not yet received (nor, at QoS 1/2, more than `window` without the
 *     final acknowledgement), so no broker ever has a reason to drop or
 *     queue without bound. Publishers run for a fixed time (or, in smoke
 *     mode, a fixed count), then the generator waits for every delivery.
 *   - latency: open loop. The publisher sends at a fixed rate from a
 *     timerfd whatever the broker does, and each latency is measured from
 *     the time the message was *scheduled*, so a stalled broker cannot hide
 *     its stall (no coordinated omission).
 *   - storm: connect, CONNECT, CONNACK, DISCONNECT, wait for the broker to
 *     close, as fast as a bounded number of concurrent slots allows.
 *   - idle: N connections that only connect, then the broker's RSS growth
 *     per connection, then a PINGREQ on each to prove it is still held.
 * Every payload carries the publisher's index, a sequence number and a
 * timestamp; each subscriber keeps a bitmap per publisher, so lost,
 * duplicated and reordered deliveries are counted exactly and reported.
 *
 * Usage: bench_mqtt_load --port P --scenario NAME [--system NAME]
 *            [--tag SUFFIX] [--broker-pid PID] [--duration-ms N]
 *            [--window N] [--conns N] [--keepalive S] [--sub-port P2]
 *            [--persistent] [--smoke]
 *        bench_mqtt_load --free-port [N] | --wait-port P
 * --sub-port P2: the subscribers connect to P2 (another node of a broker
 * cluster), the publishers to P; publishing starts one second after the
 * last SUBACK, the time for the subscriptions to reach the publishers'
 * node (a filter travels in about a millisecond on loopback).
 * --persistent: subscribers connect with CleanSession 0, so a broker with
 * persistence stores their sessions (the cost of its durability policy).
 * Output: TSV rows `scenario system value unit better` on stdout, plus one
 * line starting with "# " that gives the delivery counts. With --smoke,
 * sizes are tiny, nothing is timed, and any loss, duplicate, reordering or
 * missing acknowledgement exits 1. */
#include "bench/bench_mqtt_loop.h"

/* The windows keep every broker inside its configured limits (the suite
 * gives both brokers max_inflight_messages 20 and max_queued_messages
 * 1000): at QoS 1 and 2 a publisher keeps at most 20 exchanges open, and
 * no subscriber ever has more than 1000 messages waiting for it (fanin100:
 * 100 x 8). mosquitto 2.0.11 loses QoS 2 messages from a 3.1.1 publisher
 * that keeps more than max_inflight_messages exchanges open (it completes
 * them with PUBCOMP but never delivers the excess), which a window of 21
 * shows at once. */
static const scenario SCENARIOS[] = {
    {"qos0", K_THROUGHPUT, 1, 1, true, 0, 256, 0, 0, 0},
    {"qos1", K_THROUGHPUT, 1, 1, true, 1, 20, 0, 0, 0},
    {"qos2", K_THROUGHPUT, 1, 1, true, 2, 20, 0, 0, 0},
    {"fanout100", K_THROUGHPUT, 1, 100, false, 0, 64, 0, 0, 0},
    {"fanout1000", K_THROUGHPUT, 1, 1000, false, 0, 16, 0, 0, 0},
    {"fanin100", K_THROUGHPUT, 100, 1, false, 0, 8, 0, 0, 0},
    {"topics1000", K_THROUGHPUT, 1000, 1000, true, 0, 8, 0, 0, 0},
    {"latency1k", K_LATENCY, 1, 1, true, 0, 0, 1000, 0, 0},
    {"latency10k", K_LATENCY, 1, 1, true, 0, 0, 10000, 0, 0},
    {"storm", K_STORM, 0, 0, false, 0, 0, 0, 10000, 100},
    {"idle10k", K_IDLE, 0, 0, false, 0, 0, 0, 10000, 100},
    {"idle100k", K_IDLE, 0, 0, false, 0, 0, 0, 100000, 300},
};

/* Smoke sizes: at most this many connections per role, this many messages
 * per publisher, and this long for a latency run. */
#define SMOKE_ROLE_MAX 50
#define SMOKE_COUNT 200
#define SMOKE_LATENCY_NS (NS / 10)

/* ------------------------------------------------------------ scenarios */

static void setup_conns(load *L, uint32_t n)
{
    L->nc = n;
    L->c = xcalloc(n, sizeof *L->c);
    L->dirty = xcalloc(n, sizeof *L->dirty);
    L->ready = xcalloc(n, sizeof *L->ready);
    for (uint32_t i = 0; i < n; i++)
        L->c[i].fd = -1;
    raise_nofile((uint64_t)n + 64);
}

/* Connects the subscribers (indices 0..subs-1) and the publishers (after
 * them), and waits until every one has its CONNACK and every subscriber
 * its SUBACK. */
static void connect_clients(load *L)
{
    setup_conns(L, L->subs + L->pubs);
    for (uint32_t i = 0; i < L->nc; i++) {
        L->c[i].role = i < L->subs ? R_SUB : R_PUB;
        L->c[i].index = i < L->subs ? i : i - L->subs;
    }
    if (!run_until(L, &L->connacks, L->nc, L->nc))
        bench_fail(PROG, "%s %s: %llu of %u connections got CONNACK",
                   L->sc->name, L->system,
                   (unsigned long long)L->connacks, L->nc);
    if (!run_until(L, &L->subacks, L->subs, L->nc))
        bench_fail(PROG, "%s %s: %llu of %u subscriptions got SUBACK",
                   L->sc->name, L->system,
                   (unsigned long long)L->subacks, L->subs);
    if (L->sub_port) { /* the filters cross to the publishers' node */
        uint64_t until = bench_now_ns() + 1000000000ull;

        while (bench_now_ns() < until)
            step(L, 10);
    }
}

/* Waits for every delivery and acknowledgement still in flight, giving up
 * after STALL_NS without progress (what is missing is then reported as
 * lost or unacknowledged). */
static void drain(load *L)
{
    uint64_t want = L->sent_total * L->spp;

    L->last_progress = bench_now_ns();
    while (L->unique < want || L->unacked_total > 0) {
        step(L, 10);
        if (L->now - L->last_progress > STALL_NS)
            break;
    }
}

/* Prints the delivery counts as a "# " line; in smoke mode any loss,
 * duplicate, reordering or missing acknowledgement fails the run. */
static void report_counts(load *L)
{
    uint64_t want = L->sent_total * L->spp;
    uint64_t lost = want > L->unique ? want - L->unique : 0;

    printf("# %s%s %s: sent %llu expected %llu delivered %llu lost %llu "
           "duplicated %llu reordered %llu unacknowledged %llu\n",
           L->sc->name, L->tag, L->system,
           (unsigned long long)L->sent_total, (unsigned long long)want,
           (unsigned long long)L->delivered, (unsigned long long)lost,
           (unsigned long long)L->dups, (unsigned long long)L->reordered,
           (unsigned long long)L->unacked_total);
    if (!L->smoke)
        return;
    if (L->sent_total == 0)
        bench_fail(PROG, "%s %s: nothing was sent", L->sc->name, L->system);
    bench_check(PROG, "lost deliveries", lost, 0);
    bench_check(PROG, "duplicated deliveries", L->dups, 0);
    bench_check(PROG, "reordered deliveries", L->reordered, 0);
    bench_check(PROG, "unacknowledged publishes", L->unacked_total, 0);
}

static void row(const load *L, const char *suffix, double value,
                const char *unit, const char *better)
{
    char name[96], base[32];

    /* An idle run is named after the connections it held, so one cut
     * short by --conns (a descriptor limit) does not pass for idle100k. */
    if (L->sc->kind == K_IDLE && L->conns % 1000 == 0)
        snprintf(base, sizeof base, "idle%uk", L->conns / 1000);
    else if (L->sc->kind == K_IDLE)
        snprintf(base, sizeof base, "idle%u", L->conns);
    else
        snprintf(base, sizeof base, "%s", L->sc->name);
    snprintf(name, sizeof name, "%s%s%s", base, suffix, L->tag);
    if (!L->smoke)
        bench_row(name, L->system, value, unit, better);
}

static void run_throughput(load *L)
{
    connect_clients(L);
    L->publishing = true;
    L->t0 = L->t_last = L->last_progress = L->now = bench_now_ns();
    for (uint32_t i = L->subs; i < L->nc; i++)
        mark_ready(L, &L->c[i]);
    while (L->publishing) {
        step(L, 10);
        if (L->count ? L->sent_total >= L->count * L->pubs
                     : L->now - L->t0 >= L->duration_ns)
            L->publishing = false;
        if (L->now - L->last_progress > STALL_NS)
            L->publishing = false; /* drain() reports what is missing */
    }
    drain(L);
    report_counts(L);
    if (L->t_last > L->t0)
        row(L, "", (double)L->delivered * 1e9 / (double)(L->t_last - L->t0),
            "msg/s", "higher");
    if (L->smoke)
        printf("ok %s %s: %llu deliveries\n", L->sc->name, L->system,
               (unsigned long long)L->delivered);
}

static void start_timer(load *L)
{
    struct itimerspec its = {0};
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TIMER_TAG};

    L->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (L->timer_fd < 0 || epoll_ctl(L->ep, EPOLL_CTL_ADD, L->timer_fd, &ev))
        fail_sys("timerfd");
    /* The first tick is message 0, due at t0; tick k is due at
     * t0 + k * period, the time its payload carries. */
    L->t0 = bench_now_ns() + NS / 1000;
    its.it_value.tv_sec = (time_t)(L->t0 / NS);
    its.it_value.tv_nsec = (long)(L->t0 % NS);
    its.it_interval.tv_nsec = (long)L->period_ns;
    if (timerfd_settime(L->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        fail_sys("timerfd_settime");
}

static void run_latency(load *L)
{
    static const double PCT[] = {50, 99, 99.9};
    static const char *const NAME[] = {"-p50", "-p99", "-p999"};

    connect_clients(L);
    L->period_ns = NS / L->sc->rate;
    L->count = L->duration_ns / L->period_ns;
    L->count = L->count ? L->count : 1;
    L->lat_skip = L->smoke ? 0 : (uint32_t)(L->count / 10); /* warm-up */
    L->lat_cap = L->count;
    L->lat = xcalloc(L->lat_cap, sizeof *L->lat);
    L->publishing = true;
    start_timer(L);
    L->last_progress = bench_now_ns();
    while (L->publishing) {
        step(L, 10);
        if (L->now - L->last_progress > STALL_NS + L->duration_ns)
            L->publishing = false;
    }
    close(L->timer_fd);
    drain(L);
    report_counts(L);
    /* bench_percentile() reads a sorted array. */
    qsort(L->lat, L->nlat, sizeof *L->lat, bench_cmp_i64);
    for (int i = 0; i < 3 && L->nlat > 0; i++)
        row(L, NAME[i],
            (double)bench_percentile(L->lat, L->nlat, PCT[i]) / 1e3, "us",
            "lower");
    if (L->smoke)
        printf("ok %s %s: %zu latencies\n", L->sc->name, L->system, L->nlat);
}

static void run_storm(load *L)
{
    uint64_t n = L->conns;

    setup_conns(L, STORM_SLOTS);
    for (uint32_t i = 0; i < L->nc; i++)
        L->c[i].role = R_STORM;
    L->t0 = L->last_progress = bench_now_ns();
    while (L->storm_done < n) {
        for (uint32_t i = 0; i < L->nc && L->storm_started < n; i++)
            if (L->c[i].state == S_FREE) {
                open_conn(L, i);
                L->storm_started++;
            }
        step(L, 10);
        if (L->now - L->last_progress > STALL_NS)
            bench_fail(PROG, "storm %s: stalled after %llu of %llu",
                       L->system, (unsigned long long)L->storm_done,
                       (unsigned long long)n);
    }
    row(L, "", (double)n * 1e9 / (double)(L->now - L->t0), "conn/s",
        "higher");
    if (L->smoke)
        printf("ok storm %s: %llu connections\n", L->system,
               (unsigned long long)n);
}

/* The broker's resident set in bytes (VmRSS), or 0 if unknown. */
static uint64_t broker_rss(const load *L)
{
    char path[64], line[128];
    unsigned long long kb = 0;
    FILE *f;

    if (L->broker_pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/status", L->broker_pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

static void run_idle(load *L)
{
    uint32_t n = L->conns;
    uint64_t rss0, rss1, settle;

    setup_conns(L, n);
    for (uint32_t i = 0; i < n; i++)
        L->c[i].role = R_IDLE;
    rss0 = broker_rss(L);
    run_until(L, &L->connacks, n, n);
    /* Let the broker finish whatever it does after CONNACK, and notice
     * any connection it drops, before reading its memory. */
    settle = bench_now_ns() + (L->smoke ? NS / 10 : NS);
    while (L->now < settle)
        step(L, 10);
    rss1 = broker_rss(L);
    for (uint32_t i = 0; i < n; i++)
        if (L->c[i].state == S_READY) {
            wire_empty(&L->c[i].out, WIRE_PINGREQ);
            mark_dirty(L, &L->c[i]);
        }
    run_until(L, &L->pingresps, L->connacks - L->closed, n);
    printf("# %s%s %s: connections %u connacks %llu closed %llu held %llu "
           "broker_rss %llu -> %llu bytes\n",
           L->sc->name, L->tag, L->system, n, (unsigned long long)L->connacks,
           (unsigned long long)L->closed, (unsigned long long)L->pingresps,
           (unsigned long long)rss0, (unsigned long long)rss1);
    if (rss0 > 0 && rss1 > 0)
        row(L, "-mem", ((double)rss1 - (double)rss0) / n, "B/conn", "lower");
    row(L, "-held", (double)L->pingresps, "conns", "higher");
    if (L->smoke) {
        bench_check(PROG, "connections held (PINGRESP)", L->pingresps, n);
        printf("ok %s %s: %u connections held\n", L->sc->name, L->system, n);
    }
}

/* ------------------------------------------------------------ main */

/* --free-port [N]: prints N (default 1, at most 8) distinct loopback
 * ports that were free a moment ago, one a line. Every socket stays bound
 * until all N are chosen, so the kernel cannot hand out one port twice
 * (separate calls could, and a two-node cluster then collided). */
static int free_port(int n)
{
    int fds[8];

    if (n < 1 || n > 8)
        bench_fail(PROG, "--free-port takes 1 to 8");
    for (int i = 0; i < n; i++) {
        struct sockaddr_in a = loopback(0, 1);
        socklen_t len = sizeof a;

        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) != 0)
            fail_sys("free port");
        printf("%d\n", ntohs(a.sin_port));
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}

/* --wait-port P: waits (up to 10 s) until something accepts on P. A
 * broker starting up gives no event to wait for, so this polls. */
static int wait_port(int port)
{
    struct sockaddr_in a = loopback(port, 1);

    for (int i = 0; i < 1000; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;

        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        bench_sleep_us(10000);
    }
    fprintf(stderr, "%s: nothing listens on port %d\n", PROG, port);
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: %s --port P --scenario NAME [--system NAME] [--tag SUFFIX]\n"
            "          [--broker-pid PID] [--duration-ms N] [--window N]\n"
            "          [--conns N] [--keepalive S] [--sub-port P2]\n"
            "          [--persistent] [--smoke]\n"
            "       %s --free-port [N] | --wait-port P\n"
            "scenarios:", PROG, PROG);
    for (size_t i = 0; i < sizeof SCENARIOS / sizeof *SCENARIOS; i++)
        fprintf(stderr, " %s", SCENARIOS[i].name);
    fputc('\n', stderr);
    exit(2);
}

static const scenario *find_scenario(const char *name)
{
    for (size_t i = 0; i < sizeof SCENARIOS / sizeof *SCENARIOS; i++)
        if (strcmp(SCENARIOS[i].name, name) == 0)
            return &SCENARIOS[i];
    usage();
    return NULL;
}

static void parse_args(load *L, int argc, char **argv)
{
    long duration_ms = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--smoke") == 0) {
            L->smoke = true;
            continue;
        }
        if (strcmp(a, "--persistent") == 0) {
            L->persistent = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--port") == 0)
            L->port = atoi(v);
        else if (strcmp(a, "--sub-port") == 0)
            L->sub_port = atoi(v);
        else if (strcmp(a, "--scenario") == 0)
            L->sc = find_scenario(v);
        else if (strcmp(a, "--system") == 0)
            L->system = v;
        else if (strcmp(a, "--tag") == 0)
            L->tag = v;
        else if (strcmp(a, "--broker-pid") == 0)
            L->broker_pid = atol(v);
        else if (strcmp(a, "--duration-ms") == 0)
            duration_ms = atol(v);
        else if (strcmp(a, "--window") == 0)
            L->window = (uint32_t)atol(v);
        else if (strcmp(a, "--conns") == 0)
            L->conns = (uint32_t)atol(v);
        else if (strcmp(a, "--keepalive") == 0)
            L->keepalive_s = (uint16_t)atol(v);
        else
            usage();
    }
    if (L->sc == NULL || L->port <= 0 || L->port > 65535 ||
        L->sub_port < 0 || L->sub_port > 65535)
        usage();
    if (L->window == 0 || L->window > 60000)
        L->window = L->sc->window;
    if (L->conns == 0)
        L->conns = L->smoke ? L->sc->smoke_conns : L->sc->conns;
    if (duration_ms <= 0)
        duration_ms = L->sc->kind == K_LATENCY
                          ? (L->sc->rate >= 10000 ? 5000 : 10000)
                          : 3000;
    L->duration_ns = L->smoke ? SMOKE_LATENCY_NS
                              : (uint64_t)duration_ms * 1000000u;
}

int main(int argc, char **argv)
{
    load *L;

    if (argc == 2 && strcmp(argv[1], "--free-port") == 0)
        return free_port(1);
    if (argc == 3 && strcmp(argv[1], "--free-port") == 0)
        return free_port(atoi(argv[2]));
    if (argc == 3 && strcmp(argv[1], "--wait-port") == 0)
        return wait_port(atoi(argv[2]));
    L = xcalloc(1, sizeof *L);
    L->system = "broker";
    L->tag = "";
    parse_args(L, argc, argv);
    L->pubs = L->sc->pubs;
    L->subs = L->sc->subs;
    if (L->smoke) {
        L->pubs = L->pubs < SMOKE_ROLE_MAX ? L->pubs : SMOKE_ROLE_MAX;
        L->subs = L->subs < SMOKE_ROLE_MAX ? L->subs : SMOKE_ROLE_MAX;
        if (L->sc->kind == K_THROUGHPUT)
            L->count = L->pubs == 1 && L->subs == 1 ? SMOKE_COUNT
                                                    : SMOKE_COUNT / 10;
    }
    L->spp = L->sc->pairs ? 1 : L->subs;
    snprintf(L->prefix, sizeof L->prefix, "hb/%ld", (long)getpid());
    if ((L->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        fail_sys("epoll_create1");
    switch (L->sc->kind) {
    case K_THROUGHPUT:
        run_throughput(L);
        break;
    case K_LATENCY:
        run_latency(L);
        break;
    case K_STORM:
        run_storm(L);
        break;
    case K_IDLE:
        run_idle(L);
        break;
    }
    return 0;
}
