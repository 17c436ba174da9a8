/* tests/net/net_test.h: helpers shared by the socket tests of net/.
 *
 * A probe is a receiver that records every net message it gets, in order,
 * for the test thread to wait on; an echo receiver writes every frame back
 * with a newline. Clients are plain blocking sockets with a receive timeout
 * (a safety net against hangs, never an assertion about time). */
#ifndef HM_TESTS_NET_TEST_H
#define HM_TESTS_NET_TEST_H

#include "net/conn.h"
#include "net/net.h"
#include "runtime/alloc.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROBE_CAP 8192

typedef struct probe_event {
    const hm_type *type;
    hm_err err;
    uint64_t conn_id;
    size_t len;
    char *data; /* malloc'd copy of a frame, NUL-terminated */
} probe_event;

typedef struct probe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    probe_event ev[PROBE_CAP]; /* guarded by: lock */
    int head, count;           /* guarded by: lock */
    hm_conn *conn;             /* the last opened conn; guarded by: lock */
    bool keep_payloads;        /* hold frames (in-flight) instead of freeing */
    void *kept[PROBE_CAP];     /* guarded by: lock */
    int nkept;                 /* guarded by: lock */
} probe;

static inline hm_err probe_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    probe *p = state;
    probe_event e = {.type = hm_msg_type(msg),
                     .err = hm_net_msg_err(msg),
                     .conn_id = hm_msg_arg(msg)};
    const uint8_t *d = hm_net_msg_data(msg, &e.len);

    (void)ctx;
    e.data = malloc(e.len + 1);
    memcpy(e.data, d ? (const void *)d : "", e.len);
    e.data[e.len] = '\0';
    pthread_mutex_lock(&p->lock);
    if (e.type == &hm_net_opened_type) {
        hm_conn_release(p->conn);
        p->conn = hm_conn_ref(hm_net_msg_conn(msg));
    }
    if (p->count == PROBE_CAP || p->nkept == PROBE_CAP)
        abort(); /* not cr_assert: this is a runtime worker thread */
    if (p->keep_payloads && e.type == &hm_net_frame_type)
        p->kept[p->nkept++] = hm_msg_take_payload(msg);
    p->ev[(p->head + p->count++) % PROBE_CAP] = e;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return HM_OK;
}

/* Spawns a probe receiver at `name`; returns its owned address. */
static inline hm_addr *probe_spawn(hm_runtime *rt, const char *name, probe *p)
{
    hm_addr *a = NULL;

    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    cr_assert_eq(
        hm_runtime_spawn(
            rt, name,
            &(hm_receiver){.handler = probe_handle, .state = p, .pinned = true},
            &a),
        HM_OK);
    return a;
}

/* Waits up to 10 s for the next event; false on timeout. */
static inline bool probe_next(probe *p, probe_event *out)
{
    struct timespec ts;
    bool ok = true;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&p->lock);
    while (p->count == 0 && ok)
        ok = pthread_cond_timedwait(&p->cond, &p->lock, &ts) == 0;
    if (p->count > 0) {
        *out = p->ev[p->head];
        p->head = (p->head + 1) % PROBE_CAP;
        p->count--;
        ok = true;
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

/* Waits for the next event and checks its type. The caller frees data. */
static inline probe_event probe_expect(probe *p, const hm_type *type)
{
    probe_event e;

    cr_assert(probe_next(p, &e), "timed out waiting for %s", type->name);
    cr_assert_eq(e.type, type, "expected %s, got %s", type->name, e.type->name);
    return e;
}

/* Waits for the next event, checks its type, and frees it. */
static inline void probe_skip(probe *p, const hm_type *type)
{
    free(probe_expect(p, type).data);
}

/* The last opened conn: returns an owned reference. */
static inline hm_conn *probe_conn(probe *p)
{
    hm_conn *c;

    pthread_mutex_lock(&p->lock);
    c = p->conn ? hm_conn_ref(p->conn) : NULL;
    pthread_mutex_unlock(&p->lock);
    return c;
}

static inline void probe_fini(probe *p)
{
    probe_event e = {0};

    hm_conn_release(p->conn);
    while (p->count > 0 && probe_next(p, &e))
        free(e.data);
    for (int i = 0; i < p->nkept; i++)
        hm_net_frame_type.free(p->kept[i]);
}

/* The common set-up of the socket tests: a runtime with two workers, a net
 * with two I/O threads and a probe named "probe", each returned owned. */
static inline void net_start(hm_runtime **rt, hm_net **net, probe *pr,
                             hm_addr **probe_addr)
{
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, rt),
                 HM_OK);
    cr_assert_eq(
        hm_net_create(&(hm_net_config){.rt = *rt, .io_threads = 2}, net),
        HM_OK);
    *probe_addr = probe_spawn(*rt, "probe", pr);
}

/* Tears down what net_start() made, in the order net.h prescribes. */
static inline void net_finish(hm_runtime *rt, hm_net *net, probe *pr,
                              hm_addr *probe_addr)
{
    hm_net_stop(net);
    hm_addr_release(probe_addr);
    hm_runtime_destroy(rt);
    hm_net_destroy(net);
    probe_fini(pr);
}

/* Writes every frame back with a newline; closes on end of stream. */
static inline hm_err echo_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_conn *c = hm_net_msg_conn(msg);

    (void)ctx;
    (void)state;
    if (hm_msg_type(msg) == &hm_net_frame_type) {
        size_t len;
        const uint8_t *d = hm_net_msg_data(msg, &len);
        char *line = hm_alloc(len + 1);

        memcpy(line, d, len);
        line[len] = '\n';
        if (hm_conn_write_take(c, line, len + 1) != HM_OK)
            hm_free(line);
    } else if (hm_msg_type(msg) == &hm_net_eof_type ||
               hm_msg_type(msg) == &hm_net_error_type) {
        hm_conn_close(c);
    }
    return HM_OK;
}

/* An accept function that gives every connection to the address `arg`. */
static inline hm_err accept_to(void *arg, uint64_t id, const char *peer,
                               hm_addr **owner_out)
{
    (void)id;
    (void)peer;
    *owner_out = hm_addr_ref(arg);
    return HM_OK;
}

/* ------------------------------------------------------------- clients */

static inline int client_connect_host(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv = {.tv_sec = 10};
    int one = 1;
    int fd;

    memset(&ss, 0, sizeof ss);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *in6 = (void *)&ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &in6->sin6_addr);
        len = sizeof *in6;
    } else {
        struct sockaddr_in *in = (void *)&ss;

        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &in->sin_addr);
        len = sizeof *in;
    }
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cr_assert_eq(connect(fd, (struct sockaddr *)&ss, len), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

static inline int client_connect(int port)
{
    return client_connect_host("127.0.0.1", port);
}

static inline void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static inline void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Reads exactly `len` bytes; false on EOF or error. */
static inline bool recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);

        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads one line (without the newline) into buf; false on EOF/error. */
static inline bool recv_line(int fd, char *buf, size_t cap)
{
    size_t i = 0;

    while (i + 1 < cap) {
        char ch;

        if (recv(fd, &ch, 1, 0) != 1)
            return false;
        if (ch == '\n') {
            buf[i] = '\0';
            return true;
        }
        buf[i++] = ch;
    }
    return false;
}

/* A free TCP port on loopback (bound then closed again). */
static inline int closed_port(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    socklen_t len = sizeof in;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    getsockname(fd, (struct sockaddr *)&in, &len);
    port = ntohs(in.sin_port);
    close(fd);
    return port;
}

#endif
