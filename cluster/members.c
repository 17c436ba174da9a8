/* cluster/members.c: the membership table and failure detector.
 *
 * The table is a plain array of members searched linearly: a full mesh
 * is meant for tens of nodes (docs/cluster.md), where a scan of a few
 * cache lines beats any index. Actions go to a FIFO that the driver drains
 * after each input, so the order of the actions is the order of the causes.
 *
 * Key decision: suspicion is cheap and local, death is confirmed. Entering
 * SUSPECT only tells the rest of the node to buffer; DEAD drops state
 * cluster-wide, so it needs either a peer's confirmation ("none of the k
 * peers I asked hears it"), a refused dial (its listener is gone) or, with
 * nobody to ask, a long silence, and never while this node is itself the
 * one cut off (the minority guard, is_isolated()). */
#include "cluster/members.h"
#include "cluster/members_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <string.h>

/* ------------------------------------------------------------ helpers */

/* Milliseconds from `then` to `now`; 0 if the driver's clock stepped back
 * (it should be monotonic; a negative span must not read as 584 million
 * years of silence). */
static uint64_t since(uint64_t now_ms, uint64_t then_ms)
{
    return now_ms > then_ms ? now_ms - then_ms : 0;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v ? v : def;
}

static hm_member_action *push_action(hm_members *m, hm_member_action_kind k,
                                     const char *peer)
{
    if (m->len == m->act_cap) {
        size_t cap = m->act_cap ? 2 * m->act_cap : 16;
        hm_member_action *a = hm_calloc(cap, sizeof *a);
        for (size_t i = 0; i < m->len; i++)
            a[i] = m->actions[(m->head + i) % m->act_cap];
        hm_free(m->actions);
        m->actions = a;
        m->act_cap = cap;
        m->head = 0;
    }
    hm_member_action *a = &m->actions[(m->head + m->len++) % m->act_cap];
    memset(a, 0, sizeof *a);
    a->kind = k;
    strcpy(a->peer, peer);
    return a;
}

static void emit_event(hm_members *m, member *x, hm_member_event ev,
                       uint64_t inc)
{
    hm_member_action *a = push_action(m, HM_MACT_EVENT, x->name);
    a->event = ev;
    a->inc = inc;
    strcpy(a->addr, x->addr);
    HM_LOG_INFO("CL-MEMBER", "%s: member %s (inc %llu, %s) is %s", m->self_name,
                x->name, (unsigned long long)inc, x->addr,
                hm_member_event_name(ev));
}

static hm_wire_msg *send_msg(hm_members *m, member *x, hm_wire_type t,
                             uint64_t now_ms)
{
    hm_member_action *a = push_action(m, HM_MACT_SEND, x->name);
    a->msg.type = t;
    x->last_sent_ms = now_ms;
    return &a->msg;
}

static void send_heartbeat(hm_members *m, member *x, bool reply,
                           uint64_t now_ms)
{
    send_msg(m, x, HM_WIRE_HEARTBEAT, now_ms)->u.heartbeat.reply = reply;
}

member *hm_members_find_member(const hm_members *m, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < m->count; i++)
        if (strcmp(m->members[i]->name, name) == 0)
            return m->members[i];
    return NULL;
}

static member *add_member(hm_members *m, const char *name, const char *addr,
                          uint64_t inc, uint64_t now_ms)
{
    if (m->count == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 8;
        m->members = hm_realloc(m->members, m->cap * sizeof *m->members);
    }
    member *x = hm_calloc(1, sizeof *x);
    strcpy(x->name, name);
    strcpy(x->addr, addr);
    x->inc = inc;
    x->state = HM_MEMBER_JOINING;
    x->state_since_ms = now_ms;
    x->last_heard_ms = now_ms;
    x->next_dial_ms = now_ms;
    x->backoff_ms = m->cfg.dial_backoff_min_ms;
    m->members[m->count++] = x;
    return x;
}

static void remove_member(hm_members *m, size_t i)
{
    hm_free(m->members[i]);
    m->members[i] = m->members[--m->count];
}

