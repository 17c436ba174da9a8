/* bench/bench_mqtt_loop.h: the load generator's connections and event
 * loop: the types a scenario run is made of, non-blocking connects paced
 * so no listen backlog overflows, the MQTT client side of every packet,
 * the delivery accounting (a bitmap per subscriber and publisher, so lost,
 * duplicated and reordered deliveries are exact), the closed-loop publish
 * pump and the latency timer.
 *
 * The key decision: one thread and one edge-triggered epoll set; writes
 * are queued per connection and flushed once per turn, so a burst of
 * acknowledgements costs one write() per connection, and the generator
 * stays cheaper than the brokers it drives.
 *
 * Only bench/bench_mqtt_load.c includes this file: it is that program's
 * second half, kept apart so that each file stays short (the Makefile
 * builds every bench/bench_*.c into a program of its own, so shared code
 * lives in headers, as in bench_common.h). */
#ifndef HM_BENCH_MQTT_LOOP_H
#define HM_BENCH_MQTT_LOOP_H

#include "bench/bench_common.h"
#include "bench/bench_mqtt_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define PROG "bench_mqtt_load"
#define PAYLOAD_LEN 64          /* bytes in every PUBLISH payload */
#define OPEN_CONCURRENCY 128    /* connections between connect and CONNACK */
#define STORM_SLOTS 64          /* concurrent connections in the storm */
#define SOURCE_ADDRS 8          /* 127.0.0.1-8: 8 x 28k ephemeral ports */
#define STALL_NS 10000000000ull /* no progress for this long: give up */
#define TIMER_TAG UINT32_MAX    /* epoll tag of the latency timerfd */
#define NS 1000000000ull

typedef enum kind { K_THROUGHPUT, K_LATENCY, K_STORM, K_IDLE } kind;

typedef struct scenario {
    const char *name;
    kind kind;
    uint32_t pubs, subs; /* throughput: connections of each role */
    bool pairs;          /* publisher i -> topic i -> subscriber i */
    uint8_t qos;
    uint32_t window; /* throughput: messages outstanding per publisher */
    uint32_t rate;   /* latency: messages per second */
    uint32_t conns, smoke_conns; /* storm and idle */
} scenario;


typedef enum role { R_SUB, R_PUB, R_IDLE, R_STORM } role;
typedef enum state {
    S_FREE,       /* no socket */
    S_CONNECTING, /* connect() in progress */
    S_CONNACK,    /* CONNECT sent, waiting for CONNACK */
    S_READY,
    S_LEAVING, /* DISCONNECT sent, waiting for the broker to close */
} state;

/* What one subscriber has received from one publisher: a bitmap of
 * sequence numbers and one past the highest seen. */
typedef struct track {
    uint64_t *bits;
    uint32_t words, next;
} track;

/* The header of every payload (the rest is padding). */
typedef struct stamp {
    uint32_t pub, seq;
    uint64_t ts_ns;
} stamp;

typedef struct lconn {
    int fd;
    uint8_t role, state;
    bool dirty, ready; /* on the dirty (to flush) / ready (to pump) list */
    uint32_t index;    /* publisher or subscriber index within its role */
    uint16_t next_pid;
    wire_buf in, out;
    uint64_t sent, delivered, unacked; /* publishers */
    track **from;                      /* subscribers: one per publisher */
} lconn;

