/* tests/stress/stress_net_write.c: many threads writing to one connection,
 * and closes racing writes; for ThreadSanitizer (`make tsan`).
 *
 * Phase 1: WRITERS threads each write LINES numbered lines to the same
 * handle while a plain socket reads; every writer's lines must arrive whole
 * (never interleaved) and in its order. Phase 2: the same writers race a
 * graceful close from another thread; every write returns HM_OK, HM_EFULL
 * or HM_ECLOSED, and the peer sees a clean end of stream. Phase 3: clients
 * connect and vanish while the owner writes, many times. Phase 4: reads
 * pause and resume on a tiny in-flight bound while workers free frames.
 * Phase 5: writers that pause now and then (so the I/O thread sleeps and
 * handles send directly, ADR 0151) write lines of up to 40 KB to a peer
 * with a small receive buffer that reads slowly, so direct sends come up
 * short and their rest must still go out before anything queued; lines
 * must arrive whole and in each writer's order, as in phase 1. Phase 6:
 * on a net whose loops run a frame's owner themselves when the workers
 * sleep (ADR 0175), clients on two loops send paced bursts of numbered
 * lines to one echoing receiver, run now by an I/O thread, now by a
 * worker; every client reads its lines back in order. */
#include "net/conn.h"
#include "net/net.h"
#include "runtime/alloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WRITERS 4
#define LINES 5000
#define CYCLES 200

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #x);                                                       \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

typedef struct owner {
    _Atomic(hm_conn *) conn; /* the latest opened connection (a reference) */
    atomic_int closed;       /* net.closed messages seen */
    atomic_int frames;       /* net.frame messages seen */
} owner;

static hm_err owner_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    owner *o = state;

    (void)ctx;
    if (hm_msg_type(msg) == &hm_net_opened_type) {
        hm_conn *old =
            atomic_exchange(&o->conn, hm_conn_ref(hm_net_msg_conn(msg)));

        hm_conn_release(old);
    } else if (hm_msg_type(msg) == &hm_net_closed_type) {
        atomic_fetch_add(&o->closed, 1);
    } else if (hm_msg_type(msg) == &hm_net_frame_type) {
        atomic_fetch_add(&o->frames, 1);
    }
    return HM_OK;
}

static hm_err accept_owner(void *arg, uint64_t id, const char *peer,
                           hm_addr **out)
{
    (void)id;
    (void)peer;
    *out = hm_addr_ref(arg);
    return HM_OK;
}

static int connect_to(int port)
{
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&in, sizeof in) == 0);
    return fd;
}

static void send_all_fd(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Takes the connection the owner was last given, waiting for it. */
static hm_conn *await_conn(owner *o)
{
    hm_conn *c;

    while (!(c = atomic_exchange(&o->conn, NULL)))
        sched_yield();
    return c;
}

typedef struct writer {
    hm_conn *conn;
    int id;
    bool until_closed; /* phase 2: stop at HM_ECLOSED */
} writer;

static void *write_lines(void *arg)
{
    writer *w = arg;
    char line[64];

    for (int seq = 0; seq < LINES; seq++) {
        int len = snprintf(line, sizeof line, "w%d %d\n", w->id, seq);
        hm_err err;

        while ((err = hm_conn_write(w->conn, line, (size_t)len)) == HM_EFULL)
            sched_yield();
        if (w->until_closed && err == HM_ECLOSED)
            return NULL;
        CHECK(err == HM_OK);
    }
    return NULL;
}

static void check_lines(int fd)
{
    int next[WRITERS] = {0}, total = 0;
    char buf[65536], line[64];
    size_t used = 0;
    ssize_t n;

    while (total < WRITERS * LINES && (n = recv(fd, buf, sizeof buf, 0)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            int id, seq;

            if (buf[i] != '\n') {
                CHECK(used + 1 < sizeof line);
                line[used++] = buf[i];
                continue;
            }
            line[used] = '\0';
            used = 0;
            CHECK(sscanf(line, "w%d %d", &id, &seq) == 2);
            CHECK(id >= 0 && id < WRITERS && seq == next[id]);
            next[id]++;
            total++;
        }
    }
    CHECK(total == WRITERS * LINES);
}

static void run_writers(hm_conn *c, bool until_closed, pthread_t *t, writer *w)
{
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.conn = c, .id = i, .until_closed = until_closed};
        CHECK(pthread_create(&t[i], NULL, write_lines, &w[i]) == 0);
    }
}

