/* apps/mqtt/broker.c: the broker's assembly and its shared state: the
 * runtime and net it runs on, the listener, the factory for session
 * receivers, the routing of a publish to its subscribers, and the message
 * types the receivers exchange.
 *
 * The key decision (ADR 0050) is that routing runs on the publisher's own
 * receiver: a connection receiver matches its PUBLISH against the
 * subscription tree under the tree's read lock and sends one message per
 * matching session, so publishes from different clients are routed on
 * different workers at the same time, and no receiver sits in the middle
 * of every publish. Subscribing and unsubscribing (rare next to
 * publishing) take the write lock. */
#include "apps/mqtt/broker_impl.h"

#include "apps/mqtt/admit.h"
#include "apps/mqtt/cluster.h"
#include "apps/mqtt/outbox.h"
#include "apps/mqtt/ws.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

#define DEFAULT_PORT 1883
#define DEFAULT_MAX_INFLIGHT 20u
#define DEFAULT_MAX_QUEUED 1000u
#define MAX_PACKET_LEN (MQTT_MAX_REMAINING_LEN + MQTT_MAX_FIXED_HEADER_LEN)
#define WS_READ_LEN (64u * 1024u)
#define DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define DEFAULT_SYS_INTERVAL_S 10u
#define CONN_LINGER_MS 1000u
#define MQTT_INLINE_TURNS 3u /* see hm_net_config.inline_turns */

/* ------------------------------------------------ a published message */

mqtt_pub *mqtt_pub_create(const void *topic, size_t topic_len,
                          const void *payload, size_t payload_len, uint8_t qos,
                          bool retain)
{
    mqtt_pub *p = hm_alloc(sizeof *p + topic_len + 1 + payload_len);

    atomic_init(&p->refs, 1);
    p->qos = qos;
    p->retain = retain;
    p->topic_len = topic_len;
    p->payload_len = payload_len;
    p->receipt = NULL;
    p->origin = p->seq = 0;
    p->topic = (char *)(p + 1);
    memcpy(p->topic, topic, topic_len);
    p->topic[topic_len] = '\0';
    p->payload = (uint8_t *)p->topic + topic_len + 1;
    if (payload_len)
        memcpy(p->payload, payload, payload_len);
    return p;
}