typedef struct load {
    const scenario *sc;
    const char *system, *tag;
    int port;
    int sub_port; /* subscribers connect here (another cluster node); 0: port */
    long broker_pid;
    uint16_t keepalive_s; /* in every CONNECT (--keepalive; 0: none) */
    bool smoke;
    bool persistent; /* subscribers connect with CleanSession 0 */
    uint64_t duration_ns, count; /* count: per publisher, 0 = by time */
    uint32_t pubs, subs, spp;    /* spp: subscribers per publisher */
    uint32_t window;             /* the scenario's, or --window */
    uint32_t conns;              /* storm, idle: the scenario's or --conns */
    int ep, timer_fd;
    lconn *c;
    uint32_t nc;
    uint32_t *dirty, ndirty, *ready, nready;
    uint32_t next_open, opening; /* pacing of new connections */
    uint64_t serial;             /* client ids */
    uint64_t connacks, subacks, pingresps, closed, storm_done, storm_started;
    bool publishing;
    uint64_t now, t0, t_last, last_progress, period_ns;
    uint64_t sent_total, unacked_total;
    uint64_t delivered, unique, dups, reordered;
    int64_t *lat;
    size_t nlat, lat_cap;
    uint32_t lat_skip;
    char prefix[32];
    uint8_t scratch[65536];
} load;

static void fail_sys(const char *what)
{
    bench_fail(PROG, "%s: %s", what, strerror(errno));
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (p == NULL)
        abort();
    return p;
}

static void topic_of(const load *L, uint32_t index, char *out, size_t len)
{
    snprintf(out, len, "%s/%u", L->prefix, L->sc->pairs ? index : 0);
}

/* ------------------------------------------------------------ sockets */

/* Raises RLIMIT_NOFILE to hold `need` descriptors (root may raise the hard
 * limit too); fails the run with the reason if it cannot. */
static void raise_nofile(uint64_t need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        fail_sys("getrlimit");
    if (rl.rlim_cur >= need)
        return;
    rl.rlim_cur = need;
    if (rl.rlim_max < need)
        rl.rlim_max = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        bench_fail(PROG, "cannot raise RLIMIT_NOFILE to %llu (%s): this "
                   "machine cannot hold that many connections here",
                   (unsigned long long)need, strerror(errno));
}

static struct sockaddr_in loopback(int port, uint32_t host_byte)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};

    a.sin_addr.s_addr = htonl(0x7f000000u | host_byte);
    return a;
}

static void mark_dirty(load *L, lconn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        L->dirty[L->ndirty++] = (uint32_t)(c - L->c);
    }
}

static void mark_ready(load *L, lconn *c)
{
    if (!c->ready) {
        c->ready = true;
        L->ready[L->nready++] = (uint32_t)(c - L->c);
    }
}

/* Starts a non-blocking connect for slot `i`. Connections are spread over
 * several loopback source addresses, with the port chosen at connect time
 * (IP_BIND_ADDRESS_NO_PORT), so 100,000 of them do not run out of
 * ephemeral ports. */
static void open_conn(load *L, uint32_t i)
{
    lconn *c = &L->c[i];
    struct sockaddr_in src = loopback(0, 1 + i % SOURCE_ADDRS);
    struct sockaddr_in dst =
        loopback(c->role == R_SUB && L->sub_port ? L->sub_port : L->port, 1);
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u32 = i};
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fail_sys("socket");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
        fail_sys("bind to a loopback source address");
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 &&
        errno != EINPROGRESS)
        fail_sys("connect");
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        fail_sys("epoll_ctl");
    c->state = S_CONNECTING;
    L->opening++;
}

/* Opens connections in index order up to `upto`, at most
 * OPEN_CONCURRENCY between connect() and CONNACK, so the broker's listen
 * backlog never overflows into SYN retransmits. */
static void pace_opens(load *L, uint32_t upto)
{
    while (L->opening < OPEN_CONCURRENCY && L->next_open < upto)
        open_conn(L, L->next_open++);
}

static void close_conn(lconn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->state = S_FREE;
    wire_buf_free(&c->in);
    wire_buf_free(&c->out);
}

/* The broker closed a connection, or it failed. Expected only in the
 * storm (after DISCONNECT); idle runs count it; elsewhere it ends the run. */
