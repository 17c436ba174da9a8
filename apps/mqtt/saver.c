/* apps/mqtt/saver.c: the broker's persistence: the "mqtt/persist"
 * receiver that commits, the receipts that hold back a publisher's
 * acknowledgement until what it caused is committed, and the start-up
 * (load, restore) and shutdown (final save) steps.
 *
 * The key decision (docs/adr/0111) is group commit in one receiver:
 * sessions and connections send their changes ("mqtt.persist" operations:
 * a whole session record, a retained message, an inbound QoS 2 id) to
 * "mqtt/persist", which appends them to a batch and, the first time the
 * batch is non-empty, sends itself "mqtt.commit". Everything that arrives
 * before that message is handled lands in the same transaction, so under
 * load one commit covers many messages and many sessions, and while a
 * commit runs the next batch fills up. After the commit it tells each
 * session which of its saves is durable ("mqtt.saved") and releases the
 * receipts the batch carried; the last release of a receipt lets the
 * publisher's connection send PUBACK/PUBREC/PUBCOMP. The store is used by
 * this receiver only (and by the main thread before the runtime runs and
 * after it stops), so it needs no lock of its own; that is also why the
 * fail-over (a cluster member died: restore from the shared Redis the
 * sessions it held that now place here, docs/adr/0160) runs here. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/outbox.h"
#include "apps/mqtt/session_state.h"

#include "cluster/node.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAVER_NAME "mqtt/persist"
#define RETRY_MS 200u
#define STOP_WAIT_MS 5000u
#define RESTORE_WAIT_MS 60000u

/* ------------------------------------------------------------ receipts */

struct mqtt_receipt {
    _Atomic uint32_t units; /* relaxed adds; the acq_rel last drop ends it */
    mqtt_broker *b;
    hm_addr *conn;
    uint64_t seq;
};

mqtt_receipt *mqtt_receipt_create(mqtt_broker *b, hm_addr *conn, uint64_t seq)
{
    mqtt_receipt *r = hm_alloc(sizeof *r);

    atomic_init(&r->units, 1);
    r->b = b;
    r->conn = hm_addr_ref(conn);
    r->seq = seq;
    return r;
}

mqtt_receipt *mqtt_receipt_ref(mqtt_receipt *r)
{
    /* relaxed: the caller holds a unit, so `r` is alive; the unit is
     * handed on with a message, whose send orders it. */
    atomic_fetch_add_explicit(&r->units, 1, memory_order_relaxed);
    return r;
}

bool mqtt_receipt_drop(mqtt_receipt *r)
{
    /* acq_rel: pairs with the other holders' releases, so whoever drops
     * the last unit sees their commits done before it acknowledges. */
    if (atomic_fetch_sub_explicit(&r->units, 1, memory_order_acq_rel) != 1)
        return false;
    hm_addr_release(r->conn);
    hm_free(r);
    return true;
}

void mqtt_receipt_release(void *ptr)
{
    mqtt_receipt *r = ptr;
    hm_runtime *rt;
    hm_addr *conn;
    uint64_t seq;

    if (!r)
        return;
    rt = r->b->rt;
    conn = hm_addr_ref(r->conn);
    seq = r->seq;
    if (mqtt_receipt_drop(r)) {
        hm_msg *m = hm_msg_create(&mqtt_durable_type, NULL, seq);

        /* The connection may be gone: then nobody waits for the ack. */
        if (hm_runtime_send(rt, conn, m) != HM_OK)
            hm_msg_destroy(m);
    }
    hm_addr_release(conn);
}

/* ---------------------------------------------------------- operations */

typedef enum { OP_SESSION, OP_RETAINED, OP_INBOUND } op_kind;

typedef struct persist_op {
    op_kind kind;
    char *key; /* client id, or topic (NUL-terminated) */
    size_t key_len;
    uint8_t *data; /* record or payload; NULL: delete */
    size_t len;
    uint8_t qos;
    uint16_t packet_id;
    bool add;
    hm_addr *reply_to; /* sessions: told "mqtt.saved"(save) */
    uint64_t save;
    mqtt_receipt **receipts;
    size_t receipt_count;
    struct persist_op *next; /* the saver's batch */
} persist_op;

static void op_free(void *p)
{
    persist_op *op = p;

    if (!op)
        return;
    for (size_t i = 0; i < op->receipt_count; i++)
        mqtt_receipt_release(op->receipts[i]);
    hm_free(op->receipts);
    hm_addr_release(op->reply_to);
    hm_free(op->key);
    hm_free(op->data);
    hm_free(op);
}