static void phase_ordered(owner *o, int port)
{
    pthread_t t[WRITERS];
    writer w[WRITERS];
    int fd = connect_to(port);
    hm_conn *c = await_conn(o);

    run_writers(c, false, t, w);
    check_lines(fd);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    hm_conn_release(c);
    close(fd);
}

static void phase_close_race(owner *o, int port)
{
    pthread_t t[WRITERS];
    writer w[WRITERS];
    int fd = connect_to(port);
    hm_conn *c = await_conn(o);
    char buf[65536];
    ssize_t n;

    run_writers(c, true, t, w);
    hm_conn_close(c);
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        ;
    CHECK(n == 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    hm_conn_release(c);
    close(fd);
}

#define DIRECT_LINES 400
#define DIRECT_PAD_MAX 40000

static void *write_paced_lines(void *arg)
{
    writer *w = arg;
    char *pad = malloc(DIRECT_PAD_MAX);
    char *line = malloc(DIRECT_PAD_MAX + 64);
    unsigned rng = (unsigned)w->id * 2654435761u + 1;

    memset(pad, 'x', DIRECT_PAD_MAX);
    for (int seq = 0; seq < DIRECT_LINES; seq++) {
        int pad_len, len;
        hm_err err;

        rng = rng * 1103515245u + 12345u;
        pad_len = (int)((rng >> 8) % DIRECT_PAD_MAX);
        len = snprintf(line, DIRECT_PAD_MAX + 64, "w%d %d %.*s\n", w->id, seq,
                       pad_len, pad);
        while ((err = hm_conn_write(w->conn, line, (size_t)len)) == HM_EFULL)
            usleep(100);
        CHECK(err == HM_OK);
        usleep(2000); /* the I/O thread falls asleep, the queue empties */
    }
    free(pad);
    free(line);
    return NULL;
}

/* Reads lines of any length; checks each writer's order and that no line
 * is cut or mixed with another. Reads in small pieces, pausing. */
static void check_paced_lines(int fd)
{
    int next[WRITERS] = {0}, total = 0, reads = 0;
    char buf[4096];
    char *line = malloc(DIRECT_PAD_MAX + 64);
    size_t used = 0;
    ssize_t n;

    while (total < WRITERS * DIRECT_LINES &&
           (n = recv(fd, buf, sizeof buf, 0)) > 0) {
        if (++reads % 8 == 0)
            usleep(1000); /* a slow reader: the send buffer fills */
        for (ssize_t i = 0; i < n; i++) {
            int id, seq;
            size_t j;

            if (buf[i] != '\n') {
                CHECK(used + 1 < DIRECT_PAD_MAX + 64);
                line[used++] = buf[i];
                continue;
            }
            line[used] = '\0';
            CHECK(sscanf(line, "w%d %d", &id, &seq) == 2);
            CHECK(id >= 0 && id < WRITERS && seq == next[id]);
            for (j = 0; j < used && line[j] != ' '; j++)
                ;
            for (j++; j < used && line[j] != ' '; j++)
                ;
            for (j++; j < used; j++)
                CHECK(line[j] == 'x'); /* nothing of another line inside */
            used = 0;
            next[id]++;
            total++;
        }
    }
    CHECK(total == WRITERS * DIRECT_LINES);
    free(line);
}

static void phase_direct(hm_net *net, owner *o, int port)
{
    pthread_t t[WRITERS];
    writer w[WRITERS];
    struct sockaddr_in in = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
    hm_net_stats before, after;
    hm_conn *c;

    /* Before connect, so the advertised window stays small too. */
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&in, sizeof in) == 0);
    c = await_conn(o);
    hm_net_stats_get(net, &before);

    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.conn = c, .id = i};
        CHECK(pthread_create(&t[i], NULL, write_paced_lines, &w[i]) == 0);
    }
    check_paced_lines(fd);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    hm_net_stats_get(net, &after);
    CHECK(after.direct_sends > before.direct_sends); /* the path was taken */
    hm_conn_release(c);
    close(fd);
}