static void conn_lost(load *L, lconn *c, const char *why)
{
    if (c->state == S_CONNECTING || c->state == S_CONNACK)
        L->opening--;
    if (c->role == R_STORM && c->state == S_LEAVING) {
        L->storm_done++;
        L->last_progress = L->now;
        close_conn(c);
        return;
    }
    if (c->role != R_IDLE)
        bench_fail(PROG, "%s %s: connection %u lost (%s)", L->sc->name,
                   L->system, (unsigned)(c - L->c), why);
    L->closed++;
    close_conn(c);
}

static void flush(load *L, lconn *c)
{
    while (c->fd >= 0 && wire_pending(&c->out) > 0) {
        ssize_t n = write(c->fd, c->out.data + c->out.off,
                          wire_pending(&c->out));

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return; /* the next EPOLLOUT edge resumes */
            conn_lost(L, c, strerror(errno));
            return;
        }
        c->out.off += (size_t)n;
    }
    /* Idle and storm connections keep no buffer between packets. */
    if (c->role >= R_IDLE && c->out.cap > 0 && wire_pending(&c->out) == 0)
        wire_buf_free(&c->out);
}

/* ------------------------------------------------------------ packets */

static track *track_of(load *L, lconn *sub, uint32_t pub)
{
    if (sub->from == NULL)
        sub->from = xcalloc(L->pubs, sizeof *sub->from);
    if (sub->from[pub] == NULL)
        sub->from[pub] = xcalloc(1, sizeof(track));
    return sub->from[pub];
}

/* Records sequence `seq` in `t`; returns 0 if new and in order, 1 if a
 * duplicate, 2 if new but later than a higher one (reordered). */
static int track_see(track *t, uint32_t seq)
{
    uint32_t w = seq / 64;
    uint64_t bit = 1ull << (seq % 64);

    if (w >= t->words) {
        uint32_t words = t->words ? t->words : 16;

        while (words <= w)
            words *= 2;
        t->bits = realloc(t->bits, words * sizeof *t->bits);
        if (t->bits == NULL)
            abort();
        memset(t->bits + t->words, 0, (words - t->words) * sizeof *t->bits);
        t->words = words;
    }
    if (t->bits[w] & bit)
        return 1;
    t->bits[w] |= bit;
    if (seq < t->next)
        return 2;
    t->next = seq + 1;
    return 0;
}

static void deliver(load *L, lconn *sub, const wire_packet *pk)
{
    stamp st;
    lconn *pub;

    if (pk->payload_len != PAYLOAD_LEN)
        bench_fail(PROG, "payload of %zu bytes, sent %d", pk->payload_len,
                   PAYLOAD_LEN);
    memcpy(&st, pk->payload, sizeof st);
    if (st.pub >= L->pubs)
        bench_fail(PROG, "payload from unknown publisher %u", st.pub);
    L->delivered++;
    L->t_last = L->last_progress = L->now;
    switch (track_see(track_of(L, sub, st.pub), st.seq)) {
    case 0:
        L->unique++;
        break;
    case 1:
        L->dups++;
        break;
    default:
        L->unique++;
        L->reordered++;
        break;
    }
    if (L->sc->kind == K_LATENCY && st.seq >= L->lat_skip &&
        L->nlat < L->lat_cap)
        L->lat[L->nlat++] = (int64_t)(bench_now_ns() - st.ts_ns);
    pub = &L->c[L->subs + st.pub];
    pub->delivered++;
    mark_ready(L, pub);
}

static void on_connack(load *L, lconn *c, const wire_packet *pk)
{
    char filter[64];

    if (pk->code != 0)
        bench_fail(PROG, "CONNACK return code %u", pk->code);
    if (c->state != S_CONNACK)
        bench_fail(PROG, "CONNACK out of turn");
    c->state = S_READY;
    L->opening--;
    L->connacks++;
    if (c->role == R_SUB) {
        topic_of(L, c->index, filter, sizeof filter);
        wire_subscribe(&c->out, 1, filter, L->sc->qos);
    } else if (c->role == R_STORM) {
        wire_empty(&c->out, WIRE_DISCONNECT);
        c->state = S_LEAVING;
    }
    mark_dirty(L, c);
}

