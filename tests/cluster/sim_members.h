/* tests/cluster/sim_members.h: a deterministic in-memory cluster for the
 * membership and presence tests.
 *
 * N membership tables, a fake clock and a network model that behaves like
 * the TCP links the real driver uses: each directed link delivers in order
 * (head-of-line blocking included), a lost segment is not lost but
 * retransmitted after an RTO that doubles, a crashed process's peers see
 * the link close at once and its address refuses dials, and a "cut" (a
 * blackhole) swallows everything while the links stay up, as an
 * established TCP connection does across a pulled cable. Every message goes
 * through the real wire codec (encode, then decode on delivery). The
 * pseudo-random generator is seeded, so each run is the same.
 *
 * With presence on (sim_init_presence), each node also runs a presence
 * registry, glued to its membership table exactly as the driver will glue
 * them: links up and down go to both, presence messages to presence (and
 * count as heard), and member events UP / DEAD / LEFT / REPLACED become
 * hm_presence_on_node_up / hm_presence_on_node_gone. */
#ifndef HM_TESTS_SIM_MEMBERS_H
#define HM_TESTS_SIM_MEMBERS_H

#include "cluster/members.h"
#include "cluster/presence.h"
#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_MAX 8
#define SIM_MAX_EVENTS 8192

typedef enum { FL_MSG, FL_LINK_UP, FL_LINK_DOWN, FL_DIAL_FAIL } flight_kind;

typedef struct {
    flight_kind kind;
    uint64_t at, seq;
    int from, to;
    bool refused;
    char *line; /* FL_MSG: owned */
} flight;

typedef struct {
    uint64_t at;
    int observer;
    hm_member_event ev;
    char subject[HM_NODE_NAME_MAX + 1];
    uint64_t inc;
} sim_event;

typedef struct {
    int n;
    hm_members_config cfg; /* timers shared by every node */
    hm_members *node[SIM_MAX];
    hm_presence *pres[SIM_MAX]; /* NULL unless presence is on */
    bool with_presence;
    char name[SIM_MAX][16], addr[SIM_MAX][32];
    uint64_t inc[SIM_MAX];
    bool crashed[SIM_MAX];
    bool paused[SIM_MAX];          /* SIGSTOP: no ticks, input waits */
    bool linked[SIM_MAX][SIM_MAX]; /* i's driver has a link to j */
    bool cut[SIM_MAX][SIM_MAX];    /* i -> j traffic vanishes */
    uint64_t link_free_at[SIM_MAX][SIM_MAX];
    flight *q;
    size_t qn, qcap;
    uint64_t now, seq, rng;
    double loss;       /* per transmission of a segment */
    double drop;       /* a message vanishes outright (not TCP-like) */
    uint32_t delay_ms; /* one way */
    sim_event ev[SIM_MAX_EVENTS];
    size_t evn;
} sim;

static inline uint64_t sim_rand(sim *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static inline double sim_unit(sim *s)
{
    return (double)(sim_rand(s) >> 11) / (double)(1ull << 53);
}

static inline void sim_push(sim *s, flight f)
{
    if (s->qn == s->qcap) {
        s->qcap = s->qcap ? 2 * s->qcap : 64;
        s->q = hm_realloc(s->q, s->qcap * sizeof *s->q);
    }
    f.seq = s->seq++;
    s->q[s->qn++] = f;
}

static inline int sim_by_addr(sim *s, const char *addr)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->addr[i], addr) == 0)
            return i;
    return -1;
}

static inline int sim_by_name(sim *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return i;
    return -1;
}

/* Start node i with incarnation `inc`, seeded with node 0 (unless it is
 * node 0). */
static inline void sim_start(sim *s, int i, uint64_t inc)
{
    hm_members_config c = s->cfg;
    c.self_name = s->name[i];
    c.self_addr = s->addr[i];
    c.self_inc = inc;
    s->inc[i] = inc;
    s->crashed[i] = false;
    cr_assert_eq(hm_members_create(&c, &s->node[i]), HM_OK);
    if (s->with_presence)
        cr_assert_eq(
            hm_presence_create(
                &(hm_presence_config){.self_name = s->name[i], .self_inc = inc},
                &s->pres[i]),
            HM_OK);
    if (i != 0)
        cr_assert_eq(hm_members_add_seed(s->node[i], s->addr[0]), HM_OK);
}