static void phase_vanishing_peers(owner *o, int port)
{
    for (int i = 0; i < CYCLES; i++) {
        int fd = connect_to(port);
        hm_conn *c = await_conn(o);
        hm_err err;

        close(fd);
        do /* write until the connection is seen closed */
            err = hm_conn_write(c, "x\n", 2);
        while (err == HM_OK || err == HM_EFULL);
        CHECK(err == HM_ECLOSED);
        hm_conn_release(c);
    }
}

/* Phase 4: a peer floods a connection whose in-flight bound is tiny, so
 * the I/O thread pauses and resumes reading thousands of times while the
 * workers free frames: the pause/resume handshake under TSan. */
static void phase_backpressure(hm_net *net, hm_addr *addr, owner *o)
{
    hm_listener *l;
    hm_net_stats st;
    char line[64];
    int fd;

    CHECK(hm_net_listen(net,
                        &(hm_listen_config){.host = "127.0.0.1",
                                            .accept = accept_owner,
                                            .accept_arg = addr,
                                            .conn = {.max_inflight_len = 512}},
                        &l) == HM_OK);
    fd = connect_to(hm_listener_port(l));
    hm_conn_release(await_conn(o));
    atomic_store(&o->frames, 0);
    memset(line, 'f', sizeof line);
    line[sizeof line - 1] = '\n';
    for (int i = 0; i < 20000; i++)
        send_all_fd(fd, line, sizeof line);
    while (atomic_load(&o->frames) < 20000)
        sched_yield();
    hm_net_stats_get(net, &st);
    CHECK(st.read_pauses > 0);
    close(fd);
    hm_listener_close(l);
}

/* ------------------------------------------------ phase 6: inline owners */

#define ECHO_CLIENTS 4
#define ECHO_LINES 2000
#define ECHO_BURST 8

/* Writes every frame back, with its newline, on the frame's connection. */
static hm_err echo_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    size_t len;
    const uint8_t *data = hm_net_msg_data(msg, &len);
    char buf[64];

    (void)ctx;
    (void)state;
    if (hm_msg_type(msg) != &hm_net_frame_type || len >= sizeof buf)
        return HM_OK;
    memcpy(buf, data, len);
    buf[len] = '\n';
    CHECK(hm_conn_write(hm_net_msg_conn(msg), buf, len + 1) == HM_OK);
    return HM_OK;
}

/* Sends numbered lines in bursts with pauses (so the workers go to sleep
 * and the loops run the echo themselves), and reads them back in order. */
static void *echo_client(void *arg)
{
    int port = (int)(intptr_t)arg, fd = connect_to(port);
    char got[ECHO_LINES * 8], line[16];
    size_t have = 0, want = 0;

    for (int i = 0; i < ECHO_LINES; i++) {
        int n = snprintf(line, sizeof line, "%d\n", i);

        send_all_fd(fd, line, (size_t)n);
        want += (size_t)n;
        if (i % ECHO_BURST == ECHO_BURST - 1)
            nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
    }
    while (have < want) {
        ssize_t n = recv(fd, got + have, sizeof got - have, 0);

        CHECK(n > 0);
        have += (size_t)n;
    }
    for (int i = 0, off = 0; i < ECHO_LINES; i++) {
        int n = snprintf(line, sizeof line, "%d\n", i);

        CHECK(memcmp(got + off, line, (size_t)n) == 0);
        off += n;
    }
    close(fd);
    return NULL;
}

