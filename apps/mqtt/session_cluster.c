/* apps/mqtt/session_cluster.c: where sessions and connections live in a
 * cluster, and what a member's death does to them (ADR 0105).
 *
 * A session ("mqtt/session/<client id>") is a placed name: it lives on the
 * member rendezvous hashing picks, wherever its client connects, so a client
 * id has one session cluster-wide. A connection receiver is named after its
 * node ("mqtt/conn/<node>/<id>") and that name is homed there: a session on
 * another node reaches it without presence, so there is no window in which
 * the name is unknown. When a member dies, its connections and sessions are
 * gone and nothing there will say so: the "mqtt/members" receiver tells
 * every local connection and session (mqtt.node_gone), so that a session
 * whose connection died lets it go, and a connection whose session died
 * closes (its client reconnects and learns from session present = 0 that
 * the state is gone). A session that moves because a member joined carries
 * its state as a session_state.h record, saved and loaded here. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/session_state.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <string.h>

#define MEMBERS_NAME "mqtt/members"

bool mqtt_session_is_placed(void *b, const char *name)
{
    (void)b;
    return strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) ==
           0;
}

bool mqtt_conn_home(void *b, const char *name, char *node_out)
{
    (void)b;
    return mqtt_conn_name_node(name, node_out, HM_NODE_NAME_MAX + 1);
}

/* The connections and sessions active here (hm_runtime_foreach_active holds
 * a directory lock: only copying happens there). */
typedef struct names {
    char **v;
    size_t count, cap;
} names;

static void collect(void *arg, const char *name)
{
    names *l = arg;

    if (strncmp(name, MQTT_CONN_PREFIX, strlen(MQTT_CONN_PREFIX)) != 0 &&
        strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) != 0)
        return;
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = hm_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->count++] = hm_strdup(name);
}

static hm_err members_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    const char *gone = hm_msg_payload(msg);
    hm_runtime *rt = hm_ctx_runtime(ctx);
    names l = {0};
    hm_addr *a;

    (void)state;
    if (hm_msg_type(msg) != &mqtt_node_gone_type || !gone)
        return HM_OK;
    hm_runtime_foreach_active(rt, collect, &l);
    HM_LOG_INFO("MQTT-NODE-GONE", "member %s is gone: telling %zu local "
                "connections and sessions", gone, l.count);
    for (size_t i = 0; i < l.count; i++) {
        hm_msg *m = hm_msg_create(&mqtt_node_gone_type, hm_strdup(gone), 0);

        /* An address interned from an active name: the send never
         * activates anything new (one that ended meanwhile is activated
         * and ends at once: a session with no client, or a refused
         * connection name). */
        if (hm_runtime_intern(rt, l.v[i], &a) != HM_OK) {
            hm_msg_destroy(m);
        } else {
            if (hm_ctx_send(ctx, a, m) != HM_OK)
                hm_msg_destroy(m);
            hm_addr_release(a);
        }
        hm_free(l.v[i]);
    }
    hm_free(l.v);
    return HM_OK;
}

hm_err mqtt_session_cluster_start(mqtt_broker *b)
{
    hm_err err;

    if ((err = mqtt_session_msg_register(b->rt)) != HM_OK)
        return err;
    return hm_runtime_spawn(b->rt, MEMBERS_NAME,
                            &(hm_receiver){.handler = members_handle,
                                           .pinned = true},
                            &b->members);
}

void mqtt_session_cluster_event(mqtt_broker *b, const char *name,
                                hm_member_event event)
{
    hm_msg *m;

    if (!b->members || (event != HM_MEMBER_EV_DEAD &&
                        event != HM_MEMBER_EV_LEFT &&
                        event != HM_MEMBER_EV_REPLACED))
        return;
    m = hm_msg_create(&mqtt_node_gone_type, hm_strdup(name), 0);
    if (hm_runtime_send(b->rt, b->members, m) != HM_OK)
        hm_msg_destroy(m);
}

/* ------------------------------------------------ state for a handoff */

static mqtt_state_msg state_msg(const mqtt_out_entry *e)
{
    const mqtt_pub *pub = e->msg;
    mqtt_state_msg m = {.qos = e->qos,
                        .stage = e->stage,
                        .packet_id = e->packet_id,
                        .dup = e->stage != 0 && e->sent};

    if (pub) {
        m.retain = pub->retain;
        m.topic = (mqtt_bytes){(const uint8_t *)pub->topic, pub->topic_len};
        m.payload = (mqtt_bytes){pub->payload, pub->payload_len};
    }
    return m;
}

hm_err mqtt_session_state_save(const char *client_id,
                               const mqtt_state_sub *subs, size_t count,
                               const mqtt_outbox *out, const mqtt_qos2_ids *in,
                               uint8_t **data_out, size_t *len_out)
{
    size_t ni = mqtt_outbox_inflight_count(out);
    size_t nq = mqtt_outbox_queued_count(out), qn = 0;
    mqtt_state_msg *inflight = hm_alloc((ni + 1) * sizeof *inflight);
    mqtt_state_msg *queued = hm_alloc((nq + 1) * sizeof *queued);
    mqtt_out_entry e;
    hm_err err;

    for (size_t i = 0; i < ni; i++) {
        mqtt_outbox_inflight_at(out, i, &e);
        inflight[i] = state_msg(&e);
    }
    for (size_t i = 0; i < nq; i++) { /* QoS 0 does not outlive a client */
        mqtt_outbox_queued_at(out, i, &e);
        if (e.qos > 0)
            queued[qn++] = state_msg(&e);
    }
    err = mqtt_session_state_encode(
        &(mqtt_session_state){
            .client_id = {(const uint8_t *)client_id, strlen(client_id)},
            .next_packet_id = mqtt_outbox_next_id(out),
            .subs = (mqtt_state_sub *)subs,
            .sub_count = count,
            .inflight = inflight,
            .inflight_count = ni,
            .queued = queued,
            .queued_count = qn,
            .in_qos2 = in ? in->ids : NULL,
            .in_qos2_count = in ? in->count : 0},
        data_out, len_out);
    hm_free(inflight);
    hm_free(queued);
    return err;
}

static void load_msg(mqtt_outbox *out, const mqtt_state_msg *m, bool queued)
{
    mqtt_pub *pub = NULL;
    mqtt_out_entry e = {.qos = m->qos,
                        .stage = m->stage,
                        .packet_id = m->packet_id,
                        .sent = m->dup};
    hm_err err;

    if (m->stage != MQTT_STAGE_AWAIT_PUBCOMP)
        pub = mqtt_pub_create(m->topic.ptr, m->topic.len, m->payload.ptr,
                              m->payload.len, m->qos, m->retain);
    e.msg = pub;
    err = queued ? mqtt_outbox_push(out, pub, m->qos)
                 : mqtt_outbox_restore_inflight(out, &e);
    if (err != HM_OK)
        mqtt_pub_release(pub);
}

void mqtt_session_state_load(const mqtt_session_state *st, mqtt_outbox *out,
                             mqtt_qos2_ids **in_out)
{
    for (size_t i = 0; i < st->inflight_count; i++)
        load_msg(out, &st->inflight[i], false);
    for (size_t i = 0; i < st->queued_count; i++)
        load_msg(out, &st->queued[i], true);
    mqtt_outbox_set_next_id(out, st->next_packet_id);
    *in_out = NULL;
    if (st->in_qos2_count == 0)
        return;
    *in_out = hm_calloc(1, sizeof **in_out);
    for (size_t i = 0; i < st->in_qos2_count; i++)
        mqtt_qos2_ids_receive(*in_out, st->in_qos2[i]);
}
