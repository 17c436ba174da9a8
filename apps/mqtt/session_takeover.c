/* apps/mqtt/session_takeover.c: a session taken over by a new connection
 * while another is attached [MQTT-3.1.4-2].
 *
 * The session kicks the old connection and answers the new one (CONNACK)
 * once the old one has detached, handing back the inbound QoS 2 ids it
 * held [MQTT-4.3.3-2] (mqtt_session_finish_takeover, session.c). In a
 * cluster the old connection may never detach: its node died unseen, or
 * its detach was refused on the way by a node whose view of the members
 * lagged (one hop, docs/cluster.md section 7). So the new connection is
 * answered after TAKEOVER_WAIT_MS all the same, and the kick is a request:
 * an answer "no such receiver" (HM_ENOTFOUND) says the old connection is
 * gone already, whose detach is then awaited TAKEOVER_GONE_MS only
 * (docs/adr/0295). A session that leaves its node while a takeover waits
 * kicks the waiting connection, whose client connects again and reaches
 * the new owner. Everything here runs on the session's receiver; the
 * pending attach and both connection addresses are the session's
 * (session_impl.h). */
#include "apps/mqtt/session_impl.h"

#include "runtime/log.h"

#include <stdint.h>

/* In a cluster a taken-over connection on another node may never detach
 * (its node died unseen, or it ended during a move): the new connection is
 * answered after this long all the same. */
#define TAKEOVER_WAIT_MS 3000u
/* ... and when its connection receiver is gone already (its detach is on
 * the way, or was lost), so long. */
#define TAKEOVER_GONE_MS 200u

/* arg: the takeover it belongs to. */
const hm_type mqtt_session_takeover_type = {.name = "mqtt.takeover_timer"};

static void kick(hm_ctx *ctx, hm_addr *to)
{
    hm_msg *m = hm_msg_create(&mqtt_kick_type, NULL, 0);

    if (hm_ctx_send(ctx, to, m) != HM_OK)
        hm_msg_destroy(m);
}

/* The takeover's wait for the old connection's detach ends in `ms`. */
static void arm_takeover(mqtt_session *s, uint32_t ms)
{
    hm_msg *t =
        hm_msg_create(&mqtt_session_takeover_type, NULL, ++s->takeovers);

    if (hm_runtime_send_after(s->b->rt, s->self, t, ms, NULL) != HM_OK)
        hm_msg_destroy(t);
}

/* The old connection answered its kick (it closes and detaches), or
 * cannot: its receiver is gone already, so its detach is on the way or
 * was lost: then the wait is cut short. */
static void kick_answered(hm_ctx *ctx, void *state, hm_msg *reply,
                          hm_err err, void *arg)
{
    mqtt_session *s = state;

    (void)ctx;
    (void)reply;
    /* Only "no such receiver" says it is gone: a full link (HM_EFULL)
     * or a dying node keep the usual wait (and the kick sent again). */
    if (err != HM_ENOTFOUND || !s->old_conn_addr ||
        (uint32_t)(uintptr_t)arg != s->takeovers)
        return;
    HM_LOG_INFO("MQTT-TAKEOVER", "client %s: the old connection is gone "
                "(%s); its detach is not awaited long", session_id(s),
                hm_err_str(err));
    arm_takeover(s, TAKEOVER_GONE_MS);
}

/* In a cluster the kick is a request, so a connection that is gone
 * already is known at once (kick_answered). */
static void kick_old(hm_ctx *ctx, mqtt_session *s)
{
    hm_msg *m = hm_msg_create(&mqtt_kick_type, NULL, 0);
    hm_err err = hm_ctx_request(ctx, s->old_conn_addr, m, TAKEOVER_WAIT_MS,
                                kick_answered,
                                (void *)(uintptr_t)s->takeovers, NULL);

    if (err != HM_OK) {
        hm_msg_destroy(m);
        kick_answered(ctx, s, NULL, err, (void *)(uintptr_t)s->takeovers);
    }
}

void mqtt_session_take_over(hm_ctx *ctx, mqtt_session *s, hm_msg *msg,
                            hm_addr *from)
{
    HM_LOG_INFO("MQTT-TAKEOVER",
                "client %s: a new connection takes over "
                "the session",
                session_id(s));
    if (s->pending_attach) { /* a third one: the second never started */
        kick(ctx, s->pending_from);
        hm_msg_destroy(s->pending_attach);
        hm_addr_release(s->pending_from);
    }
    s->pending_from = from;
    s->pending_attach = hm_msg_move(msg);
    if (s->conn_addr) {
        hm_addr_release(s->old_conn_addr);
        s->old_conn_addr = hm_addr_ref(s->conn_addr);
        mqtt_session_let_go(s);
        if (!s->b->node) {
            kick(ctx, s->old_conn_addr);
            return;
        }
        arm_takeover(s, TAKEOVER_WAIT_MS);
        kick_old(ctx, s);
    }
}

void mqtt_session_takeover_timer(hm_ctx *ctx, mqtt_session *s, uint64_t n)
{
    if (!s->old_conn_addr || n != s->takeovers)
        return; /* stale: detached, or a later takeover */
    HM_LOG_WARN("MQTT-TAKEOVER", "client %s: the old connection did "
                "not detach in time", session_id(s));
    /* Its kick may have met a full link (ADR 0230): again, so it does not
     * stay open, deaf, once its node catches up. */
    kick(ctx, s->old_conn_addr);
    mqtt_session_finish_takeover(ctx, s, NULL);
}

void mqtt_session_drop_pending(mqtt_session *s)
{
    hm_msg *m;

    if (!s->pending_from)
        return;
    m = hm_msg_create(&mqtt_kick_type, NULL, 0);
    if (hm_runtime_send(s->b->rt, s->pending_from, m) != HM_OK)
        hm_msg_destroy(m);
    hm_addr_release(s->pending_from);
    hm_msg_destroy(s->pending_attach);
    s->pending_from = NULL;
    s->pending_attach = NULL;
}
