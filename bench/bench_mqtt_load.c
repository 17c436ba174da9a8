/* bench/bench_mqtt_load.c: the MQTT load generator, one scenario per run,
 * against any MQTT 3.1.1 broker on a loopback port.
 *
 * One thread, one epoll set (edge-triggered), thousands of non-blocking
 * connections, and the MQTT client side written by hand in
 * bench/bench_mqtt_wire.h, so that the generator shares no code with the
 * broker it judges. Scenarios (see docs/benchmarks-mqtt.md):
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
 *            [--window N] [--conns N] [--smoke]
 *        bench_mqtt_load --free-port | --wait-port P
 * Output: TSV rows `scenario system value unit better` on stdout, plus one
 * line starting with "# " that gives the delivery counts. With --smoke,
 * sizes are tiny, nothing is timed, and any loss, duplicate, reordering or
 * missing acknowledgement exits 1. */
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
    long broker_pid;
    bool smoke;
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
    struct sockaddr_in dst = loopback(L->port, 1);
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

static void close_conn(load *L, lconn *c)
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
        close_conn(L, c);
        return;
    }
    if (c->role != R_IDLE)
        bench_fail(PROG, "%s %s: connection %u lost (%s)", L->sc->name,
                   L->system, (unsigned)(c - L->c), why);
    L->closed++;
    close_conn(L, c);
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
        wire_connect(&c->out, id, 0);
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
    char name[96];

    snprintf(name, sizeof name, "%s%s%s", L->sc->name, suffix, L->tag);
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

/* --free-port: prints a loopback port that was free a moment ago. */
static int free_port(void)
{
    struct sockaddr_in a = loopback(0, 1);
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fail_sys("free port");
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
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
            "          [--conns N] [--smoke]\n"
            "       %s --free-port | --wait-port P\n"
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
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--port") == 0)
            L->port = atoi(v);
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
        else
            usage();
    }
    if (L->sc == NULL || L->port <= 0 || L->port > 65535)
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
        return free_port();
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