static const hm_type persist_op_type = {.name = "mqtt.persist",
                                        .free = op_free};
static const hm_type commit_type = {.name = "mqtt.commit"};
const hm_type mqtt_durable_type = {.name = "mqtt.durable"};
const hm_type mqtt_saved_type = {.name = "mqtt.saved"};
const hm_type mqtt_flush_type = {.name = "mqtt.flush"};

/* Sends `op` (taken) to the saver. If it cannot be (the runtime is
 * closing), its receipts are released: nobody is left to wait on them.
 * By name, not through an address kept in the broker: an address must
 * not be released after the runtime is gone, and ops can be sent while
 * it closes. */
static void send_op(mqtt_broker *b, persist_op *op)
{
    hm_msg *m = hm_msg_create(&persist_op_type, op, 0);

    if (hm_runtime_send_name(b->rt, SAVER_NAME, m) != HM_OK)
        hm_msg_destroy(m);
}

void mqtt_saver_retained(mqtt_broker *b, const mqtt_pub *pub)
{
    persist_op *op;

    if (!b->persist || pub->topic[0] == '$')
        return;
    op = hm_calloc(1, sizeof *op);
    op->kind = OP_RETAINED;
    op->key = hm_strndup(pub->topic, pub->topic_len);
    op->key_len = pub->topic_len;
    if (pub->payload_len) {
        op->data = hm_alloc(pub->payload_len);
        memcpy(op->data, pub->payload, pub->payload_len);
    }
    op->len = pub->payload_len;
    op->qos = pub->qos;
    if (pub->receipt) {
        op->receipts = hm_alloc(sizeof *op->receipts);
        op->receipts[op->receipt_count++] = mqtt_receipt_ref(pub->receipt);
    }
    send_op(b, op);
}

void mqtt_saver_inbound(mqtt_broker *b, const char *client_id, uint16_t pid,
                        bool add, mqtt_receipt *r)
{
    persist_op *op = hm_calloc(1, sizeof *op);

    op->kind = OP_INBOUND;
    op->key = hm_strdup(client_id);
    op->packet_id = pid;
    op->add = add;
    if (r) {
        op->receipts = hm_alloc(sizeof *op->receipts);
        op->receipts[op->receipt_count++] = r;
    }
    send_op(b, op);
}

void mqtt_saver_session(mqtt_broker *b, const char *client_id,
                        uint8_t *record, size_t len, hm_addr *reply_to,
                        uint64_t save, mqtt_receipt **receipts, size_t n)
{
    persist_op *op = hm_calloc(1, sizeof *op);

    op->kind = OP_SESSION;
    op->key = hm_strdup(client_id);
    op->data = record;
    op->len = len;
    op->reply_to = reply_to ? hm_addr_ref(reply_to) : NULL;
    op->save = save;
    op->receipts = receipts;
    op->receipt_count = n;
    send_op(b, op);
}

/* --------------------------------------------------- the saver receiver */

typedef struct saver {
    mqtt_broker *b;
    persist_op *head, *tail; /* the batch, in arrival order */
    bool commit_queued;      /* "mqtt.commit" is on its way to us */
    bool failing;            /* the last commit failed (logged once) */
    uint64_t commits, ops;   /* for the log line at exit */
} saver;

static hm_err apply(mqtt_persist *p, const persist_op *op)
{
    switch (op->kind) {
    case OP_SESSION:
        return mqtt_persist_put_session(p, op->key, op->data, op->len);
    case OP_RETAINED:
        return mqtt_persist_put_retained(p, op->key, op->key_len, op->data,
                                         op->len, op->qos);
    case OP_INBOUND:
        return mqtt_persist_inbound(p, op->key, op->packet_id, op->add);
    }
    return HM_EINVAL;
}

static hm_err commit_batch(saver *sv)
{
    mqtt_persist *p = sv->b->persist;
    hm_err err = mqtt_persist_begin(p);

    for (persist_op *op = sv->head; err == HM_OK && op; op = op->next)
        err = apply(p, op);
    if (err == HM_OK)
        return mqtt_persist_commit(p);
    mqtt_persist_rollback(p);
    return err;
}

static void queue_commit(hm_ctx *ctx, saver *sv, uint32_t delay_ms)
{
    hm_msg *m = hm_msg_create(&commit_type, NULL, 0);
    hm_err err = delay_ms
                     ? hm_runtime_send_after(hm_ctx_runtime(ctx),
                                             hm_ctx_self(ctx), m, delay_ms,
                                             NULL)
                     : hm_ctx_send(ctx, hm_ctx_self(ctx), m);

    if (err != HM_OK)
        hm_msg_destroy(m);
    else
        sv->commit_queued = true;
}