bool hm_members_is_live_member(const member *x)
{
    return x->state == HM_MEMBER_ALIVE || x->state == HM_MEMBER_SUSPECT;
}

/* Linked and heard within the suspicion window. */
static bool is_reachable(const hm_members *m, const member *x, uint64_t now_ms)
{
    return x->linked &&
           since(now_ms, x->last_heard_ms) < m->cfg.suspect_after_ms;
}

/* The minority guard. Among our live peers other than `target` (NULL: all
 * of them), do we hear fewer than half? Then the silence we see is more
 * likely ours than theirs, and we must not evict anybody. With no other
 * peer at all (two nodes) there is nothing to compare with: not isolated.
 * An even split therefore lets both halves evict each other, which keeps
 * both available (docs/cluster.md, "Partitions"). */
static bool is_isolated(const hm_members *m, const member *target,
                        uint64_t now_ms)
{
    size_t peers = 0, reachable = 0;
    for (size_t i = 0; i < m->count; i++) {
        const member *x = m->members[i];
        if (x == target || !hm_members_is_live_member(x))
            continue;
        peers++;
        reachable += is_reachable(m, x, now_ms);
    }
    return 2 * reachable < peers;
}

bool hm_members_is_isolated(const hm_members *m, uint64_t now_ms)
{
    return is_isolated(m, NULL, now_ms);
}

/* ---------------------------------------------------------- lifecycle */

static void apply_defaults(hm_members_config *c)
{
    c->heartbeat_interval_ms = or_default(c->heartbeat_interval_ms, 250);
    c->suspect_after_ms = or_default(c->suspect_after_ms, 1500);
    c->probe_timeout_ms = or_default(c->probe_timeout_ms, 1000);
    c->round_timeout_ms = or_default(c->round_timeout_ms, 1250);
    c->probe_interval_ms = or_default(c->probe_interval_ms, 500);
    c->dead_after_ms = or_default(c->dead_after_ms, 2500);
    c->probe_fanout = or_default(c->probe_fanout, 3);
    c->dial_backoff_min_ms = or_default(c->dial_backoff_min_ms, 100);
    c->dial_backoff_max_ms = or_default(c->dial_backoff_max_ms, 5000);
    c->reap_after_ms = or_default(c->reap_after_ms, 3600000);
}

hm_err hm_members_create(const hm_members_config *cfg, hm_members **out)
{
    if (!cfg->self_name || !hm_wire_name_is_valid(cfg->self_name) ||
        !cfg->self_addr || strlen(cfg->self_addr) == 0 ||
        strlen(cfg->self_addr) > HM_NODE_ADDR_MAX || cfg->self_inc == 0 ||
        cfg->self_inc > HM_WIRE_INT_MAX)
        return HM_EINVAL;
    hm_members *m = hm_calloc(1, sizeof *m);
    m->cfg = *cfg;
    apply_defaults(&m->cfg);
    strcpy(m->self_name, cfg->self_name);
    strcpy(m->self_addr, cfg->self_addr);
    m->cfg.self_name = m->self_name;
    m->cfg.self_addr = m->self_addr;
    m->seed_backoff_ms = m->cfg.dial_backoff_min_ms;
    m->next_round_id = 1;
    *out = m;
    return HM_OK;
}

void hm_members_destroy(hm_members *m)
{
    if (!m)
        return;
    hm_member_action a;
    while (hm_members_next_action(m, &a))
        hm_wire_msg_fini(&a.msg);
    for (size_t i = 0; i < m->count; i++)
        hm_free(m->members[i]);
    hm_free(m->members);
    hm_free(m->relays);
    hm_free(m->seeds);
    hm_free(m->actions);
    hm_free(m);
}

hm_err hm_members_add_seed(hm_members *m, const char *addr)
{
    if (!addr || strlen(addr) == 0 || strlen(addr) > HM_NODE_ADDR_MAX)
        return HM_EINVAL;
    m->seeds = hm_realloc(m->seeds, (m->seed_count + 1) * sizeof *m->seeds);
    strcpy(m->seeds[m->seed_count++], addr);
    return HM_OK;
}