static inline void sim_setup(sim *s, int n, const hm_members_config *timers,
                             bool presence)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->with_presence = presence;
    s->rng = 0x9e3779b97f4a7c15ull;
    s->delay_ms = 1;
    if (timers)
        s->cfg = *timers;
    for (int i = 0; i < n; i++) {
        snprintf(s->name[i], sizeof s->name[i], "n%d", i);
        snprintf(s->addr[i], sizeof s->addr[i], "10.0.0.%d:7000", i + 1);
        sim_start(s, i, 1000 + (uint64_t)i);
    }
}

static inline void sim_init(sim *s, int n, const hm_members_config *timers)
{
    sim_setup(s, n, timers, false);
}

static inline void sim_init_presence(sim *s, int n,
                                     const hm_members_config *timers)
{
    sim_setup(s, n, timers, true);
}

static inline void sim_fini(sim *s)
{
    for (int i = 0; i < s->n; i++) {
        hm_members_destroy(s->node[i]);
        hm_presence_destroy(s->pres[i]);
    }
    for (size_t i = 0; i < s->qn; i++)
        hm_free(s->q[i].line);
    hm_free(s->q);
}

/* i sends `msg` to j over their link, as TCP would carry it. */
static inline void sim_send(sim *s, int i, int j, const hm_wire_msg *msg)
{
    char *line;
    if (!s->linked[i][j] || s->cut[i][j])
        return; /* no link, or a blackhole */
    cr_assert_eq(hm_wire_encode_line(msg, &line), HM_OK);
    if (s->drop > 0 && sim_unit(s) < s->drop) {
        hm_free(line);
        return;
    }
    uint64_t at = s->now + s->delay_ms;
    uint64_t rto = 200 + 2 * s->delay_ms;
    while (s->loss > 0 && sim_unit(s) < s->loss) {
        at += rto; /* lost, then retransmitted */
        rto *= 2;
    }
    if (at < s->link_free_at[i][j])
        at = s->link_free_at[i][j]; /* in order: waits behind the lost one */
    s->link_free_at[i][j] = at;
    sim_push(
        s,
        (flight){.kind = FL_MSG, .at = at, .from = i, .to = j, .line = line});
}

static inline void sim_dial(sim *s, int i, const char *addr)
{
    int j = sim_by_addr(s, addr);
    if (j < 0 || j == i || s->linked[i][j])
        return; /* the driver ignores a dial to a linked peer */
    if (s->crashed[j])
        sim_push(s, (flight){.kind = FL_DIAL_FAIL,
                             .at = s->now + 1,
                             .from = j,
                             .to = i,
                             .refused = true});
    else if (s->cut[i][j] || s->cut[j][i])
        sim_push(s, (flight){.kind = FL_DIAL_FAIL,
                             .at = s->now + 3000,
                             .from = j,
                             .to = i});
    else /* hello, challenge, proof */
        sim_push(s, (flight){.kind = FL_LINK_UP,
                             .at = s->now + 3 * s->delay_ms,
                             .from = i,
                             .to = j});
}

static inline void sim_close(sim *s, int i, int j)
{
    if (!s->linked[i][j])
        return;
    s->linked[i][j] = false;
    if (s->pres[i])
        hm_presence_on_link_down(s->pres[i], s->name[j]);
    sim_push(s, (flight){.kind = FL_LINK_DOWN,
                         .at = s->now + s->delay_ms,
                         .from = i,
                         .to = j});
}

