/* bench/bench_net.c: HP echo over loopback, Hermes against a plain C echo.
 *
 *   bench_net [--smoke]
 *
 * Prints TSV rows (scenario, system, value, unit, better) on stdout, no
 * header; bench/suite_net.sh adds the header and the table. The Hermes
 * server is the real stack: a net with one I/O thread, a runtime with two
 * workers, the HP echo service of net/hp_echo.h (one pinned receiver per
 * connection running an hm_hp_session and echoing "msg" envelopes: decode,
 * re-encode, write). The baseline,
 * `limit-echo`, is a thread-per-connection blocking echo that parses
 * nothing: the loopback limit for the same clients on the same machine.
 *
 * Clients pipeline WINDOW identical HP lines per connection, then read the
 * WINDOW echoes back; with --smoke the sizes are tiny, every echoed byte is
 * compared with what was sent, and nothing is timed. */
#include "bench/bench_common.h"
#include "net/conn.h"
#include "net/hp.h"
#include "net/hp_echo.h"
#include "net/hp_session.h"
#include "net/net.h"
#include "runtime/alloc.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINDOW 32
#define CLIENT_THREADS 4
#define MAX_CONNS 64

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "bench_net: %s:%d: %s\n", __FILE__, __LINE__, #x); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------ the Hermes server */

/* The raw line echo: one receiver owns every raw connection and writes
 * each frame back with its newline, decoding nothing. */
static hm_err raw_echo_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    size_t len;
    const uint8_t *d = hm_net_msg_data(msg, &len);
    char *line;

    if (hm_msg_type(msg) != &hm_net_frame_type)
        return HM_OK;
    line = hm_alloc(len + 1);
    memcpy(line, d, len);
    line[len] = '\n';
    if (hm_conn_write_take(hm_net_msg_conn(msg), line, len + 1) != HM_OK)
        hm_free(line);
    return HM_OK;
}

static hm_err raw_accept(void *arg, uint64_t id, const char *peer,
                         hm_addr **owner_out)
{
    *owner_out = hm_addr_ref(arg);
    return HM_OK;
}

/* ------------------------------------------------------ the limit server */

typedef struct limit_server {
    int lfd, port, nconns;
    pthread_t accept_thread;
    pthread_t conn_threads[MAX_CONNS];
} limit_server;

static void *limit_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    ssize_t n;

    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));

            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    close(fd);
    return NULL;
}

static void *limit_accept(void *arg)
{
    limit_server *s = arg;

    for (int i = 0; i < s->nconns; i++) {
        int fd = accept(s->lfd, NULL, NULL), one = 1;

        CHECK(fd >= 0);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        CHECK(pthread_create(&s->conn_threads[i], NULL, limit_conn,
                             (void *)(intptr_t)fd) == 0);
    }
    return NULL;
}

static void limit_start(limit_server *s, int nconns)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    socklen_t len = sizeof in;

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(s->lfd, (struct sockaddr *)&in, sizeof in) == 0);
    CHECK(listen(s->lfd, 128) == 0);
    getsockname(s->lfd, (struct sockaddr *)&in, &len);
    s->port = ntohs(in.sin_port);
    s->nconns = nconns;
    CHECK(pthread_create(&s->accept_thread, NULL, limit_accept, s) == 0);
}

static void limit_stop(limit_server *s)
{
    pthread_join(s->accept_thread, NULL);
    for (int i = 0; i < s->nconns; i++)
        pthread_join(s->conn_threads[i], NULL);
    close(s->lfd);
}

/* ------------------------------------------------------------- clients */

typedef struct client_job {
    int fds[MAX_CONNS];
    int nconns;
    size_t rounds;
    const char *window; /* WINDOW copies of the line */
    size_t window_len;
    bool smoke;
} client_job;

static int dial(int port)
{
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&in, sizeof in) == 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void recv_all(int fd, char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);

        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void *client_run(void *arg)
{
    client_job *j = arg;
    char *got = hm_alloc(j->window_len);

    for (size_t r = 0; r < j->rounds; r++) {
        for (int i = 0; i < j->nconns; i++)
            send_all(j->fds[i], j->window, j->window_len);
        for (int i = 0; i < j->nconns; i++) {
            recv_all(j->fds[i], got, j->window_len);
            if (j->smoke)
                CHECK(memcmp(got, j->window, j->window_len) == 0);
        }
    }
    hm_free(got);
    return NULL;
}

/* One HP "msg" line with a `body_len`-byte string payload; returns owned. */
static char *make_line(size_t body_len, size_t *len)
{
    char *data = hm_alloc(body_len + 1);
    json_t *body;
    char *line;

    memset(data, 'd', body_len);
    data[body_len] = '\0';
    body = json_pack("{s:s,s:s}", "type", "bench.blob", "data", data);
    CHECK(hm_hp_encode(&(hm_hp_envelope){.type = "msg", .id = 1, .body = body},
                       0, &line, len) == HM_OK);
    json_decref(body);
    hm_free(data);
    return line;
}

/* Runs about `msgs` echoes over `nconns` connections to `port`; returns
 * the seconds taken, the echoes done in *done and the line length in
 * *line_len. */
