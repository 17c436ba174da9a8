/* fuzz/fuzz_cluster_state.c: libFuzzer target for the membership and
 * presence state machines.
 *
 * The input is a script: each byte picks an operation (a link up or down, a
 * dial failure, time passing, a membership or presence message with fields
 * drawn from the next bytes) from one of four peers, fed to one node's
 * hm_members and hm_presence exactly as the driver would. Authenticated
 * peers can still be buggy or hostile, so whatever they send must never
 * crash the tables, trip an assertion or leak; and the tables' own output
 * must always be encodable (the encoder refuses nothing they produce). */
#include "cluster/members.h"
#include "cluster/presence.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include "fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const peers[] = {"n1", "n2", "n3", "n4"};
static const char *const names[] = {"alice", "bob", "carol", "dave"};

/* Every action must encode; then it is dropped (nobody answers). */
static void drain(hm_members *m, hm_presence *p)
{
    hm_member_action a;
    hm_presence_action pa;
    while (hm_members_next_action(m, &a)) {
        char *line;
        if (a.kind == HM_MACT_SEND) {
            if (hm_wire_encode_line(&a.msg, &line) != HM_OK)
                abort();
            hm_free(line);
        }
        hm_wire_msg_fini(&a.msg);
    }
    while (hm_presence_next_action(p, &pa)) {
        char *line;
        if (hm_wire_encode_line(&pa.msg, &line) != HM_OK)
            abort();
        hm_free(line);
        hm_wire_msg_fini(&pa.msg);
    }
}

/* A message of a type picked by `op`, fields from the script. */
static void make_msg(script *s, uint8_t op, hm_wire_msg *w)
{
    static hm_wire_node nodes[2];
    static char *snap_names[2];
    memset(w, 0, sizeof *w);
    switch (op % 8) {
    case 0:
        w->type = HM_WIRE_HEARTBEAT;
        w->u.heartbeat.reply = next(s) & 1;
        break;
    case 1:
        w->type = HM_WIRE_PROBE_REQ;
        w->u.probe_req.id = next(s);
        strcpy(w->u.probe_req.target, peers[next(s) % 4]);
        break;
    case 2:
        w->type = HM_WIRE_PROBE_ACK;
        w->u.probe_ack.id = next(s);
        strcpy(w->u.probe_ack.target, peers[next(s) % 4]);
        w->u.probe_ack.heard = next(s) & 1;
        break;
    case 3:
        w->type = HM_WIRE_MEMBERS;
        for (int i = 0; i < 2; i++) {
            strcpy(nodes[i].name, i ? "self" : peers[next(s) % 4]);
            strcpy(nodes[i].addr, "h:1");
            nodes[i].inc = next(s);
        }
        w->u.members.nodes = nodes;
        w->u.members.count = 2;
        break;
    case 4:
        w->type = HM_WIRE_LEAVE;
        w->u.leave.inc = next(s);
        break;
    case 5:
        w->type = HM_WIRE_PRES_DELTA;
        strcpy(w->u.pres_delta.at.origin, peers[next(s) % 4]);
        w->u.pres_delta.at.inc = next(s) % 4;
        w->u.pres_delta.at.version = next(s) % 8;
        w->u.pres_delta.add = next(s) & 1;
        w->u.pres_delta.name = (char *)names[next(s) % 4];
        break;
    case 6:
        w->type = HM_WIRE_PRES_SNAPSHOT;
        strcpy(w->u.pres_snapshot.at.origin, peers[next(s) % 4]);
        w->u.pres_snapshot.at.inc = next(s) % 4;
        w->u.pres_snapshot.at.version = next(s) % 8;
        w->u.pres_snapshot.parts = 1 + next(s) % 3;
        w->u.pres_snapshot.part = next(s) % w->u.pres_snapshot.parts;
        snap_names[0] = (char *)names[next(s) % 4];
        snap_names[1] = (char *)names[next(s) % 4];
        w->u.pres_snapshot.names = snap_names;
        w->u.pres_snapshot.count = 2;
        break;
    default:
        w->type = HM_WIRE_PRES_DIGEST;
        break;
    }
}

static void step(script *s, hm_members *m, hm_presence *p, uint64_t *now)
{
    uint8_t op = next(s);
    const char *peer = peers[(op >> 4) % 4];
    hm_wire_msg w;
    switch (op % 8) {
    case 0:
        if (hm_members_on_link_up(m, peer, "h:1", next(s) % 4, *now) == HM_OK)
            hm_presence_on_link_up(p, peer, *now);
        break;
    case 1:
        hm_members_on_link_down(m, peer, *now);
        hm_presence_on_link_down(p, peer);
        break;
    case 2:
        hm_members_on_dial_failed(m, peer, next(s) & 1, *now);
        break;
    case 3:
        *now += (uint64_t)next(s) * 20;
        hm_members_tick(m, *now);
        hm_presence_tick(p, *now);
        break;
    case 4:
        hm_presence_on_node_gone(p, peer, next(s) % 4);
        break;
    default:
        make_msg(s, next(s), &w);
        if (hm_members_on_message(m, peer, &w, *now) == HM_EINVAL)
            hm_presence_on_message(p, peer, &w, *now);
        break;
    }
    drain(m, p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hm_members *m;
    hm_presence *p;
    script s = {data, size};
    uint64_t now = 1000;
    hm_log_set_level(HM_LOG_LEVEL_ERROR);
    if (hm_members_create(&(hm_members_config){.self_name = "self",
                                               .self_addr = "h:0",
                                               .self_inc = 1},
                          &m) != HM_OK ||
        hm_presence_create(
            &(hm_presence_config){.self_name = "self", .self_inc = 1}, &p) !=
            HM_OK)
        abort();
    while (s.left > 0)
        step(&s, m, p, &now);
    if (hm_presence_register(p, "alice", now) == HM_OK)
        drain(m, p);
    hm_members_destroy(m);
    hm_presence_destroy(p);
    return 0;
}