mqtt_pub *mqtt_pub_ref(mqtt_pub *p)
{
    /* relaxed: the caller already holds a reference, so the object is
     * alive and its fields were published to this thread with it. */
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void mqtt_pub_release(void *ptr)
{
    mqtt_pub *p = ptr;

    /* acq_rel: the release orders this holder's reads of the message
     * before the free; the acquire on the last decrement pairs with every
     * other holder's release, so the freeing thread sees them done. */
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        hm_free(p);
}

/* ------------------------------------------------------------- routing */

void mqtt_broker_route(mqtt_broker *b, hm_ctx *ctx, mqtt_deliveries *d,
                       mqtt_pub *pub, bool retain)
{
    if (b->cluster) { /* the same, plus the other nodes (cluster.c) */
        mqtt_cluster_route(b->cluster, ctx, d, pub, retain);
        return;
    }
    if (retain && !b->cfg.retain_unavailable) {
        /* Held across the routing: a SUBSCRIBE gets this message either
         * from the store or from the route, never from both (ADR 0255). */
        pthread_rwlock_wrlock(&b->retain_lock);
        mqtt_retain_set(b->retained, pub->topic, pub->topic_len, pub->payload,
                        pub->payload_len, pub->qos);
        mqtt_broker_route_local(b, ctx, d, pub);
        pthread_rwlock_unlock(&b->retain_lock);
        mqtt_saver_retained(b, pub); /* persistence: no-op when off */
        return;
    }
    mqtt_broker_route_local(b, ctx, d, pub);
}

void mqtt_broker_route_local(mqtt_broker *b, hm_ctx *ctx, mqtt_deliveries *d,
                             mqtt_pub *pub)
{
    /* Sending under the read lock is what keeps the tokens valid: a
     * subscriber token is its session's address, whose reference the
     * session drops only after removing its subscriptions under the write
     * lock (session.c). Sends never block, so the lock is held briefly. */
    pthread_rwlock_rdlock(&b->tree_lock);
    mqtt_topic_tree_match(b->tree, pub->topic, pub->topic_len, d);
    for (size_t i = 0; i < d->count; i++) {
        hm_addr *to = (hm_addr *)(uintptr_t)d->items[i].subscriber;
        hm_msg *m = hm_msg_create(&mqtt_deliver_type, mqtt_pub_ref(pub),
                                  d->items[i].qos);

        if (pub->receipt) /* the delivery owns a unit (saver.c) */
            mqtt_receipt_ref(pub->receipt);
        if (hm_ctx_send(ctx, to, m) != HM_OK) {
            hm_msg_destroy(m);
            mqtt_receipt_release(pub->receipt);
        }
    }
    pthread_rwlock_unlock(&b->tree_lock);
}

hm_err mqtt_packet_bytes(bool ws, const mqtt_packet *p, uint8_t **buf_out,
                         size_t *len_out)
{
    uint8_t head[MQTT_WS_MAX_HEADER_LEN];
    size_t len, written, head_len = 0;
    uint8_t *buf;
    hm_err err;

    if ((err = mqtt_encoded_len(p, &len)) != HM_OK)
        return err;
    if (ws) /* one packet, one final binary frame [MQTT-6.0.0-2] */
        head_len =
            mqtt_ws_frame_header(&(mqtt_ws_frame){.opcode = MQTT_WS_OP_BINARY,
                                                  .fin = true,
                                                  .payload = {NULL, len}},
                                 head);
    buf = hm_alloc(head_len + len);
    memcpy(buf, head, head_len);
    if ((err = mqtt_encode(p, buf + head_len, len, &written)) != HM_OK) {
        hm_free(buf);
        return err;
    }
    *buf_out = buf;
    *len_out = head_len + written;
    return HM_OK;
}

hm_err mqtt_write_packet(hm_conn *c, bool ws, const mqtt_packet *p)
{
    uint8_t *buf;
    size_t len;
    hm_err err;

    if ((err = mqtt_packet_bytes(ws, p, &buf, &len)) != HM_OK)
        return err;
    if ((err = hm_conn_write_take(c, buf, len)) != HM_OK)
        hm_free(buf);
    return err;
}

/* ------------------------------------------------------ authentication */

int mqtt_broker_authenticate(mqtt_broker *b, const mqtt_connect *k)
{
    mqtt_connack_code code;

    pthread_rwlock_rdlock(&b->auth_lock);
    code = mqtt_admit(
        &(mqtt_admission){.allow_anonymous = !b->cfg.anonymous_denied,
                          .max_keepalive = b->cfg.max_keepalive_s
                                               ? b->cfg.max_keepalive_s
                                               : 65535,
                          .passwords = b->passwd},
        k);
    pthread_rwlock_unlock(&b->auth_lock);
    return (int)code;
}

bool mqtt_broker_allows(mqtt_broker *b, const mqtt_acl_client *who,
                        mqtt_acl_access access, const char *topic, size_t len)
{
    bool ok = true;

    if (!b->acl_file)
        return true; /* no ACL configured: no lock taken either */
    pthread_rwlock_rdlock(&b->auth_lock);
    if (b->acl)
        ok = mqtt_acl_check(b->acl, who, access, topic, len);
    pthread_rwlock_unlock(&b->auth_lock);
    return ok;
}

/* Loads the configured files into `*pw` and `*acl` (owned on HM_OK). */
static hm_err load_auth(mqtt_broker *b, mqtt_passwd **pw, mqtt_acl **acl)
{
    mqtt_file_error fe = {{0}};
    hm_err err = HM_OK;

    *pw = NULL;
    *acl = NULL;
    if (b->password_file &&
        (err = mqtt_passwd_load(b->password_file, pw, &fe)) != HM_OK) {
        HM_LOG_ERROR("MQTT-PASSWD", "%s", fe.text);
        return err;
    }
    if (b->acl_file && (err = mqtt_acl_load(b->acl_file, acl, &fe)) != HM_OK) {
        HM_LOG_ERROR("MQTT-ACL", "%s", fe.text);
        mqtt_passwd_destroy(*pw);
        *pw = NULL;
    }
    return err;
}

hm_err mqtt_broker_reload(mqtt_broker *b)
{
    mqtt_passwd *pw, *old_pw;
    mqtt_acl *acl, *old_acl;
    hm_err err = load_auth(b, &pw, &acl);

    if (err != HM_OK) {
        HM_LOG_WARN("MQTT-RELOAD", "kept the previous password and ACL "
                                   "files");
        return err;
    }
    pthread_rwlock_wrlock(&b->auth_lock);
    old_pw = b->passwd;
    old_acl = b->acl;
    b->passwd = pw;
    b->acl = acl;
    pthread_rwlock_unlock(&b->auth_lock);
    mqtt_passwd_destroy(old_pw);
    mqtt_acl_destroy(old_acl);
    HM_LOG_INFO("MQTT-RELOAD", "password and ACL files reloaded");
    return HM_OK;
}

/* ------------------------------------------------------------ framing */

/* The MQTT framer as net's hm_framer: a frame is a whole packet, fixed
 * header included, because mqtt_decode() wants the packet entire. */
static hm_err frame_next(const void *arg, const uint8_t *buf, size_t len,
                         size_t *resume, hm_frame *out)
{
    size_t packet_len;
    hm_err err = mqtt_frame(buf, len, arg, &packet_len, NULL);

    (void)resume;
    if (err != HM_OK)
        return err;
    *out = (hm_frame){.offset = 0, .len = packet_len, .consumed = packet_len};
    return HM_OK;
}

/* WebSocket connections are framed by the connection receiver (the
 * handshake, then ws.h's decoder), so net hands over bytes as they come. */
static hm_err raw_next(const void *arg, const uint8_t *buf, size_t len,
                       size_t *resume, hm_frame *out)
{
    (void)arg;
    (void)resume;
    (void)buf;
    if (len == 0)
        return HM_EAGAIN;
    *out = (hm_frame){.offset = 0, .len = len, .consumed = len};
    return HM_OK;
}

/* ------------------------------------------------ factory and accept */

static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    size_t plen = strlen(MQTT_SESSION_PREFIX);

    /* Connection receivers are spawned, never made here: a timer or a
     * message that outlived its connection goes to dead letters. */
    if (strncmp(name, MQTT_FALLBACK_PREFIX, strlen(MQTT_FALLBACK_PREFIX)) ==
        0) { /* cluster mode, a partition (session_cluster.c) */
        mqtt_session_make(arg, name + strlen(MQTT_FALLBACK_PREFIX), out);
        return HM_OK;
    }
    if (strncmp(name, MQTT_INBOX_PREFIX, strlen(MQTT_INBOX_PREFIX)) == 0) {
        mqtt_inbox_make(arg, out); /* a session moving here (cluster) */
        return HM_OK;
    }
    if (strncmp(name, MQTT_FWD_PREFIX, strlen(MQTT_FWD_PREFIX)) == 0) {
        mqtt_relay_make(arg, out); /* a session moved away (cluster) */
        return HM_OK;
    }
    if (strncmp(name, MQTT_SESSION_PREFIX, plen) != 0)
        return HM_ENOTFOUND;
    mqtt_session_make(arg, name + plen, out);
    return HM_OK;
}