static double run_clients(int port, int nconns, size_t body_len, size_t msgs,
                          bool smoke, size_t *done, size_t *line_len)
{
    client_job jobs[CLIENT_THREADS] = {0};
    pthread_t t[CLIENT_THREADS];
    int nthreads = nconns < CLIENT_THREADS ? nconns : CLIENT_THREADS;
    size_t len;
    char *line = make_line(body_len, &len);
    char *window = hm_alloc(len * WINDOW);
    size_t rounds = msgs / (size_t)nconns / WINDOW;
    uint64_t t0;

    for (int i = 0; i < WINDOW; i++)
        memcpy(window + (size_t)i * len, line, len);
    for (int i = 0; i < nconns; i++) {
        client_job *j = &jobs[i % nthreads];

        j->fds[j->nconns++] = dial(port);
    }
    t0 = bench_now_ns(); /* connections are set up: time the echoes */
    for (int i = 0; i < nthreads; i++) {
        jobs[i].rounds = rounds ? rounds : 1;
        jobs[i].window = window;
        jobs[i].window_len = len * WINDOW;
        jobs[i].smoke = smoke;
    }
    for (int i = 0; i < nthreads; i++)
        CHECK(pthread_create(&t[i], NULL, client_run, &jobs[i]) == 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;

    for (int i = 0; i < nthreads; i++)
        for (int k = 0; k < jobs[i].nconns; k++)
            close(jobs[i].fds[k]);
    hm_free(window);
    hm_free(line);
    *line_len = len;
    *done = (rounds ? rounds : 1) * WINDOW * (size_t)nconns;
    return secs;
}

/* ------------------------------------------------------------------ main */

typedef struct scenario {
    const char *name;
    size_t body_len;
    int nconns;
    size_t msgs; /* full run */
    bool raw;    /* Hermes echoes lines without decoding HP */
} scenario;

/* The raw-line rows separate the cost of net (read, frame, deliver, write)
 * from the cost of the HP codec and session on top of it. */
static const scenario scenarios[] = {
    {"small-1c", 16, 1, 100000, false},    {"small-64c", 16, 64, 200000, false},
    {"4k-1c", 4096, 1, 20000, false},      {"4k-64c", 4096, 64, 40000, false},
    {"raw-small-1c", 16, 1, 100000, true}, {"raw-4k-1c", 4096, 1, 50000, true},
};

static void report(const scenario *sc, const char *system, double secs,
                   size_t done, size_t line_len)
{
    char name[64];

    snprintf(name, sizeof name, "echo-%s", sc->name);
    bench_row(name, system, (double)done / secs, "msg/s", "higher");
    snprintf(name, sizeof name, "echo-%s-bw", sc->name);
    bench_row(name, system, (double)done * (double)line_len / secs / 1e6,
              "MB/s", "higher");
}

int main(int argc, char **argv)
{
    bool smoke = argc > 1 && strcmp(argv[1], "--smoke") == 0;
    hm_runtime *rt;
    hm_net *net;
    hm_listener *l, *raw;
    hm_addr *raw_owner;

    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt) == HM_OK);
    /* The bench skips the handshake: every connection counts as greeted. */
    hm_hp_echo_config echo = {
        .rt = rt, .agent = "bench", .prefix = "bench", .greeted = true};
    CHECK(hm_net_create(&(hm_net_config){.rt = rt, .io_threads = 1}, &net) ==
          HM_OK);
    CHECK(hm_net_listen(net,
                        &(hm_listen_config){.host = "127.0.0.1",
                                            .accept = hm_hp_echo_accept,
                                            .accept_arg = &echo},
                        &l) == HM_OK);
    CHECK(hm_runtime_spawn(
              rt, "bench/raw",
              &(hm_receiver){.handler = raw_echo_handle, .pinned = true},
              &raw_owner) == HM_OK);
    CHECK(hm_net_listen(net,
                        &(hm_listen_config){.host = "127.0.0.1",
                                            .accept = raw_accept,
                                            .accept_arg = raw_owner},
                        &raw) == HM_OK);
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        scenario sc = scenarios[i];
        const char *only = getenv("BENCH_NET_ONLY"); /* one scenario */
        limit_server ls;
        size_t done, line_len;
        double secs;

        if (only && strcmp(only, sc.name) != 0)
            continue;
        if (smoke) {
            sc.nconns = sc.nconns > 4 ? 4 : sc.nconns;
            sc.msgs = (size_t)sc.nconns * WINDOW * 2;
        }
        secs = run_clients(hm_listener_port(sc.raw ? raw : l), sc.nconns,
                           sc.body_len, sc.msgs, smoke, &done, &line_len);
        if (!smoke)
            report(&sc, "hermes", secs, done, line_len);
        limit_start(&ls, sc.nconns);
        secs = run_clients(ls.port, sc.nconns, sc.body_len, sc.msgs, smoke,
                           &done, &line_len);
        limit_stop(&ls);
        if (!smoke)
            report(&sc, "limit-echo", secs, done, line_len);
    }
    hm_listener_close(l);
    hm_listener_close(raw);
    hm_net_stop(net);
    hm_addr_release(raw_owner);
    hm_runtime_destroy(rt);
    hm_net_destroy(net);
    if (smoke)
        printf("ok net echo: %zu scenarios x 2 systems, every echoed byte "
               "checked\n",
               sizeof scenarios / sizeof scenarios[0]);
    return 0;
}