bool hm_members_next_action(hm_members *m, hm_member_action *out)
{
    if (m->len == 0)
        return false;
    *out = m->actions[m->head];
    m->head = (m->head + 1) % m->act_cap;
    m->len--;
    return true;
}

/* ----------------------------------------------------- state changes */

/* Answers every relay for `target` (all of them if `target` is NULL and
 * their deadline passed) with `heard`, and forgets them. */
static void answer_relays(hm_members *m, const char *target, bool heard,
                          uint64_t now_ms)
{
    size_t i = 0;
    while (i < m->relay_count) {
        relay *r = &m->relays[i];
        bool due =
            target ? strcmp(r->target, target) == 0 : now_ms >= r->deadline_ms;
        member *req = hm_members_find_member(m, r->requester);
        if (!due) {
            i++;
            continue;
        }
        if (req && req->linked) {
            hm_wire_msg *w = send_msg(m, req, HM_WIRE_PROBE_ACK, now_ms);
            w->u.probe_ack.id = r->id;
            strcpy(w->u.probe_ack.target, r->target);
            w->u.probe_ack.heard = heard;
        }
        m->relays[i] = m->relays[--m->relay_count];
    }
}

static void set_state(member *x, hm_member_state s, uint64_t now_ms)
{
    x->state = s;
    x->state_since_ms = now_ms;
    x->round_open = false;
}

/* The end of (name, inc) as a member: dead, left or replaced. */
static void end_member(hm_members *m, member *x, hm_member_state s,
                       hm_member_event ev, uint64_t now_ms)
{
    set_state(x, s, now_ms);
    emit_event(m, x, ev, x->inc);
    answer_relays(m, x->name, false, now_ms);
    if (x->linked) {
        /* Silent but connected (a blackhole): drop the link, so a return
         * goes through a fresh handshake. */
        push_action(m, HM_MACT_CLOSE, x->name);
        x->linked = false;
    }
    /* Keep dialling a dead member, slowly, so that it can come back after
     * a false suspicion or a long partition; never a member that left. */
    x->backoff_ms = m->cfg.dial_backoff_max_ms;
    x->next_dial_ms = now_ms + x->backoff_ms;
}

static void declare_dead(hm_members *m, member *x, const char *why,
                         uint64_t now_ms)
{
    HM_LOG_WARN("CL-MEMBER-DEAD", "%s: declaring %s (inc %llu) dead: %s",
                m->self_name, x->name, (unsigned long long)x->inc, why);
    end_member(m, x, HM_MEMBER_DEAD, HM_MEMBER_EV_DEAD, now_ms);
}

/* A peer we could ask about `x` now: alive and reachable. */
static bool can_ask(const hm_members *m, const member *x, uint64_t now_ms)
{
    for (size_t i = 0; i < m->count; i++) {
        const member *p = m->members[i];
        if (p != x && p->state == HM_MEMBER_ALIVE && is_reachable(m, p, now_ms))
            return true;
    }
    return false;
}

/* Ask up to probe_fanout reachable alive peers whether they hear `x`. The
 * starting peer rotates with the round id, so rounds spread the load. */
static void start_round(hm_members *m, member *x, uint64_t now_ms)
{
    size_t asked = 0;
    uint64_t id = m->next_round_id++;
    for (size_t j = 0; j < m->count && asked < m->cfg.probe_fanout; j++) {
        member *p = m->members[(j + id) % m->count];
        if (p == x || p->state != HM_MEMBER_ALIVE ||
            !is_reachable(m, p, now_ms))
            continue;
        hm_wire_msg *w = send_msg(m, p, HM_WIRE_PROBE_REQ, now_ms);
        w->u.probe_req.id = id;
        strcpy(w->u.probe_req.target, x->name);
        asked++;
    }
    x->round_id = id;
    x->asked = (uint32_t)asked;
    x->answered = 0;
    x->heard = false;
    x->round_open = asked > 0;
    x->round_deadline_ms = now_ms + m->cfg.round_timeout_ms;
    if (asked == 0) {
        /* Nobody to ask: our own silence timer decides (see tick). */
        uint64_t dead_at = x->last_heard_ms + m->cfg.dead_after_ms;
        x->next_round_ms = now_ms + m->cfg.probe_interval_ms;
        if (dead_at > now_ms && dead_at < x->next_round_ms)
            x->next_round_ms = dead_at;
    }
}

