/* apps/mqtt/session_persist.c: a session's side of persistence (ADR 0111).
 *
 * A persistent session (persistence on, CleanSession 0) is saved as one
 * session_state.h record at the end of a burst of messages (`always`) or
 * after the autosave interval; under `always`, what it tells its client
 * (a PUBLISH with a new packet id, PUBREL, SUBACK, UNSUBACK) and the
 * publishers' acknowledgements (receipts) wait in the gate until the save
 * that covers them is committed. The state lives behind s->dur, allocated
 * only for sessions that persist. Runs on the session's receiver only, so
 * nothing here locks. session.c is the receiver; this file only decides
 * when to save and what waits. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/gate.h"
#include "apps/mqtt/session_impl.h"
#include "apps/mqtt/session_state.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

/* The store keeps this session (persistence on, CleanSession 0). */
bool mqtt_session_durable(const mqtt_session *s)
{
    return s->b->persist && s->persistent;
}

/* What this session tells its client waits for the commit (`always`). */
bool mqtt_session_gated(const mqtt_session *s)
{
    return mqtt_session_durable(s) && s->b->durable_always;
}

session_dur *mqtt_session_dur(mqtt_session *s)
{
    if (!s->dur)
        s->dur = hm_calloc(1, sizeof *s->dur);
    return s->dur;
}

/* The state changed: save it at the end of this burst of messages
 * (`always`: "mqtt.flush" queues behind what is in the mailbox, so one
 * save covers them all) or after the autosave interval. */
void mqtt_session_mark_dirty(mqtt_session *s)
{
    session_dur *d;
    hm_msg *m;
    hm_err err;

    if (!mqtt_session_durable(s))
        return;
    d = mqtt_session_dur(s);
    d->dirty = true;
    if (d->flush_queued || (!s->b->durable_always && !s->b->autosave_ms))
        return;
    m = hm_msg_create(&mqtt_flush_type, NULL, 0);
    err = s->b->durable_always
              ? hm_runtime_send(s->b->rt, s->self, m)
              : hm_runtime_send_after(s->b->rt, s->self, m,
                                      s->b->autosave_ms, NULL);
    if (err != HM_OK)
        hm_msg_destroy(m);
    else
        d->flush_queued = true;
}

void mqtt_session_keep_receipt(mqtt_session *s, mqtt_receipt *r)
{
    session_dur *d = mqtt_session_dur(s);

    if (d->receipt_count == d->receipt_cap) {
        d->receipt_cap = d->receipt_cap ? d->receipt_cap * 2 : 8;
        d->receipts =
            hm_realloc(d->receipts, d->receipt_cap * sizeof *d->receipts);
    }
    d->receipts[d->receipt_count++] = r;
}

/* The session as a record (session_state.h; session_cluster.c converts
 * the outbox, leaving QoS 0 messages out: MQTT lets them go while the
 * client is away). */
hm_err mqtt_session_encode(const mqtt_session *s, uint32_t gen, uint8_t **rec,
                           size_t *len)
{
    uint32_t nsubs = s->subs ? s->subs->count : 0;
    mqtt_state_sub *subs = hm_alloc((nsubs + 1) * sizeof *subs);
    hm_err err;

    for (uint32_t i = 0; i < nsubs; i++)
        subs[i] = (mqtt_state_sub){{(const uint8_t *)s->subs->items[i].filter,
                                    s->subs->items[i].len},
                                   s->subs->items[i].qos};
    err = mqtt_session_state_save(session_id(s), gen, subs, nsubs, s->out,
                                  s->in_qos2, rec, len);
    hm_free(subs);
    return err;
}

/* Sends the record to the store, with the receipts it covers. */
void mqtt_session_save_now(mqtt_session *s)
{
    session_dur *d = s->dur;
    uint8_t *rec;
    size_t len;

    if (!mqtt_session_durable(s) || !d || !d->dirty)
        return;
    if (mqtt_session_encode(s, s->gen, &rec, &len) != HM_OK) {
        HM_LOG_ERROR("MQTT-PERSIST-FAIL", "client %s: cannot encode the "
                     "session", session_id(s));
        return;
    }
    d->dirty = false;
    d->saved_ever = true;
    mqtt_saver_session(s->b, session_id(s), rec, len, s->self,
                       mqtt_gate_next_save(&d->gate), d->receipts,
                       d->receipt_count);
    d->receipts = NULL;
    d->receipt_count = d->receipt_cap = 0;
}

/* The session is no longer persistent: its record goes. */
void mqtt_session_unsave(mqtt_session *s)
{
    session_dur *d = s->dur;

    if (!d || !d->saved_ever)
        return;
    mqtt_saver_session(s->b, session_id(s), NULL, 0, NULL, 0, d->receipts,
                       d->receipt_count);
    d->receipts = NULL;
    d->receipt_count = d->receipt_cap = 0;
    d->saved_ever = false;
    d->dirty = false;
}

/* Save number `n` is committed: what it covers may go to the client. */
void mqtt_session_release_gate(mqtt_session *s, uint64_t n)
{
    mqtt_gate_pkt pk;

    while (s->dur && mqtt_gate_pop_committed(&s->dur->gate, n, &pk)) {
        hm_err err;

        if (!s->conn) { /* on another node (or away): bare bytes */
            mqtt_session_send_out(s, pk.bytes, pk.len);
            continue;
        }
        err = hm_conn_write_take(s->conn, pk.bytes, pk.len);
        if (err != HM_OK)
            hm_free(pk.bytes);
        if (err == HM_EFULL && pk.publish) { /* as write_publish() */
            HM_LOG_WARN("MQTT-SLOW-CLIENT", "client %s: write queue full",
                        session_id(s));
            hm_conn_abort(s->conn);
        }
    }
}

/* Writes `p` (borrowed) to the client, or, when gated, holds it until the
 * state that produced it is committed. */
hm_err mqtt_session_send_packet(mqtt_session *s, const mqtt_packet *p)
{
    uint8_t *buf;
    size_t len;
    hm_err err;

    if (!mqtt_session_gated(s))
        return mqtt_session_write_now(s, p);
    /* Framed for the socket here; bare for a connection elsewhere. */
    if ((err = mqtt_packet_bytes(s->conn && s->ws, p, &buf, &len)) != HM_OK)
        return err;
    mqtt_gate_hold(&mqtt_session_dur(s)->gate, buf, len,
                   p->type == MQTT_PUBLISH && p->u.publish.qos > 0);
    mqtt_session_mark_dirty(s);
    return HM_OK;
}


/* A dead member's session restored here (fail-over, docs/adr/0160): saved
 * at once, so the store files it under this node. */
void mqtt_session_adopted(mqtt_session *s)
{
    HM_LOG_INFO("MQTT-FAILOVER", "client %s: session restored "
                "(%u subscriptions, %zu messages)", session_id(s),
                (unsigned)mqtt_session_sub_count(s),
                s->out ? mqtt_outbox_inflight_count(s->out) +
                             mqtt_outbox_queued_count(s->out)
                       : (size_t)0);
    mqtt_session_dur(s)->dirty = true;
    mqtt_session_mark_dirty(s);
}