/* The acknowledgement that ends a publisher's QoS 1 or 2 exchange. */
static void on_pub_done(load *L, lconn *c)
{
    if (c->role != R_PUB || c->unacked == 0)
        bench_fail(PROG, "unexpected acknowledgement");
    c->unacked--;
    L->unacked_total--;
    L->last_progress = L->now;
    mark_ready(L, c);
}

static void handle(load *L, lconn *c, const wire_packet *pk)
{
    switch (pk->type) {
    case WIRE_CONNACK:
        on_connack(L, c, pk);
        break;
    case WIRE_SUBACK:
        if (pk->code != L->sc->qos)
            bench_fail(PROG, "SUBACK granted 0x%02x, asked %u", pk->code,
                       L->sc->qos);
        L->subacks++;
        break;
    case WIRE_PUBLISH:
        if (c->role != R_SUB)
            bench_fail(PROG, "PUBLISH to a connection that did not "
                       "subscribe");
        deliver(L, c, pk);
        if ((pk->flags >> 1 & 3) == 1)
            wire_ack(&c->out, WIRE_PUBACK, pk->packet_id);
        else if ((pk->flags >> 1 & 3) == 2)
            wire_ack(&c->out, WIRE_PUBREC, pk->packet_id);
        mark_dirty(L, c);
        break;
    case WIRE_PUBREC:
        wire_ack(&c->out, WIRE_PUBREL, pk->packet_id);
        mark_dirty(L, c);
        break;
    case WIRE_PUBREL:
        wire_ack(&c->out, WIRE_PUBCOMP, pk->packet_id);
        mark_dirty(L, c);
        break;
    case WIRE_PUBACK:
    case WIRE_PUBCOMP:
        on_pub_done(L, c);
        break;
    case WIRE_PINGRESP:
        L->pingresps++;
        break;
    default:
        bench_fail(PROG, "unexpected packet type %u", pk->type);
    }
}

/* Decodes every whole packet in `p[0..len)`; returns the bytes used. */
static size_t handle_bytes(load *L, lconn *c, const uint8_t *p, size_t len)
{
    size_t used = 0;
    wire_packet pk;
    long n = 0;

    while (c->fd >= 0 && (n = wire_decode(p + used, len - used, &pk)) > 0) {
        handle(L, c, &pk);
        used += (size_t)n;
    }
    if (n < 0)
        bench_fail(PROG, "malformed packet from the broker");
    return used;
}

static void on_readable(load *L, lconn *c)
{
    while (c->fd >= 0) {
        ssize_t n = read(c->fd, L->scratch, sizeof L->scratch);

        if (n == 0) {
            conn_lost(L, c, "closed by the broker");
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_lost(L, c, strerror(errno));
            return;
        }
        if (wire_pending(&c->in) == 0) {
            size_t used = handle_bytes(L, c, L->scratch, (size_t)n);

            if (c->fd >= 0 && used < (size_t)n)
                wire_append(&c->in, L->scratch + used, (size_t)n - used);
        } else {
            wire_append(&c->in, L->scratch, (size_t)n);
            c->in.off += handle_bytes(L, c, c->in.data + c->in.off,
                                      wire_pending(&c->in));
        }
    }
}

static void on_writable(load *L, lconn *c)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        char id[64];

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            errno = err;
            fail_sys("connect to the broker");
        }
        snprintf(id, sizeof id, "hb-%ld-%llu", (long)getpid(),
                 (unsigned long long)L->serial++);
        wire_connect_session(&c->out, id, L->keepalive_s,
                             L->persistent && c->role == R_SUB);
        c->state = S_CONNACK;
    }
    flush(L, c);
}

/* ------------------------------------------------------------ the loop */