static hm_err on_accept(void *arg, uint64_t conn_id, const char *peer,
                        hm_addr **owner_out)
{
    mqtt_endpoint *ep = arg;
    mqtt_broker *b = ep->b;
    char name[sizeof MQTT_CONN_PREFIX + HM_NODE_NAME_MAX + 24];
    void *state;
    hm_err err;

    /* relaxed: a statistic; the limit is approximate under a burst. */
    if (b->cfg.max_connections &&
        atomic_load_explicit(&b->conns_open, memory_order_relaxed) >=
            b->cfg.max_connections) {
        HM_LOG_WARN("MQTT-CONN-LIMIT", "refusing %s: %u connections", peer,
                    b->cfg.max_connections);
        return HM_EFULL;
    }
    /* In a cluster the name says which node the connection is on, so a
     * session on another node reaches it (session_cluster.c). */
    if (b->node)
        mqtt_conn_name_format(name, sizeof name, hm_node_name(b->node),
                              conn_id);
    else
        snprintf(name, sizeof name, MQTT_CONN_PREFIX "%llu",
                 (unsigned long long)conn_id);
    state = mqtt_conn_state_create(b, conn_id, ep->ws);
    err = hm_runtime_spawn(b->rt, name,
                           &(hm_receiver){.handler = mqtt_conn_handle,
                                          .state = state,
                                          .hooks = &mqtt_conn_hooks,
                                          .pinned = true,
                                          .runs_anywhere = true},
                           owner_out);
    if (err != HM_OK) {
        mqtt_conn_state_destroy(state);
        return err;
    }
    HM_LOG_DEBUG("MQTT-ACCEPT", "connection %llu from %s",
                 (unsigned long long)conn_id, peer);
    return HM_OK;
}

/* ---------------------------------------------------------- lifecycle */

