/* cluster/members.h: the membership table and failure detector, as a pure
 * state machine.
 *
 * The table knows every member of the cluster: its name, its cluster
 * address, its incarnation and its state. It does no I/O and reads no
 * clock: the driver (the cluster actor, on top of net/) feeds it events
 * (a link came up or went down, a message arrived, a dial failed, time
 * passed) with the current time in milliseconds, and then drains the
 * actions it produced (send this message to that peer, dial this address,
 * close that link, tell the rest of the node that a member changed). Tests
 * drive it with a fake clock and an in-memory network.
 *
 * Failure detection, in short (docs/cluster.md and ADR 0040 say why):
 *   - Any message heard from a peer proves it alive; an idle link carries a
 *     heartbeat every `heartbeat_interval_ms`.
 *   - A member becomes SUSPECT when its link goes down (a crashed process's
 *     socket is closed by its kernel: EOF or RST) or after
 *     `suspect_after_ms` of silence.
 *   - A suspect is confirmed through the others: up to `probe_fanout` peers
 *     are asked "do you hear it?"; each pings it and answers. The suspect is
 *     declared DEAD only if at least one answered and none heard it.
 *   - A dial to a suspect that is refused (nothing listens at its address:
 *     its process is gone) is proof enough on its own.
 *   - With nobody to ask (a two-node cluster), DEAD after `dead_after_ms`.
 *   - Minority guard: a node that does not hear most of its other peers
 *     (it is the one cut off, not them) declares nobody dead.
 *   - A graceful leave is announced (LEFT), never mistaken for a failure.
 *   - A member seen with a higher incarnation is a new member: the old one
 *     is REPLACED and everything tied to it must be dropped.
 *
 * Links: the driver reports only *authenticated* links, one per peer. When
 * two links to the same peer exist (both nodes dialled at once), it keeps
 * the one hm_members_keep_new_link() chooses and closes the other without
 * telling the table.
 *
 * Not thread-safe: one owner (the cluster actor) calls everything. */
#ifndef HM_CLUSTER_MEMBERS_H
#define HM_CLUSTER_MEMBERS_H

#include "cluster/wire.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_members hm_members;

typedef enum {
    HM_MEMBER_JOINING, /* known by gossip or seed, never linked */
    HM_MEMBER_ALIVE,
    HM_MEMBER_SUSPECT, /* link down or silent; being confirmed */
    HM_MEMBER_DEAD,    /* confirmed failed; kept as a tombstone */
    HM_MEMBER_LEFT,    /* left gracefully; kept as a tombstone */
} hm_member_state;

/* Every timer, in milliseconds. A zero field takes the default in
 * brackets; the defaults meet docs/cluster.md's targets (crash seen dead in
 * one round trip, a silent node in about 2.5 s, a
 * process paused for 2 s survives, no false death with 5%
 * loss and 50 ms delay). */
typedef struct hm_members_config {
    const char *self_name;          /* borrowed for the call; copied */
    const char *self_addr;          /* our cluster listen address, copied */
    uint64_t self_inc;              /* our incarnation (> 0) */
    uint32_t heartbeat_interval_ms; /* heartbeat on a link idle so long [250] */
    uint32_t suspect_after_ms;      /* silence that makes a suspect [1500] */
    uint32_t probe_timeout_ms;      /* an asked peer waits so long [1000] */
    uint32_t round_timeout_ms;      /* we wait for the answers so long [1250] */
    uint32_t probe_interval_ms;     /* between rounds on one suspect [500] */
    uint32_t dead_after_ms;       /* silence = dead with nobody to ask [2500] */
    uint32_t probe_fanout;        /* peers asked per round [3] */
    uint32_t dial_backoff_min_ms; /* first redial delay [100] */
    uint32_t dial_backoff_max_ms; /* redial delay cap [5000] */
    uint32_t reap_after_ms; /* forget a dead or unreachable joiner [3600000] */
} hm_members_config;

typedef enum {
    HM_MEMBER_EV_UP,       /* a member (name, inc) joined or came back */
    HM_MEMBER_EV_SUSPECT,  /* unreachable for now; still a member */
    HM_MEMBER_EV_ALIVE,    /* a suspect is heard again */
    HM_MEMBER_EV_DEAD,     /* (name, inc) failed: drop what is tied to it */
    HM_MEMBER_EV_LEFT,     /* (name, inc) left: drop what is tied to it */
    HM_MEMBER_EV_REPLACED, /* (name, inc) restarted under a higher inc */
} hm_member_event;

typedef enum {
    HM_MACT_SEND,  /* send `msg` on the link to `peer` */
    HM_MACT_DIAL,  /* open a link to `addr` (`peer` is "" for a seed);
                      ignore it if a dial to `addr` is in progress */
    HM_MACT_CLOSE, /* close the link to `peer` */
    HM_MACT_EVENT, /* `event` happened to member (`peer`, `inc`) */
} hm_member_action_kind;

typedef struct hm_member_action {
    hm_member_action_kind kind;
    char peer[HM_NODE_NAME_MAX + 1];
    char addr[HM_NODE_ADDR_MAX + 1]; /* DIAL, and EVENT's member address */
    uint64_t inc;                    /* EVENT: the incarnation concerned */
    hm_member_event event;           /* EVENT */
    hm_wire_msg msg; /* SEND: owned by the action; hm_wire_msg_fini it */
} hm_member_action;