static void publish_one(load *L, lconn *c)
{
    uint8_t payload[PAYLOAD_LEN] = {0};
    stamp st = {.pub = c->index, .seq = (uint32_t)c->sent,
                .ts_ns = L->sc->kind == K_LATENCY
                             ? L->t0 + c->sent * L->period_ns
                             : L->now};
    char topic[64];
    uint16_t pid = 0;

    if (L->sc->qos > 0) {
        /* At most `window` (< 65535) exchanges are open, so an id
         * cycling through 1..65535 is never reused while in flight. */
        pid = c->next_pid = (uint16_t)(c->next_pid % 65535u + 1);
        c->unacked++;
        L->unacked_total++;
    }
    memcpy(payload, &st, sizeof st);
    topic_of(L, c->index, topic, sizeof topic);
    wire_publish(&c->out, topic, L->sc->qos, pid, payload, sizeof payload);
    c->sent++;
    L->sent_total++;
    mark_dirty(L, c);
}

/* Closed loop: a publisher may send while fewer than `window` of its
 * messages are undelivered (on average over its subscribers) and fewer
 * than `window` exchanges are unacknowledged. */
static bool can_publish(const load *L, const lconn *c)
{
    if (!L->publishing || (L->count && c->sent >= L->count))
        return false;
    if (c->sent - c->delivered / L->spp >= L->window)
        return false;
    return L->sc->qos == 0 || c->unacked < L->window;
}

static void pump(load *L)
{
    for (uint32_t i = 0; i < L->nready; i++) {
        lconn *c = &L->c[L->ready[i]];

        c->ready = false;
        if (L->sc->kind == K_THROUGHPUT && c->fd >= 0)
            while (can_publish(L, c))
                publish_one(L, c);
    }
    L->nready = 0;
}

/* The latency publisher: one message per timer tick missed or not. */
static void on_timer(load *L)
{
    uint64_t ticks = 0;
    lconn *c = &L->c[L->subs];

    if (read(L->timer_fd, &ticks, sizeof ticks) != sizeof ticks)
        return;
    while (ticks-- > 0 && L->publishing && c->sent < L->count)
        publish_one(L, c);
    if (c->sent >= L->count)
        L->publishing = false;
}

/* One turn: wait for events (at most `timeout_ms`), handle them, let the
 * publishers that gained room publish, and write out what was queued. */
static void step(load *L, int timeout_ms)
{
    struct epoll_event ev[512];
    int n = epoll_wait(L->ep, ev, 512, timeout_ms);

    if (n < 0 && errno != EINTR)
        fail_sys("epoll_wait");
    L->now = bench_now_ns();
    for (int i = 0; i < n; i++) {
        lconn *c;

        if (ev[i].data.u32 == TIMER_TAG) {
            on_timer(L);
            continue;
        }
        c = &L->c[ev[i].data.u32];
        if (c->fd < 0)
            continue;
        if (ev[i].events & (EPOLLOUT | EPOLLERR))
            on_writable(L, c);
        if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
            on_readable(L, c);
    }
    pump(L);
    for (uint32_t i = 0; i < L->ndirty; i++) {
        lconn *c = &L->c[L->dirty[i]];

        c->dirty = false;
        flush(L, c);
    }
    L->ndirty = 0;
}

/* Runs turns until `*counter` reaches `want`, or until it has not moved
 * for STALL_NS; returns whether it was reached. Connections up to
 * `open_upto` are opened on the way. */
static bool run_until(load *L, const uint64_t *counter, uint64_t want,
                      uint32_t open_upto)
{
    uint64_t seen = *counter, give_up = bench_now_ns() + STALL_NS;

    while (*counter < want) {
        pace_opens(L, open_upto);
        step(L, 10);
        if (*counter != seen) { /* progress: the stall clock restarts */
            seen = *counter;
            give_up = L->now + STALL_NS;
        } else if (L->now > give_up) {
            return false;
        }
    }
    return true;
}

#endif