/* The driver's glue: a member event tells presence what to drop. */
static inline void sim_glue_event(sim *s, int i, const hm_member_action *a)
{
    if (!s->pres[i])
        return;
    if (a->event == HM_MEMBER_EV_UP)
        hm_presence_on_node_up(s->pres[i], a->peer, a->inc);
    else if (a->event == HM_MEMBER_EV_DEAD || a->event == HM_MEMBER_EV_LEFT ||
             a->event == HM_MEMBER_EV_REPLACED)
        hm_presence_on_node_gone(s->pres[i], a->peer, a->inc);
}

static inline void sim_drain_presence(sim *s, int i)
{
    hm_presence_action a;
    if (!s->pres[i])
        return;
    while (hm_presence_next_action(s->pres[i], &a)) {
        sim_send(s, i, sim_by_name(s, a.peer), &a.msg);
        hm_wire_msg_fini(&a.msg);
    }
}

static inline void sim_drain(sim *s, int i)
{
    hm_member_action a;
    while (hm_members_next_action(s->node[i], &a)) {
        int j = sim_by_name(s, a.peer);
        switch (a.kind) {
        case HM_MACT_SEND:
            sim_send(s, i, j, &a.msg);
            break;
        case HM_MACT_DIAL:
            sim_dial(s, i, a.addr);
            break;
        case HM_MACT_CLOSE:
            sim_close(s, i, j);
            break;
        case HM_MACT_EVENT:
            cr_assert(s->evn < SIM_MAX_EVENTS);
            s->ev[s->evn++] = (sim_event){
                .at = s->now, .observer = i, .ev = a.event, .inc = a.inc};
            strcpy(s->ev[s->evn - 1].subject, a.peer);
            sim_glue_event(s, i, &a);
            break;
        }
        hm_wire_msg_fini(&a.msg);
    }
    sim_drain_presence(s, i);
}

static inline void sim_link_up(sim *s, int i, int j)
{
    if (s->crashed[i] || s->crashed[j] || s->linked[i][j] || s->linked[j][i])
        return;
    s->linked[i][j] = s->linked[j][i] = true;
    hm_err ei = hm_members_on_link_up(s->node[i], s->name[j], s->addr[j],
                                      s->inc[j], s->now);
    hm_err ej = hm_members_on_link_up(s->node[j], s->name[i], s->addr[i],
                                      s->inc[i], s->now);
    if (ei != HM_OK || ej != HM_OK) {
        sim_close(s, i, j);
        sim_close(s, j, i);
    } else if (s->with_presence) {
        hm_presence_on_link_up(s->pres[i], s->name[j], s->now);
        hm_presence_on_link_up(s->pres[j], s->name[i], s->now);
    }
    sim_drain(s, i);
    sim_drain(s, j);
}

static inline void sim_deliver(sim *s, flight *f)
{
    int i = f->from, j = f->to;
    hm_wire_msg msg;
    switch (f->kind) {
    case FL_MSG:
        if (s->crashed[j] || !s->linked[j][i])
            break;
        cr_assert_eq(hm_wire_decode_line(f->line, strlen(f->line), &msg),
                     HM_OK);
        if (getenv("SIM_TRACE"))
            cr_log_info("%llu %d->%d %s", (unsigned long long)s->now, i, j,
                        f->line);
        if (msg.type == HM_WIRE_PRES_DELTA ||
            msg.type == HM_WIRE_PRES_SNAPSHOT ||
            msg.type == HM_WIRE_PRES_REQUEST ||
            msg.type == HM_WIRE_PRES_DIGEST) { /* presence's; proves alive */
            hm_members_on_heard(s->node[j], s->name[i], s->now);
            cr_assert_eq(
                hm_presence_on_message(s->pres[j], s->name[i], &msg, s->now),
                HM_OK);
        } else {
            cr_assert_eq(
                hm_members_on_message(s->node[j], s->name[i], &msg, s->now),
                HM_OK);
        }
        hm_wire_msg_fini(&msg);
        break;
    case FL_LINK_UP:
        sim_link_up(s, i, j);
        break;
    case FL_LINK_DOWN:
        if (!s->crashed[j] && s->linked[j][i]) {
            s->linked[j][i] = false;
            if (s->pres[j])
                hm_presence_on_link_down(s->pres[j], s->name[i]);
            hm_members_on_link_down(s->node[j], s->name[i], s->now);
        }
        break;
    case FL_DIAL_FAIL:
        if (!s->crashed[j])
            hm_members_on_dial_failed(s->node[j], s->name[i], f->refused,
                                      s->now);
        break;
    }
    if (!s->crashed[j])
        sim_drain(s, j);
}

