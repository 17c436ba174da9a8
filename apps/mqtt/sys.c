/* apps/mqtt/sys.c: the $SYS receiver ("mqtt/sys"), which publishes the
 * broker's figures as retained messages under $SYS/broker/ every
 * sys_interval seconds, with the topic names mosquitto uses, so the same
 * dashboards work.
 *
 * It is an ordinary publisher: it routes through mqtt_broker_route() like
 * a connection receiver, so a subscriber to $SYS/# gets the figures
 * (retained, so a new subscriber gets the latest at once), and filters
 * starting with a wildcard do not see them [MQTT-4.7.2-1]. */
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/cluster.h"

#include "runtime/alloc.h"

#include <stdio.h>
#include <string.h>

#define HERMES_MQTT_VERSION "hermes-mqtt 0.1"

typedef struct sys_state {
    mqtt_broker *b;
    mqtt_deliveries d;
} sys_state;

static void put(hm_ctx *ctx, sys_state *st, const char *topic,
                const char *value)
{
    mqtt_pub *pub =
        mqtt_pub_create(topic, strlen(topic), value, strlen(value), 0, false);

    mqtt_broker_route(st->b, ctx, &st->d, pub, true);
    mqtt_pub_release(pub);
}

static void put_u64(hm_ctx *ctx, sys_state *st, const char *topic, uint64_t v)
{
    char buf[32];

    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    put(ctx, st, topic, buf);
}

typedef struct sys_put {
    hm_ctx *ctx;
    sys_state *st;
} sys_put;

static void put_cb(void *arg, const char *topic, const char *value)
{
    sys_put *sp = arg;

    put(sp->ctx, sp->st, topic, value);
}

static uint64_t load(_Atomic uint64_t *v)
{
    /* relaxed: statistics (see broker_impl.h). */
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void publish_figures(hm_ctx *ctx, sys_state *st)
{
    mqtt_broker *b = st->b;
    hm_net_stats ns;
    size_t subs, retained;
    char buf[48];

    hm_net_stats_get(b->net, &ns);
    pthread_rwlock_rdlock(&b->tree_lock);
    subs = mqtt_topic_tree_count(b->tree);
    pthread_rwlock_unlock(&b->tree_lock);
    pthread_rwlock_rdlock(&b->retain_lock);
    retained = mqtt_retain_count(b->retained);
    pthread_rwlock_unlock(&b->retain_lock);
    snprintf(buf, sizeof buf, "%llu seconds",
             (unsigned long long)(hm_ctx_now_ms(ctx) - b->start_ms) / 1000);
    put(ctx, st, "$SYS/broker/version", HERMES_MQTT_VERSION);
    put(ctx, st, "$SYS/broker/uptime", buf);
    put_u64(ctx, st, "$SYS/broker/clients/connected", load(&b->connected));
    put_u64(ctx, st, "$SYS/broker/clients/total", load(&b->sessions));
    put_u64(ctx, st, "$SYS/broker/messages/received", load(&b->received));
    put_u64(ctx, st, "$SYS/broker/messages/sent", load(&b->sent));
    put_u64(ctx, st, "$SYS/broker/messages/dropped", load(&b->dropped));
    put_u64(ctx, st, "$SYS/broker/bytes/received", ns.bytes_in);
    put_u64(ctx, st, "$SYS/broker/bytes/sent", ns.bytes_out);
    put_u64(ctx, st, "$SYS/broker/subscriptions/count", subs);
    /* The figure before this publish's own retained messages. */
    put_u64(ctx, st, "$SYS/broker/retained messages/count", retained);
    if (b->cluster)
        mqtt_cluster_sys(b->cluster, put_cb, &(sys_put){ctx, st});
}

static hm_err sys_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    if (hm_msg_type(msg) == &hm_type_tick)
        publish_figures(ctx, state);
    return HM_OK;
}

static void sys_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason w)
{
    sys_state *st = state;

    (void)ctx;
    (void)w;
    mqtt_deliveries_fini(&st->d);
    hm_free(st);
}

static const hm_hooks sys_hooks = {.deactivate = sys_deactivate};

hm_err mqtt_sys_start(mqtt_broker *b)
{
    sys_state *st = hm_calloc(1, sizeof *st);
    hm_addr *self = NULL;
    hm_err err;

    st->b = b;
    mqtt_deliveries_init(&st->d);
    err = hm_runtime_spawn(b->rt, MQTT_SYS_NAME,
                           &(hm_receiver){.handler = sys_handle,
                                          .state = st,
                                          .hooks = &sys_hooks,
                                          .pinned = true},
                           &self);
    if (err != HM_OK) {
        mqtt_deliveries_fini(&st->d);
        hm_free(st);
        return err;
    }
    /* A first tick now, then every interval. */
    hm_msg *first = hm_msg_create(&hm_type_tick, NULL, 0);

    if (hm_runtime_send(b->rt, self, first) != HM_OK)
        hm_msg_destroy(first);
    err = hm_runtime_send_every(b->rt, self, b->cfg.sys_interval_s * 1000u, 0,
                                NULL);
    hm_addr_release(self);
    return err;
}