static void suspect(hm_members *m, member *x, uint64_t now_ms)
{
    set_state(x, HM_MEMBER_SUSPECT, now_ms);
    emit_event(m, x, HM_MEMBER_EV_SUSPECT, x->inc);
    start_round(m, x, now_ms);
}

/* The guard refused a death: log once per spell of isolation. */
static void note_isolated(hm_members *m, const member *x)
{
    if (m->isolated_logged)
        return;
    m->isolated_logged = true;
    HM_LOG_WARN("CL-ISOLATED",
                "%s: hears fewer than half of its peers; not declaring %s "
                "(or anyone) dead while cut off",
                m->self_name, x->name);
}

static void close_round(hm_members *m, member *x, uint64_t now_ms)
{
    x->round_open = false;
    x->next_round_ms = now_ms + m->cfg.probe_interval_ms;
    if (x->heard || x->answered == 0)
        return; /* alive through another peer, or nobody answered */
    if (is_isolated(m, x, now_ms)) {
        note_isolated(m, x);
        return;
    }
    declare_dead(m, x, "no peer hears it", now_ms);
}

/* ------------------------------------------------------------- inputs */

static void reset_link(hm_members *m, member *x, const char *addr,
                       uint64_t now_ms)
{
    strcpy(x->addr, addr);
    x->linked = true;
    x->last_heard_ms = now_ms;
    x->backoff_ms = m->cfg.dial_backoff_min_ms;
    x->round_open = false;
}

/* The members we know and can vouch for, ourselves first: sent to a peer
 * whose link just came up, so it can dial the ones it lacks. */
static void send_gossip(hm_members *m, member *to, uint64_t now_ms)
{
    hm_wire_msg *w = send_msg(m, to, HM_WIRE_MEMBERS, now_ms);
    hm_wire_node *nodes = hm_calloc(m->count + 1, sizeof *nodes);
    size_t n = 0;
    strcpy(nodes[n].name, m->self_name);
    strcpy(nodes[n].addr, m->self_addr);
    nodes[n++].inc = m->cfg.self_inc;
    for (size_t i = 0; i < m->count; i++) {
        member *x = m->members[i];
        if (x == to || !hm_members_is_live_member(x))
            continue;
        strcpy(nodes[n].name, x->name);
        strcpy(nodes[n].addr, x->addr);
        nodes[n++].inc = x->inc;
    }
    w->u.members.nodes = nodes;
    w->u.members.count = n;
}

hm_err hm_members_on_link_up(hm_members *m, const char *name, const char *addr,
                             uint64_t inc, uint64_t now_ms)
{
    if (strcmp(name, m->self_name) == 0) {
        HM_LOG_WARN("CL-LINK-SELF",
                    "%s: link to a node with our own name "
                    "at %s; closing it",
                    m->self_name, addr);
        return HM_EINVAL;
    }
    member *x = hm_members_find_member(m, name);
    if (!x)
        x = add_member(m, name, addr, inc, now_ms);
    if (inc < x->inc && x->state != HM_MEMBER_JOINING) {
        HM_LOG_WARN("CL-LINK-STALE", "%s: %s has inc %llu, older than %llu",
                    m->self_name, name, (unsigned long long)inc,
                    (unsigned long long)x->inc);
        return HM_EPROTO;
    }
    if (inc > x->inc && hm_members_is_live_member(x)) {
        /* It restarted: the old incarnation is gone for good. */
        answer_relays(m, x->name, false, now_ms);
        emit_event(m, x, HM_MEMBER_EV_REPLACED, x->inc);
        set_state(x, HM_MEMBER_JOINING, now_ms);
    }
    x->inc = inc;
    reset_link(m, x, addr, now_ms);
    if (x->state == HM_MEMBER_SUSPECT) {
        set_state(x, HM_MEMBER_ALIVE, now_ms);
        emit_event(m, x, HM_MEMBER_EV_ALIVE, inc);
    } else if (x->state != HM_MEMBER_ALIVE) {
        /* New, or back from the dead or from a leave: a fresh member
         * either way, since all that was tied to it was dropped. */
        set_state(x, HM_MEMBER_ALIVE, now_ms);
        emit_event(m, x, HM_MEMBER_EV_UP, inc);
    }
    send_gossip(m, x, now_ms);
    return HM_OK;
}