static void phase_inline(hm_runtime *rt)
{
    pthread_t t[ECHO_CLIENTS];
    hm_net_stats st;
    hm_listener *l;
    hm_addr *echo;
    hm_net *net;

    CHECK(hm_net_create(&(hm_net_config){.rt = rt,
                                         .io_threads = 2,
                                         .inline_turns = 2},
                        &net) == HM_OK);
    CHECK(hm_runtime_spawn(rt, "echo",
                           &(hm_receiver){.handler = echo_handle,
                                          .pinned = true,
                                          .runs_anywhere = true},
                           &echo) == HM_OK);
    CHECK(hm_net_listen(net,
                        &(hm_listen_config){.host = "127.0.0.1",
                                            .accept = accept_owner,
                                            .accept_arg = echo},
                        &l) == HM_OK);
    for (int i = 0; i < ECHO_CLIENTS; i++)
        CHECK(pthread_create(&t[i], NULL, echo_client,
                             (void *)(intptr_t)hm_listener_port(l)) == 0);
    for (int i = 0; i < ECHO_CLIENTS; i++)
        pthread_join(t[i], NULL);
    hm_net_stats_get(net, &st);
    printf("stress_net_write: phase 6: %llu of %llu frames run by a loop\n",
           (unsigned long long)st.inline_frames,
           (unsigned long long)st.frames_in);
    hm_listener_close(l);
    hm_net_stop(net);
    hm_addr_release(echo);
    hm_net_destroy(net);
}

int main(void)
{
    hm_runtime *rt;
    hm_net *net;
    hm_listener *l;
    hm_addr *addr;
    owner o = {0};

    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt) == HM_OK);
    CHECK(hm_net_create(&(hm_net_config){.rt = rt, .io_threads = 2}, &net) ==
          HM_OK);
    CHECK(hm_runtime_spawn(rt, "owner",
                           &(hm_receiver){.handler = owner_handle,
                                          .state = &o,
                                          .pinned = true},
                           &addr) == HM_OK);
    CHECK(hm_net_listen(
              net,
              &(hm_listen_config){.host = "127.0.0.1",
                                  .accept = accept_owner,
                                  .accept_arg = addr,
                                  .conn = {.max_write_queue_len = 64 * 1024}},
              &l) == HM_OK);
    phase_ordered(&o, hm_listener_port(l));
    phase_close_race(&o, hm_listener_port(l));
    phase_vanishing_peers(&o, hm_listener_port(l));
    phase_backpressure(net, addr, &o);
    hm_listener_close(l);
    /* Phase 5's listener: a small send buffer, so direct sends come up
     * short. */
    CHECK(hm_net_listen(net,
                        &(hm_listen_config){
                            .host = "127.0.0.1",
                            .accept = accept_owner,
                            .accept_arg = addr,
                            .conn = {.max_write_queue_len = 64 * 1024,
                                     .send_buffer_len = 4096}},
                        &l) == HM_OK);
    phase_direct(net, &o, hm_listener_port(l));
    hm_listener_close(l);
    hm_net_stop(net);
    phase_inline(rt);
    hm_addr_release(addr);
    hm_runtime_destroy(rt);
    hm_net_destroy(net);
    hm_conn_release(atomic_exchange(&o.conn, NULL));
    printf("stress_net_write: %d lines x %d writers, close race, %d peers "
           "vanished, 20000 frames through a 512-byte in-flight bound, "
           "%d paced lines of up to %d bytes x %d writers, %d lines echoed "
           "to %d clients by inline owners: ok\n",
           LINES, WRITERS, CYCLES, DIRECT_LINES, DIRECT_PAD_MAX, WRITERS,
           ECHO_LINES, ECHO_CLIENTS);
    return 0;
}