/* Deliver everything due, oldest first, then tick every live node. */
static inline void sim_step(sim *s)
{
    for (;;) {
        size_t best = s->qn;
        for (size_t k = 0; k < s->qn; k++)
            if (s->q[k].at <= s->now && !s->paused[s->q[k].to] &&
                (best == s->qn || s->q[k].at < s->q[best].at ||
                 (s->q[k].at == s->q[best].at && s->q[k].seq < s->q[best].seq)))
                best = k;
        if (best == s->qn)
            break;
        flight f = s->q[best];
        s->q[best] = s->q[--s->qn];
        sim_deliver(s, &f);
        hm_free(f.line);
    }
    for (int i = 0; i < s->n; i++) {
        if (s->crashed[i] || s->paused[i])
            continue;
        hm_members_tick(s->node[i], s->now);
        if (s->pres[i])
            hm_presence_tick(s->pres[i], s->now);
        sim_drain(s, i);
    }
}

/* Run until `until_ms`, in steps of `step_ms`. */
static inline void sim_run(sim *s, uint64_t until_ms, uint32_t step_ms)
{
    while (s->now < until_ms) {
        s->now += step_ms;
        sim_step(s);
    }
}

/* kill -9: the kernel closes its sockets, its peers see EOF at once. */
static inline void sim_crash(sim *s, int k)
{
    s->crashed[k] = true;
    hm_members_destroy(s->node[k]);
    hm_presence_destroy(s->pres[k]);
    s->node[k] = NULL;
    s->pres[k] = NULL;
    for (int j = 0; j < s->n; j++) {
        if (!s->linked[k][j])
            continue;
        s->linked[k][j] = false;
        sim_push(
            s, (flight){
                   .kind = FL_LINK_DOWN, .at = s->now + 1, .from = k, .to = j});
    }
}

/* Cut every link between the sets a and b, both ways, silently. */
static inline void sim_cut(sim *s, const int *a, int na, const int *b, int nb,
                           bool on)
{
    for (int x = 0; x < na; x++)
        for (int y = 0; y < nb; y++)
            s->cut[a[x]][b[y]] = s->cut[b[y]][a[x]] = on;
}

/* When `observer` first saw `ev` for `subject` at or after `since`;
 * UINT64_MAX if never. observer -1: any observer. */
static inline uint64_t sim_first(const sim *s, int observer, hm_member_event ev,
                                 int subject, uint64_t since)
{
    for (size_t k = 0; k < s->evn; k++)
        if ((observer < 0 || s->ev[k].observer == observer) &&
            s->ev[k].ev == ev && s->ev[k].at >= since &&
            strcmp(s->ev[k].subject, s->name[subject]) == 0)
            return s->ev[k].at;
    return UINT64_MAX;
}

static inline size_t sim_count(const sim *s, hm_member_event ev)
{
    size_t c = 0;
    for (size_t k = 0; k < s->evn; k++)
        c += s->ev[k].ev == ev;
    return c;
}

static inline hm_member_state sim_state(sim *s, int observer, int subject)
{
    hm_member_info info;
    cr_assert_eq(hm_members_get(s->node[observer], s->name[subject], &info),
                 HM_OK, "%s does not know %s", s->name[observer],
                 s->name[subject]);
    return info.state;
}

/* Whether every live node sees every other live node alive. */
static inline bool sim_all_alive(sim *s)
{
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < s->n; j++) {
            hm_member_info info;
            if (i == j || s->crashed[i] || s->crashed[j])
                continue;
            if (hm_members_get(s->node[i], s->name[j], &info) != HM_OK ||
                info.state != HM_MEMBER_ALIVE)
                return false;
        }
    return true;
}

#endif