void hm_members_on_link_down(hm_members *m, const char *name, uint64_t now_ms)
{
    member *x = hm_members_find_member(m, name);
    if (!x || !x->linked)
        return;
    x->linked = false;
    /* Relays through the lost link learn that we do not hear it. */
    answer_relays(m, x->name, false, now_ms);
    if (x->state == HM_MEMBER_LEFT || m->leaving)
        return;
    /* Redial at once: a reset link often comes straight back, and a
     * crashed process answers with a refusal that confirms its death. */
    x->next_dial_ms = now_ms;
    x->backoff_ms = m->cfg.dial_backoff_min_ms;
    if (x->state == HM_MEMBER_ALIVE)
        suspect(m, x, now_ms);
}

void hm_members_on_dial_failed(hm_members *m, const char *name, bool refused,
                               uint64_t now_ms)
{
    member *x = hm_members_find_member(m, name);
    if (!x || x->linked || !refused || !hm_members_is_live_member(x))
        return;
    /* ECONNREFUSED means the host is reachable and nothing listens on the
     * member's port: the process that was this incarnation is gone. This is
     * direct evidence, not a silence, so the minority guard does not apply:
     * a node cut off from the network gets timeouts, not refusals. */
    declare_dead(m, x, "its address refuses connections", now_ms);
}

void hm_members_on_heard(hm_members *m, const char *name, uint64_t now_ms)
{
    member *x = hm_members_find_member(m, name);
    if (!x || !x->linked)
        return;
    x->last_heard_ms = now_ms;
    answer_relays(m, x->name, true, now_ms);
    if (x->state == HM_MEMBER_SUSPECT) {
        set_state(x, HM_MEMBER_ALIVE, now_ms);
        emit_event(m, x, HM_MEMBER_EV_ALIVE, x->inc);
    }
}

void hm_members_on_sent(hm_members *m, const char *name, uint64_t now_ms)
{
    member *x = hm_members_find_member(m, name);
    if (x)
        x->last_sent_ms = now_ms;
}

/* A peer asks whether we hear `target`. */
static void on_probe_req(hm_members *m, member *from, const hm_wire_msg *w,
                         uint64_t now_ms)
{
    member *t = hm_members_find_member(m, w->u.probe_req.target);
    if (!t || !t->linked || !hm_members_is_live_member(t)) {
        hm_wire_msg *a = send_msg(m, from, HM_WIRE_PROBE_ACK, now_ms);
        a->u.probe_ack.id = w->u.probe_req.id;
        strcpy(a->u.probe_ack.target, w->u.probe_req.target);
        a->u.probe_ack.heard = false;
        return;
    }
    if (m->relay_count == m->relay_cap) {
        m->relay_cap = m->relay_cap ? 2 * m->relay_cap : 8;
        m->relays = hm_realloc(m->relays, m->relay_cap * sizeof *m->relays);
    }
    relay *r = &m->relays[m->relay_count++];
    strcpy(r->requester, from->name);
    strcpy(r->target, t->name);
    r->id = w->u.probe_req.id;
    r->deadline_ms = now_ms + m->cfg.probe_timeout_ms;
    send_heartbeat(m, t, true, now_ms);
}

static void on_probe_ack(hm_members *m, const hm_wire_msg *w, uint64_t now_ms)
{
    member *x = hm_members_find_member(m, w->u.probe_ack.target);
    if (!x || !x->round_open || x->round_id != w->u.probe_ack.id)
        return; /* a late answer to a closed round */
    x->answered++;
    x->heard |= w->u.probe_ack.heard;
    if (x->heard || x->answered >= x->asked)
        close_round(m, x, now_ms);
}