static void fill_defaults(mqtt_broker_config *c)
{
    if (c->port == 0)
        c->port = DEFAULT_PORT;
    if (c->port < 0)
        c->port = 0;
    if (c->max_inflight == 0)
        c->max_inflight = DEFAULT_MAX_INFLIGHT;
    if (c->max_queued == 0)
        c->max_queued = DEFAULT_MAX_QUEUED;
    if (c->max_packet_len == 0 || c->max_packet_len > MAX_PACKET_LEN)
        c->max_packet_len = MAX_PACKET_LEN;
    if (c->connect_timeout_ms == 0)
        c->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->sys_interval_s == 0)
        c->sys_interval_s = DEFAULT_SYS_INTERVAL_S;
    if (c->max_qos == 0)
        c->max_qos = 2;
    else if (c->max_qos > 2)
        c->max_qos = 0;
}

static void init_shared(mqtt_broker *b)
{
    pthread_rwlockattr_t attr;

    /* Writer preference: a steady stream of publishers (readers) must not
     * starve a SUBSCRIBE (a writer) forever. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&b->tree_lock, &attr);
    pthread_rwlock_init(&b->retain_lock, &attr);
    pthread_rwlock_init(&b->auth_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    b->tree = mqtt_topic_tree_create();
    b->retained = mqtt_retain_create();
}

static hm_err listen_one(mqtt_broker *b, mqtt_endpoint *ep, const char *host,
                         int port)
{
    hm_err err = hm_net_listen(
        b->net,
        &(hm_listen_config){
            .host = host,
            .port = port,
            .accept = on_accept,
            .accept_arg = ep,
            /* Until CONNECT sets the keepalive, net closes a connection
             * that sends nothing for the CONNECT timeout (ADR 0150). */
            .conn = {.framer = ep->ws ? &b->ws_framer : &b->framer,
                     .linger_ms = CONN_LINGER_MS,
                     .idle_timeout_ms = b->cfg.connect_timeout_ms}},
        &ep->listener);
    const char *what = ep->ws ? "websockets" : "mqtt";

    if (err != HM_OK) {
        HM_LOG_ERROR("MQTT-LISTEN", "cannot listen (%s) on %s port %d: %s",
                     what, host ? host : "*", port, hm_err_str(err));
        return err;
    }
    ep->port = hm_listener_port(ep->listener);
    HM_LOG_INFO("MQTT-LISTEN", "listening (%s) on %s port %d", what,
                host ? host : "*", ep->port);
    return HM_OK;
}

static hm_err start_listening(mqtt_broker *b, const mqtt_broker_config *cfg)
{
    size_t n = cfg->listener_count ? cfg->listener_count : 1;

    b->endpoints = hm_calloc(n, sizeof *b->endpoints);
    for (size_t i = 0; i < n; i++) {
        const mqtt_listener_config *l =
            cfg->listener_count ? &cfg->listeners[i] : NULL;
        mqtt_endpoint *ep = &b->endpoints[i];
        hm_err err;

        ep->b = b;
        ep->ws = l && l->protocol == MQTT_PROTO_WEBSOCKETS;
        err = l ? listen_one(b, ep, l->bind_address, l->port)
                : listen_one(b, ep, b->host, b->cfg.port);
        if (err != HM_OK)
            return err;
        b->endpoint_count++;
    }
    return HM_OK;
}