/* Commits the batch; on success tells the sessions and releases the
 * receipts, on failure keeps it all and tries again later (nothing is
 * acknowledged meanwhile: that is what `always` promises). */
static void on_commit(hm_ctx *ctx, saver *sv)
{
    persist_op *op;

    sv->commit_queued = false;
    if (!sv->head)
        return;
    if (commit_batch(sv) != HM_OK) {
        if (!sv->failing)
            HM_LOG_ERROR("MQTT-PERSIST-FAIL",
                         "%s: commit failed; acknowledgements wait, "
                         "retrying every %u ms",
                         mqtt_persist_where(sv->b->persist), RETRY_MS);
        sv->failing = true;
        queue_commit(ctx, sv, RETRY_MS);
        return;
    }
    if (sv->failing)
        HM_LOG_INFO("MQTT-PERSIST-FAIL", "%s: commits work again",
                    mqtt_persist_where(sv->b->persist));
    sv->failing = false;
    sv->commits++;
    while ((op = sv->head)) {
        sv->head = op->next;
        sv->ops++;
        if (op->reply_to) {
            hm_msg *m = hm_msg_create(&mqtt_saved_type, NULL, op->save);

            if (hm_ctx_send(ctx, op->reply_to, m) != HM_OK)
                hm_msg_destroy(m);
        }
        op_free(op);
    }
    sv->tail = NULL;
}

/* -> saver: member `payload` (an owned name) died (fail-over below). */
static const hm_type failover_type = {.name = "mqtt.failover",
                                      .free = hm_free};
static void on_failover(mqtt_broker *b, const char *node);

static hm_err saver_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    saver *sv = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &persist_op_type) {
        persist_op *op = hm_msg_take_payload(msg);

        op->next = NULL;
        if (sv->tail)
            sv->tail->next = op;
        else
            sv->head = op;
        sv->tail = op;
        if (!sv->commit_queued)
            queue_commit(ctx, sv, 0);
    } else if (t == &commit_type) {
        on_commit(ctx, sv);
    } else if (t == &failover_type && hm_msg_payload(msg)) {
        on_failover(sv->b, hm_msg_payload(msg));
    }
    return HM_OK;
}

static void saver_deactivate(hm_ctx *ctx, void *state,
                             hm_deactivate_reason why)
{
    saver *sv = state;
    persist_op *op;

    (void)ctx;
    (void)why;
    if (sv->head && commit_batch(sv) != HM_OK)
        HM_LOG_ERROR("MQTT-PERSIST-FAIL", "%s: the last batch was lost",
                     mqtt_persist_where(sv->b->persist));
    while ((op = sv->head)) {
        sv->head = op->next;
        op_free(op);
    }
    /* How well commits were grouped: operations per commit. */
    HM_LOG_INFO("MQTT-PERSIST", "%s: %llu commits of %llu operations",
                mqtt_persist_where(sv->b->persist),
                (unsigned long long)sv->commits,
                (unsigned long long)sv->ops);
    hm_free(sv);
}

static const hm_hooks saver_hooks = {.deactivate = saver_deactivate};

/* ------------------------------------------------------------ start-up */

/* What the load collects before anything is restored. */
typedef struct loaded {
    mqtt_broker *b;
    struct loaded_session {
        char *client_id;
        uint8_t *record;
        size_t len;
        mqtt_qos2_ids inbound;
    } *sessions;
    size_t count, cap;
    bool here_only;   /* fail-over: keep the sessions placed here */
    size_t elsewhere; /* fail-over: those placed on other members */
} loaded;

/* Whether session `client_id`'s name places on this node now. */
static bool placed_here(mqtt_broker *b, const char *client_id)
{
    char name[HM_ADDR_MAX_LEN + 1];
    char where[HM_NODE_NAME_MAX + 1];

    return snprintf(name, sizeof name, MQTT_SESSION_PREFIX "%s",
                    client_id) < (int)sizeof name &&
           hm_node_lookup(b->node, name, where) == HM_OK &&
           strcmp(where, hm_node_name(b->node)) == 0;
}

static struct loaded_session *find_loaded(loaded *l, const char *client_id)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->sessions[i].client_id, client_id) == 0)
            return &l->sessions[i];
    return NULL;
}