/* Learn the members a peer knows: dial the new ones, and drop any member
 * the peer has seen under a newer incarnation. */
static void on_gossip(hm_members *m, const hm_wire_msg *w, uint64_t now_ms)
{
    for (size_t i = 0; i < w->u.members.count; i++) {
        const hm_wire_node *n = &w->u.members.nodes[i];
        if (strcmp(n->name, m->self_name) == 0)
            continue;
        member *x = hm_members_find_member(m, n->name);
        if (!x) {
            add_member(m, n->name, n->addr, n->inc, now_ms);
            continue;
        }
        if (n->inc <= x->inc)
            continue;
        if (hm_members_is_live_member(x))
            end_member(m, x, HM_MEMBER_JOINING, HM_MEMBER_EV_REPLACED, now_ms);
        x->state = HM_MEMBER_JOINING;
        x->inc = n->inc;
        strcpy(x->addr, n->addr);
        x->backoff_ms = m->cfg.dial_backoff_min_ms;
        x->next_dial_ms = now_ms;
    }
}

hm_err hm_members_on_message(hm_members *m, const char *from,
                             const hm_wire_msg *w, uint64_t now_ms)
{
    switch (w->type) {
    case HM_WIRE_HEARTBEAT:
    case HM_WIRE_PROBE_REQ:
    case HM_WIRE_PROBE_ACK:
    case HM_WIRE_MEMBERS:
    case HM_WIRE_LEAVE:
        break;
    default:
        return HM_EINVAL;
    }
    member *x = hm_members_find_member(m, from);
    if (!x || !x->linked)
        return HM_OK; /* from a link we do not know: the driver's race */
    hm_members_on_heard(m, from, now_ms);
    switch (w->type) {
    case HM_WIRE_HEARTBEAT:
        if (w->u.heartbeat.reply)
            send_heartbeat(m, x, false, now_ms);
        break;
    case HM_WIRE_PROBE_REQ:
        on_probe_req(m, x, w, now_ms);
        break;
    case HM_WIRE_PROBE_ACK:
        on_probe_ack(m, w, now_ms);
        break;
    case HM_WIRE_MEMBERS:
        on_gossip(m, w, now_ms);
        break;
    default: /* HM_WIRE_LEAVE */
        if (w->u.leave.inc == x->inc && x->state != HM_MEMBER_LEFT)
            end_member(m, x, HM_MEMBER_LEFT, HM_MEMBER_EV_LEFT, now_ms);
        break;
    }
    return HM_OK;
}

/* --------------------------------------------------------------- time */

static void dial(hm_members *m, member *x, uint64_t now_ms)
{
    hm_member_action *a = push_action(m, HM_MACT_DIAL, x->name);
    strcpy(a->addr, x->addr);
    x->next_dial_ms = now_ms + x->backoff_ms;
    x->backoff_ms = x->backoff_ms * 2 > m->cfg.dial_backoff_max_ms
                        ? m->cfg.dial_backoff_max_ms
                        : x->backoff_ms * 2;
}