/* A snapshot of one member, for the API and for logs. */
typedef struct hm_member_info {
    char name[HM_NODE_NAME_MAX + 1];
    char addr[HM_NODE_ADDR_MAX + 1];
    uint64_t inc;
    hm_member_state state;
    bool linked;
    uint64_t last_heard_ms;
} hm_member_info;

/* Create a table that knows only itself. `cfg` is borrowed.
 * Returns owned in `*out`. Errors: HM_EINVAL if the name or address is not
 * valid on the wire, or self_inc is 0 or above HM_WIRE_INT_MAX. */
hm_err hm_members_create(const hm_members_config *cfg, hm_members **out);

/* Accepts NULL. Pending actions are discarded. */
void hm_members_destroy(hm_members *m);

/* Add a seed address (borrowed, copied). Seeds are dialled while no member
 * is linked, with backoff. Errors: HM_EINVAL if `addr` is not valid. */
hm_err hm_members_add_seed(hm_members *m, const char *addr);

/* ------------------------------------------------------------- inputs */

/* An authenticated link to (name, addr, inc) is up; all strings borrowed.
 * Errors: HM_EINVAL if `name` is our own (a seed pointing at ourselves, or
 * a misconfigured twin); HM_EPROTO if `inc` is below the incarnation we
 * know (a stale process). On error the driver closes the link. */
hm_err hm_members_on_link_up(hm_members *m, const char *name, const char *addr,
                             uint64_t inc, uint64_t now_ms);

/* The link to `name` (borrowed) closed, for whatever reason. */
void hm_members_on_link_down(hm_members *m, const char *name, uint64_t now_ms);

/* A dial to `name` (borrowed; NULL or "" for a seed) failed; `refused`
 * says the host answered that nothing listens there (ECONNREFUSED). */
void hm_members_on_dial_failed(hm_members *m, const char *name, bool refused,
                               uint64_t now_ms);

/* Any line at all arrived from `name` (borrowed): it is alive. */
void hm_members_on_heard(hm_members *m, const char *name, uint64_t now_ms);

/* We wrote something to `name` (borrowed): no heartbeat needed for a
 * while. */
void hm_members_on_sent(hm_members *m, const char *name, uint64_t now_ms);

/* A membership message `msg` (borrowed) arrived from `from` (borrowed):
 * HEARTBEAT, PROBE_REQ, PROBE_ACK, MEMBERS or LEAVE. Also counts as heard.
 * Errors: HM_EINVAL for another message type (not ours to handle). */
hm_err hm_members_on_message(hm_members *m, const char *from,
                             const hm_wire_msg *msg, uint64_t now_ms);

/* Time passed: send heartbeats, raise suspicions, close probe rounds,
 * redial. Call it every few tens of milliseconds (the finest timer's
 * resolution; hm_members_next_deadline says when it is next needed). */
void hm_members_tick(hm_members *m, uint64_t now_ms);

/* Leave gracefully: tell every linked peer, then go quiet (no more
 * heartbeats or dials). The driver closes the links once the LEAVE lines
 * are written. */
void hm_members_leave(hm_members *m, uint64_t now_ms);

/* ------------------------------------------------------------ outputs */

/* Pop the oldest pending action into `*out` (borrowed storage); false if
 * none. The caller then owns `out->msg` and must hm_wire_msg_fini it. */
bool hm_members_next_action(hm_members *m, hm_member_action *out);

/* ------------------------------------------------------------ queries */

/* Copy what we know of `name` (borrowed) into `*out`.
 * Errors: HM_ENOTFOUND if it is not in the table (or is ourselves). */
hm_err hm_members_get(const hm_members *m, const char *name,
                      hm_member_info *out);

/* Number of other members in the table, tombstones included. */
size_t hm_members_count(const hm_members *m);

/* The `i`th other member (0 <= i < count), in table order. */
void hm_members_at(const hm_members *m, size_t i, hm_member_info *out);

/* The names of the live members, ourselves included (ALIVE and SUSPECT:
 * a suspicion moves nothing), sorted by strcmp so that every node lists
 * them alike: what placement hashes over. Writes up to `cap` borrowed
 * pointers to `out` (valid until the next input to `m`) and returns the
 * number of live members (which may exceed `cap`). */
size_t hm_members_live(const hm_members *m, const char **out, size_t cap);

/* Whether this node hears fewer than half of its other live peers now (it
 * would refuse to declare anyone dead). */
bool hm_members_is_isolated(const hm_members *m, uint64_t now_ms);

/* Our own name; returns borrowed until hm_members_destroy. */
const char *hm_members_self(const hm_members *m);

/* Which of two authenticated links to the same peer to keep, when one
 * exists (`existing_dialled_by_self`) and another comes up
 * (`new_dialled_by_self`). Both sides compute the same answer: the link
 * dialled by the node with the smaller name (strcmp) survives; between two
 * links dialled by the same side, the newer one does (it replaces a link
 * that is stale). Returns true to keep the new link and close the old. */
bool hm_members_keep_new_link(const char *self, const char *peer,
                              bool existing_dialled_by_self,
                              bool new_dialled_by_self);

const char *hm_member_state_name(hm_member_state s);
const char *hm_member_event_name(hm_member_event e);

#endif
