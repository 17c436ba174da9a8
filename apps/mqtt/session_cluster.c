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
 * the state is gone). */
#include "apps/mqtt/broker_impl.h"

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