/* One member's timers; returns false if the member should be forgotten. */
static bool tick_member(hm_members *m, member *x, uint64_t now_ms)
{
    const hm_members_config *c = &m->cfg;
    if (x->linked && since(now_ms, x->last_sent_ms) >= c->heartbeat_interval_ms)
        send_heartbeat(m, x, false, now_ms);
    if (x->state == HM_MEMBER_ALIVE &&
        (!x->linked || since(now_ms, x->last_heard_ms) >= c->suspect_after_ms))
        suspect(m, x, now_ms);
    if (x->state == HM_MEMBER_SUSPECT) {
        /* A round that found nobody to ask is over as soon as somebody
         * is back (a healing partition): ask them at once, rather than
         * let the silence rule below, meant for nobody to ask, decide. */
        if (x->round_open && now_ms >= x->round_deadline_ms)
            close_round(m, x, now_ms);
        else if (!x->round_open &&
                 (now_ms >= x->next_round_ms ||
                  (x->asked == 0 && can_ask(m, x, now_ms))))
            start_round(m, x, now_ms);
        if (x->state == HM_MEMBER_SUSPECT && !x->round_open && x->asked == 0 &&
            since(now_ms, x->last_heard_ms) >= c->dead_after_ms) {
            if (!is_isolated(m, x, now_ms))
                declare_dead(m, x, "silent and nobody to ask", now_ms);
            else
                note_isolated(m, x);
        }
    }
    /* Tombstones, and members we heard of but never reached (gossip about
     * a node that died before we dialled it), are forgotten in the end. */
    if ((x->state == HM_MEMBER_DEAD || x->state == HM_MEMBER_JOINING) &&
        since(now_ms, x->state_since_ms) >= c->reap_after_ms)
        return false;
    if (!x->linked && x->state != HM_MEMBER_LEFT && now_ms >= x->next_dial_ms)
        dial(m, x, now_ms);
    return true;
}

static void tick_seeds(hm_members *m, uint64_t now_ms)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->members[i]->linked)
            return; /* in a cluster: seeds are only for getting in */
    if (m->seed_count == 0 || now_ms < m->next_seed_ms)
        return;
    for (size_t i = 0; i < m->seed_count; i++) {
        hm_member_action *a = push_action(m, HM_MACT_DIAL, "");
        strcpy(a->addr, m->seeds[i]);
    }
    m->next_seed_ms = now_ms + m->seed_backoff_ms;
    m->seed_backoff_ms = m->seed_backoff_ms * 2 > m->cfg.dial_backoff_max_ms
                             ? m->cfg.dial_backoff_max_ms
                             : m->seed_backoff_ms * 2;
}

/* The own-stall guard (ADR 0220): time this node did not run (a tick
 * later than a heartbeat interval: the process was descheduled, stopped,
 * or its workers busy) judges nobody else. The part of the gap beyond one
 * heartbeat interval is added to every silence clock and deadline that
 * judges a peer, so the lines that waited for us meanwhile (in the
 * socket, or behind this tick) are read before anyone is suspected, and a
 * peer silent while we ran is suspected as before. */
static void forgive_own_stall(hm_members *m, uint64_t now_ms)
{
    uint64_t gap = m->ticked ? since(now_ms, m->last_tick_ms) : 0;
    uint64_t stall;

    m->last_tick_ms = now_ms;
    m->ticked = true;
    if (gap <= m->cfg.heartbeat_interval_ms)
        return;
    stall = gap - m->cfg.heartbeat_interval_ms;
    for (size_t i = 0; i < m->count; i++) {
        member *x = m->members[i];

        x->last_heard_ms = x->last_heard_ms + stall < now_ms
                               ? x->last_heard_ms + stall
                               : now_ms;
        if (x->round_open)
            x->round_deadline_ms += stall;
    }
    for (size_t i = 0; i < m->relay_count; i++)
        m->relays[i].deadline_ms += stall;
}

void hm_members_tick(hm_members *m, uint64_t now_ms)
{
    if (m->leaving)
        return;
    forgive_own_stall(m, now_ms);
    answer_relays(m, NULL, false, now_ms);
    size_t i = 0;
    while (i < m->count) {
        if (tick_member(m, m->members[i], now_ms))
            i++;
        else
            remove_member(m, i);
    }
    tick_seeds(m, now_ms);
    if (m->isolated_logged && !is_isolated(m, NULL, now_ms)) {
        m->isolated_logged = false;
        HM_LOG_INFO("CL-ISOLATED-END", "%s: hears most of its peers again",
                    m->self_name);
    }
}

void hm_members_leave(hm_members *m, uint64_t now_ms)
{
    if (m->leaving)
        return;
    m->leaving = true;
    for (size_t i = 0; i < m->count; i++) {
        member *x = m->members[i];
        if (x->linked)
            send_msg(m, x, HM_WIRE_LEAVE, now_ms)->u.leave.inc =
                m->cfg.self_inc;
    }
}