static const char *load_session(void *arg, const char *client_id,
                                const uint8_t *record, size_t len)
{
    loaded *l = arg;
    mqtt_session_state st;
    const char *why = NULL;
    struct loaded_session *ls;

    if (mqtt_session_state_decode(record, len, &st, &why) != HM_OK)
        return why;
    if (st.client_id.len != strlen(client_id) ||
        memcmp(st.client_id.ptr, client_id, st.client_id.len) != 0)
        why = "a session record filed under another client id";
    mqtt_session_state_fini(&st);
    if (why)
        return why;
    if (l->here_only && !placed_here(l->b, client_id)) {
        l->elsewhere++; /* another member restores it */
        return NULL;
    }
    /* A state its relay here kept of a move away (ADR 0225) may come back
     * too: the session keeps whichever is newer (docs/adr/0290). */
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->sessions = hm_realloc(l->sessions, l->cap * sizeof *l->sessions);
    }
    ls = &l->sessions[l->count++];
    memset(ls, 0, sizeof *ls);
    ls->client_id = hm_strdup(client_id);
    ls->record = hm_alloc(len);
    memcpy(ls->record, record, len);
    ls->len = len;
    return NULL;
}

static const char *load_retained(void *arg, const char *topic,
                                 size_t topic_len, const uint8_t *payload,
                                 size_t payload_len, uint8_t qos)
{
    loaded *l = arg;

    mqtt_retain_set(l->b->retained, topic, topic_len, payload, payload_len,
                    qos);
    return NULL;
}

static const char *load_inbound(void *arg, const char *client_id,
                                uint16_t packet_id)
{
    struct loaded_session *ls = find_loaded(arg, client_id);

    /* Ids of a client without a session record: a session that ended
     * while its ids were being written; nothing to restore them into. */
    if (ls)
        mqtt_qos2_ids_receive(&ls->inbound, packet_id);
    return NULL;
}

static void loaded_fini(loaded *l)
{
    for (size_t i = 0; i < l->count; i++) {
        hm_free(l->sessions[i].client_id);
        hm_free(l->sessions[i].record);
        mqtt_qos2_ids_fini(&l->sessions[i].inbound);
    }
    hm_free(l->sessions);
}

static hm_err open_store(mqtt_broker *b, mqtt_file_error *fe)
{
    const char *redis = b->cfg.persistence_redis;
    char host[256];
    const char *colon;
    long port;

    if (!redis)
        return mqtt_persist_open_sqlite(b->cfg.persistence_location,
                                        &b->persist, fe);
    colon = strrchr(redis, ':');
    port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (!colon || (size_t)(colon - redis) >= sizeof host || port < 1 ||
        port > 65535) {
        mqtt_file_error_set(fe, "persistence_redis: want HOST:PORT, got %s",
                            redis);
        return HM_EINVAL;
    }
    memcpy(host, redis, (size_t)(colon - redis));
    host[colon - redis] = '\0';
    return mqtt_persist_open_redis(host, (int)port, NULL,
                                   b->node ? hm_node_name(b->node) : NULL,
                                   &b->persist, fe);
}

/* Sends each loaded session its record (`adopt`: saved here from now
 * on); the factory makes the receiver. */
static hm_err send_restores(mqtt_broker *b, loaded *l, bool adopt)
{
    char name[HM_ADDR_MAX_LEN + 1];

    for (size_t i = 0; i < l->count; i++) {
        struct loaded_session *ls = &l->sessions[i];
        mqtt_restore *r = hm_calloc(1, sizeof *r);
        hm_msg *m;

        r->record = ls->record;
        r->len = ls->len;
        r->inbound = ls->inbound;
        r->adopt = adopt;
        ls->record = NULL;
        memset(&ls->inbound, 0, sizeof ls->inbound);
        m = hm_msg_create(&mqtt_restore_type, r, 0);
        snprintf(name, sizeof name, MQTT_SESSION_PREFIX "%s", ls->client_id);
        if (hm_runtime_send_name(b->rt, name, m) != HM_OK) {
            HM_LOG_ERROR("MQTT-PERSIST", "cannot restore session %s",
                         ls->client_id);
            hm_msg_destroy(m);
            return HM_ESTORE;
        }
    }
    return HM_OK;
}

/* At start: their subscriptions must be in the tree before anyone
 * publishes. */
static hm_err restore_sessions(mqtt_broker *b, loaded *l)
{
    hm_err err = send_restores(b, l, false);

    return err != HM_OK ? err : hm_runtime_wait_idle(b->rt, RESTORE_WAIT_MS);
}