hm_err mqtt_broker_create(const mqtt_broker_config *cfg, mqtt_broker **out)
{
    mqtt_broker *b = hm_calloc(1, sizeof *b);
    hm_err err;

    b->cfg = *cfg;
    fill_defaults(&b->cfg);
    b->host = cfg->host ? hm_strdup(cfg->host) : NULL;
    b->password_file =
        cfg->password_file ? hm_strdup(cfg->password_file) : NULL;
    b->acl_file = cfg->acl_file ? hm_strdup(cfg->acl_file) : NULL;
    b->persistence_location = cfg->persistence_location
                                  ? hm_strdup(cfg->persistence_location)
                                  : NULL;
    b->persistence_redis =
        cfg->persistence_redis ? hm_strdup(cfg->persistence_redis) : NULL;
    b->cfg.persistence_location = b->persistence_location;
    b->cfg.persistence_redis = b->persistence_redis;
    b->cfg.host = b->host;
    b->cfg.password_file = b->password_file;
    b->cfg.acl_file = b->acl_file;
    b->cfg.listeners = NULL; /* borrowed for this call only */
    b->cfg.node_name = NULL; /* the cluster module copies these */
    b->cfg.cluster_name = b->cfg.cluster_listen = NULL;
    b->cfg.cluster_join = NULL;
    b->cfg.cluster_secret_file = NULL;
    b->limits.max_packet_len = b->cfg.max_packet_len;
    b->framer = (hm_framer){.name = "mqtt",
                            .next = frame_next,
                            .arg = &b->limits,
                            .max_frame_len = b->cfg.max_packet_len};
    b->ws_framer = (hm_framer){
        .name = "raw", .next = raw_next, .max_frame_len = WS_READ_LEN};
    init_shared(b);
    if ((err = load_auth(b, &b->passwd, &b->acl)) != HM_OK)
        goto fail;
    /* Cluster mode: node, runtime (with the node's factory around ours),
     * net, then the node starts (cluster/node.h's order). */
    if (cfg->node_name &&
        (err = mqtt_cluster_create(b, cfg, factory, b, &b->cluster)) != HM_OK)
        goto fail;
    b->node = b->cluster ? mqtt_cluster_node(b->cluster) : NULL;
    err = hm_runtime_create(
        &(hm_runtime_config){
            .threads = cfg->threads,
            .factory = b->cluster ? hm_node_factory : factory,
            .factory_arg = b->cluster ? (void *)mqtt_cluster_node(b->cluster)
                                      : (void *)b},
        &b->rt);
    if (err != HM_OK)
        goto fail;
    b->start_ms = hm_runtime_now_ms(b->rt);
    if ((err = mqtt_saver_start(b)) != HM_OK)
        goto fail;
    /* A publish at light load runs on the I/O thread that read it: the
     * publisher's connection (decode, route), the subscriber's session
     * (its write) and one more, without waking a worker (ADR 0175). Every
     * handler here is non-blocking (persistence is the saver's thread). */
    err = hm_net_create(&(hm_net_config){.rt = b->rt,
                                         .io_threads = cfg->io_threads,
                                         .inline_turns = MQTT_INLINE_TURNS},
                        &b->net);
    if (err != HM_OK)
        goto fail;
    if (b->cluster &&
        (err = mqtt_cluster_start(b->cluster, b->rt, b->net)) != HM_OK)
        goto fail;
    if (!b->cfg.sys_disabled && (err = mqtt_sys_start(b)) != HM_OK)
        goto fail;
    if ((err = start_listening(b, cfg)) != HM_OK)
        goto fail;
    *out = b;
    return HM_OK;

fail:
    mqtt_broker_destroy(b);
    return err;
}

int mqtt_broker_port(const mqtt_broker *b)
{
    return b->endpoint_count ? b->endpoints[0].port : 0;
}

const char *mqtt_broker_cluster_addr(const mqtt_broker *b)
{
    return b->cluster ? hm_node_addr(mqtt_cluster_node(b->cluster)) : "";
}

void mqtt_broker_stop(mqtt_broker *b)
{
    if (b->stopped)
        return;
    b->stopped = true;
    for (size_t i = 0; i < b->endpoint_count; i++) {
        hm_listener_close(b->endpoints[i].listener);
        b->endpoints[i].listener = NULL;
    }
    if (b->cluster) /* sessions go to the members that stay */
        mqtt_session_cluster_leave(b);
    mqtt_cluster_stop(b->cluster); /* before net stops (cluster/node.h) */
    if (b->net)
        hm_net_stop(b->net);
    /* Let the connection receivers see their "net.closed" (and detach
     * from their sessions) before the runtime closes. Bounded: a stuck
     * receiver only delays the exit. */
    if (b->rt)
        hm_runtime_wait_idle(b->rt, 300);
    mqtt_saver_stop(b); /* the last saves, before the runtime closes */
}

void mqtt_broker_destroy(mqtt_broker *b)
{
    if (!b)
        return;
    mqtt_broker_stop(b);
    hm_runtime_destroy(b->rt);
    hm_net_destroy(b->net);
    mqtt_cluster_destroy(b->cluster);
    mqtt_saver_close(b);
    mqtt_retain_destroy(b->retained);
    mqtt_topic_tree_destroy(b->tree);
    mqtt_passwd_destroy(b->passwd);
    mqtt_acl_destroy(b->acl);
    pthread_rwlock_destroy(&b->auth_lock);
    pthread_rwlock_destroy(&b->retain_lock);
    pthread_rwlock_destroy(&b->tree_lock);
    hm_free(b->endpoints);
    hm_free(b->acl_file);
    hm_free(b->password_file);
    hm_free(b->persistence_location);
    hm_free(b->persistence_redis);
    hm_free(b->host);
    hm_free(b);
}
