/* cluster/members_impl.h: the membership table's layout, shared by
 * members.c (the state machine) and members_query.c (read-only queries).
 * Nothing outside cluster/members*.c may include it. */
#ifndef HM_CLUSTER_MEMBERS_IMPL_H
#define HM_CLUSTER_MEMBERS_IMPL_H

#include "cluster/members.h"

typedef struct member {
    char name[HM_NODE_NAME_MAX + 1];
    char addr[HM_NODE_ADDR_MAX + 1];
    uint64_t inc;
    hm_member_state state;
    bool linked;
    uint64_t last_heard_ms;
    uint64_t last_sent_ms;
    uint64_t state_since_ms;
    /* Redialling while not linked. */
    uint64_t next_dial_ms;
    uint32_t backoff_ms;
    /* Our probe round on this suspect: `asked` peers, `answered` of them
     * answered, `heard` if any of them hears it. */
    bool round_open;
    bool heard;
    uint64_t round_id;
    uint64_t round_deadline_ms;
    uint64_t next_round_ms;
    uint32_t asked, answered;
} member;

/* A probe we run for another node: `requester` asked whether we hear
 * `target`; we pinged it and answer when it speaks, its link drops, or at
 * `deadline_ms`. */
typedef struct relay {
    char requester[HM_NODE_NAME_MAX + 1];
    char target[HM_NODE_NAME_MAX + 1];
    uint64_t id;
    uint64_t deadline_ms;
} relay;

struct hm_members {
    hm_members_config cfg; /* string fields point at our copies below */
    char self_name[HM_NODE_NAME_MAX + 1];
    char self_addr[HM_NODE_ADDR_MAX + 1];
    bool leaving;

    member **members;
    size_t count, cap;

    relay *relays;
    size_t relay_count, relay_cap;

    char (*seeds)[HM_NODE_ADDR_MAX + 1];
    size_t seed_count;
    uint64_t next_seed_ms;
    uint32_t seed_backoff_ms;

    uint64_t next_round_id;
    uint64_t last_tick_ms; /* the own-stall guard: the last tick, */
    bool ticked;           /* if there was one */
    bool isolated_logged; /* the guard's refusal is logged once per spell */

    hm_member_action *actions; /* FIFO: [head, head+len) of cap */
    size_t head, len, act_cap;
};

/* The member named `name` (NULL-safe), or NULL. */
member *hm_members_find_member(const hm_members *m, const char *name);

/* ALIVE or SUSPECT: still a member, whatever its link. */
bool hm_members_is_live_member(const member *x);

#endif
