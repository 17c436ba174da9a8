/* apps/mqtt/cluster.c: the broker's cluster mode: the node's life cycle and
 * the fanout receiver ("mqtt/fanout/<node name>").
 *
 * The node is created before the runtime (its factory wraps the broker's)
 * and started after net, in the order cluster/node.h states; it is stopped
 * before net stops and freed after the runtime. The fanout receiver is
 * spawned pinned and registered in presence, so a send to
 * "mqtt/fanout/<name>" from any node is routed to that node. */
#include "apps/mqtt/cluster.h"

#include "apps/mqtt/broker_impl.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

#define STOP_WAIT_MS 1000u

struct mqtt_cluster {
    mqtt_broker *b;
    hm_node *node;
    hm_runtime *rt;
    bool stopped;
    char fanout_name[sizeof MQTT_FANOUT_PREFIX + HM_NODE_NAME_MAX];
};

/* ------------------------------------------------------------ fanout */

static hm_err fanout_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)ctx;
    (void)state;
    (void)msg;
    return HM_OK;
}

/* ---------------------------------------------------------- membership */

/* Runs on the "cluster/node" receiver: quick. */
static void on_member_event(void *arg, const char *name, uint64_t inc,
                            hm_member_event event)
{
    (void)arg;
    HM_LOG_INFO("MQTT-MEMBER", "member %s (incarnation %llu): %s", name,
                (unsigned long long)inc, hm_member_event_name(event));
}

/* ---------------------------------------------------------- lifecycle */

hm_err mqtt_cluster_create(mqtt_broker *b, const mqtt_broker_config *cfg,
                           hm_factory_fn factory, void *factory_arg,
                           mqtt_cluster **out)
{
    mqtt_cluster *cl = hm_calloc(1, sizeof *cl);
    hm_err err;

    cl->b = b;
    err = hm_node_create(&(hm_node_config){.name = cfg->node_name,
                                           .cluster = cfg->cluster_name,
                                           .listen = cfg->cluster_listen,
                                           .seeds = cfg->cluster_join,
                                           .seed_count =
                                               cfg->cluster_join_count,
                                           .secret_file =
                                               cfg->cluster_secret_file,
                                           .factory = factory,
                                           .factory_arg = factory_arg,
                                           .on_event = on_member_event,
                                           .event_arg = cl},
                         &cl->node);
    if (err != HM_OK) {
        hm_free(cl);
        return err;
    }
    snprintf(cl->fanout_name, sizeof cl->fanout_name, MQTT_FANOUT_PREFIX "%s",
             hm_node_name(cl->node));
    *out = cl;
    return HM_OK;
}

hm_node *mqtt_cluster_node(mqtt_cluster *cl)
{
    return cl->node;
}

hm_err mqtt_cluster_start(mqtt_cluster *cl, hm_runtime *rt, hm_net *net)
{
    hm_err err;

    cl->rt = rt;
    if ((err = hm_node_start(cl->node, rt, net)) != HM_OK) {
        HM_LOG_ERROR("MQTT-CLUSTER", "node %s did not start: %s",
                     hm_node_name(cl->node), hm_err_str(err));
        return err;
    }
    err = hm_runtime_spawn(rt, cl->fanout_name,
                           &(hm_receiver){.handler = fanout_handle,
                                          .state = cl,
                                          .pinned = true},
                           NULL);
    if (err == HM_OK)
        err = hm_node_register(cl->node, cl->fanout_name);
    if (err != HM_OK)
        return err;
    HM_LOG_INFO("MQTT-CLUSTER", "node %s, cluster address %s",
                hm_node_name(cl->node), hm_node_addr(cl->node));
    return HM_OK;
}

void mqtt_cluster_stop(mqtt_cluster *cl)
{
    if (!cl || cl->stopped || !cl->rt)
        return;
    cl->stopped = true;
    hm_node_stop(cl->node, STOP_WAIT_MS);
}

void mqtt_cluster_destroy(mqtt_cluster *cl)
{
    if (!cl)
        return;
    hm_node_destroy(cl->node);
    hm_free(cl);
}