/* ----------------------------------------------------------- fail-over */

void mqtt_saver_failover(mqtt_broker *b, const char *node)
{
    hm_msg *m;

    if (!b->persist || !b->cfg.persistence_redis || !b->node)
        return;
    m = hm_msg_create(&failover_type, hm_strdup(node), 0);
    if (hm_runtime_send_name(b->rt, SAVER_NAME, m) != HM_OK)
        hm_msg_destroy(m);
}

/* On the saver (which owns the store): member `node` died; its sessions
 * that place here now are read from the store and restored, each saving
 * itself under this node at once (docs/adr/0160). */
static void on_failover(mqtt_broker *b, const char *node)
{
    mqtt_file_error fe = {{0}};
    loaded l = {.b = b, .here_only = true};
    hm_err err = mqtt_persist_load_node(
        b->persist, node,
        &(mqtt_persist_visitor){.session = load_session,
                                .inbound = load_inbound,
                                .arg = &l},
        &fe);

    if (err == HM_OK)
        err = send_restores(b, &l, true);
    if (err != HM_OK)
        HM_LOG_ERROR("MQTT-FAILOVER", "member %s died; its sessions cannot "
                     "be restored here: %s", node,
                     fe.text[0] ? fe.text : hm_err_str(err));
    else
        HM_LOG_INFO("MQTT-FAILOVER", "member %s died: %zu of its stored "
                    "sessions restored here, %zu placed on other members",
                    node, l.count, l.elsewhere);
    loaded_fini(&l);
}

hm_err mqtt_saver_start(mqtt_broker *b)
{
    mqtt_file_error fe = {{0}};
    loaded l = {.b = b};
    hm_err err;

    if (!b->cfg.persistence_location && !b->cfg.persistence_redis)
        return HM_OK;
    b->durable_always = !b->cfg.persistence_interval;
    b->autosave_ms = b->cfg.autosave_interval_ms;
    if ((err = open_store(b, &fe)) != HM_OK ||
        (err = mqtt_persist_load(
             b->persist,
             &(mqtt_persist_visitor){.session = load_session,
                                     .retained = load_retained,
                                     .inbound = load_inbound,
                                     .arg = &l},
             &fe)) != HM_OK) {
        HM_LOG_ERROR("MQTT-PERSIST", "%s", fe.text);
        loaded_fini(&l);
        return HM_ESTORE;
    }
    saver *sv = hm_calloc(1, sizeof *sv);

    sv->b = b;
    err = hm_runtime_spawn(b->rt, SAVER_NAME,
                           &(hm_receiver){.handler = saver_handle,
                                          .state = sv,
                                          .hooks = &saver_hooks,
                                          .pinned = true},
                           NULL);
    if (err != HM_OK) {
        hm_free(sv);
        loaded_fini(&l);
        return err;
    }
    HM_LOG_INFO("MQTT-PERSIST",
                "%s: %zu sessions and %zu retained messages restored; "
                "durability %s",
                mqtt_persist_where(b->persist), l.count,
                mqtt_retain_count(b->retained),
                b->durable_always ? "always" : "interval");
    err = restore_sessions(b, &l);
    loaded_fini(&l);
    return err;
}

/* ------------------------------------------------------------ shutdown */

typedef struct names {
    char **v;
    size_t count, cap;
} names;

static void collect_session(void *arg, const char *name)
{
    names *n = arg;

    if (strncmp(name, MQTT_SESSION_PREFIX, strlen(MQTT_SESSION_PREFIX)) != 0)
        return;
    if (n->count == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 16;
        n->v = hm_realloc(n->v, n->cap * sizeof *n->v);
    }
    n->v[n->count++] = hm_strdup(name);
}

void mqtt_saver_stop(mqtt_broker *b)
{
    names n = {0};

    if (!b->persist || !b->rt)
        return;
    /* Collected first: the walk holds the directory's locks. */
    hm_runtime_foreach_active(b->rt, collect_session, &n);
    for (size_t i = 0; i < n.count; i++) {
        hm_msg *m = hm_msg_create(&mqtt_flush_type, NULL, 1);

        if (hm_runtime_send_name(b->rt, n.v[i], m) != HM_OK)
            hm_msg_destroy(m);
        hm_free(n.v[i]);
    }
    hm_free(n.v);
    hm_runtime_wait_idle(b->rt, STOP_WAIT_MS);
}

void mqtt_saver_close(mqtt_broker *b)
{
    mqtt_persist_close(b->persist);
    b->persist = NULL;
}
