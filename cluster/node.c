/* cluster/node.c: the node's public API: configuration, start and stop,
 * the wrapped factory, presence registration and the state snapshot.
 *
 * The work itself is done by receivers (node_recv.c, link.c, peer.c,
 * proxy.c). What is here runs on the caller's thread: it only validates,
 * sends a message to "cluster/node", or reads the snapshot that receiver
 * publishes under the node's lock (ADR 0060: the one lock, shared with the factory, which runs
 * on any worker and must read presence and the live members). */
#include "cluster/node_impl.h"

#include "cluster/fast.h"

#include "cluster/options.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------- internal messages */

static void ev_free(void *payload)
{
    cl_ev *ev = payload;

    hm_conn_release(ev->conn);
    hm_addr_release(ev->link);
    hm_msg_destroy(ev->msg);
    hm_free(ev->str);
    if (ev->has_wire)
        hm_wire_msg_fini(&ev->wire);
    hm_free(ev);
}

#define CL_EV_TYPE(var, wire_name)                                            \
    const hm_type var = {.name = wire_name, .free = ev_free}
CL_EV_TYPE(cl_link_up_type, "cluster.link_up");
CL_EV_TYPE(cl_link_down_type, "cluster.link_down");
CL_EV_TYPE(cl_dial_failed_type, "cluster.dial_failed");
CL_EV_TYPE(cl_ctl_type, "cluster.ctl");
CL_EV_TYPE(cl_heard_type, "cluster.heard");
CL_EV_TYPE(cl_register_type, "cluster.register");
CL_EV_TYPE(cl_unregister_type, "cluster.unregister");
CL_EV_TYPE(cl_leave_type, "cluster.leave");
CL_EV_TYPE(cl_peer_up_type, "cluster.peer_up");
CL_EV_TYPE(cl_peer_down_type, "cluster.peer_down");
CL_EV_TYPE(cl_peer_gone_type, "cluster.peer_gone");
CL_EV_TYPE(cl_flush_type, "cluster.flush");

static void in_batch_free(void *payload)
{
    cl_in_batch *b = payload;

    for (size_t i = 0; i < b->count; i++) {
        hm_msg_destroy(b->items[i].msg);
        hm_addr_release(b->items[i].to);
        hm_addr_release(b->items[i].from);
    }
    hm_free(b->items);
    hm_free(b);
}

const hm_type cl_in_batch_type = {.name = "cluster.in_batch",
                                  .free = in_batch_free};

hm_msg *cl_ev_msg(const hm_type *type, cl_ev **ev_out)
{
    cl_ev *ev = hm_calloc(1, sizeof *ev);

    *ev_out = ev;
    return hm_msg_create(type, ev, 0);
}

/* ----------------------------------------------------------- creating */

static uint64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static hm_err copy_config(hm_node *n, const hm_node_config *cfg)
{
    const char *cluster = cfg->cluster ? cfg->cluster : "hermes";

    if (!cfg->name || !hm_wire_name_is_valid(cfg->name) ||
        !hm_wire_name_is_valid(cluster) || !cfg->listen ||
        hm_cluster_parse_hostport(cfg->listen, n->listen_host,
                                  sizeof n->listen_host,
                                  &n->listen_port) != HM_OK) {
        HM_LOG_ERROR("CL-CONFIG", "node: bad name, cluster or listen address");
        return HM_EINVAL;
    }
    strcpy(n->name, cfg->name);
    strcpy(n->cluster, cluster);
    n->seeds = hm_calloc(cfg->seed_count + 1, sizeof *n->seeds);
    for (size_t i = 0; i < cfg->seed_count; i++)
        n->seeds[n->seed_count++] = hm_strdup(cfg->seeds[i]);
    n->timers = cfg->timers;
    n->tick_ms = cfg->tick_ms ? cfg->tick_ms : 20;
    n->buffer_limit = cfg->buffer_limit ? cfg->buffer_limit : 10000;
    n->request_timeout_ms =
        cfg->request_timeout_ms ? cfg->request_timeout_ms : 30000;
    n->factory = cfg->factory;
    n->factory_arg = cfg->factory_arg;
    n->placed = cfg->placed;
    n->placed_arg = cfg->placed_arg;
    n->home = cfg->home;
    n->home_arg = cfg->home_arg;
    n->on_event = cfg->on_event;
    n->event_arg = cfg->event_arg;
    n->inc = wall_us();
    return HM_OK;
}

hm_err hm_node_create(const hm_node_config *cfg, hm_node **out)
{
    hm_node *n = hm_calloc(1, sizeof *n);
    hm_err err;

    pthread_mutex_init(&n->lock, NULL);
    if ((err = copy_config(n, cfg)) != HM_OK)
        goto fail;
    if (cfg->secret)
        err = hm_auth_secret_from_bytes(cfg->secret, cfg->secret_len,
                                        &n->secret);
    else if (cfg->secret_file)
        err = hm_auth_secret_load(cfg->secret_file, &n->secret);
    else
        err = HM_EINVAL;
    if (err != HM_OK) {
        HM_LOG_ERROR("CL-CONFIG", "node %s: no usable cluster secret: %s",
                     n->name, hm_err_str(err));
        goto fail;
    }
    *out = n;
    return HM_OK;

fail:
    hm_node_destroy(n);
    return err;
}

void hm_node_destroy(hm_node *n)
{
    if (!n)
        return;
    /* Every hm_addr died with the runtime (destroyed before us); the
     * connection handles outlive the net as inert memory until released. */
    for (size_t i = 0; i < n->slot_count; i++)
        hm_conn_release(n->slots[i].conn);
    hm_free(n->slots);
    hm_free(n->dialing);
    for (size_t i = 0; i < n->peer_count; i++)
        cl_peer_destroy(n->peers[i]);
    hm_free(n->peers);
    for (size_t i = 0; i < n->seed_count; i++)
        hm_free(n->seeds[i]);
    hm_free(n->seeds);
    hm_members_destroy(n->members);
    hm_presence_destroy(n->pres);
    hm_free(n->live);
    hm_free(n->snap);
    hm_auth_secret_destroy(n->secret);
    pthread_mutex_destroy(&n->lock);
    hm_free(n);
}

const char *hm_node_name(const hm_node *n)
{
    return n->name;
}

const char *hm_node_addr(const hm_node *n)
{
    return n->addr;
}

uint64_t hm_node_inc(const hm_node *n)
{
    return n->inc;
}

/* ------------------------------------------------------------ factory */

hm_err hm_node_factory(void *arg, const char *name, hm_receiver *out)
{
    hm_node *n = arg;
    char where[CL_NAME_CAP];

    if (strncmp(name, "cluster/", 8) == 0)
        return HM_ENOTFOUND; /* ours are spawned, never activated */
    /* acquire: pairs with the release store in hm_node_start(). */
    if (atomic_load_explicit(&n->started, memory_order_acquire) &&
        cl_route(n, name, where))
        return cl_proxy_make(n, name, where, out);
    if (!n->factory)
        return HM_ENOTFOUND;
    return n->factory(n->factory_arg, name, out);
}

/* -------------------------------------------------------------- start */

uint32_t cl_user_timeout_ms(const hm_node *n)
{
    /* Unacknowledged bytes on a link for longer than the failure detector
     * takes to give up on a silent peer (suspicion, then a probe round or
     * the lone-pair timeout) mean the peer is gone: the kernel then fails
     * the connection instead of retrying for ~15 minutes, so the link is
     * reported down and redialled. Twice the detector's time keeps a slow
     * but alive peer from being cut by TCP first. */
    const hm_members_config *t = &n->timers;
    uint32_t probe = t->suspect_after_ms + t->round_timeout_ms;
    uint32_t lone = t->dead_after_ms;

    return 2 * (probe > lone ? probe : lone);
}

static hm_err on_accept(void *arg, uint64_t conn_id, const char *peer,
                        hm_addr **owner_out)
{
    hm_node *n = arg;
    char name[64];
    void *state;
    hm_err err;

    (void)peer;
    /* acquire: pairs with the release stores in start and stop. */
    if (atomic_load_explicit(&n->stopped, memory_order_acquire))
        return HM_ECLOSED;
    snprintf(name, sizeof name, CL_LINK_PREFIX "a%llu",
             (unsigned long long)conn_id);
    state = cl_link_state_create(n, NULL, NULL);
    err = hm_runtime_spawn(n->rt, name,
                           &(hm_receiver){.handler = cl_link_handle,
                                          .state = state,
                                          .hooks = &cl_link_hooks,
                                          .pinned = true},
                           owner_out);
    if (err != HM_OK)
        hm_free(state);
    return err;
}

static hm_err start_tables(hm_node *n)
{
    hm_members_config mc = n->timers;
    hm_err err;

    mc.self_name = n->name;
    mc.self_addr = n->addr;
    mc.self_inc = n->inc;
    if ((err = hm_members_create(&mc, &n->members)) != HM_OK)
        return err;
    for (size_t i = 0; i < n->seed_count; i++)
        if (strcmp(n->seeds[i], n->addr) != 0 &&
            (err = hm_members_add_seed(n->members, n->seeds[i])) != HM_OK)
            return err;
    return hm_presence_create(&(hm_presence_config){.self_name = n->name,
                                                    .self_inc = n->inc},
                              &n->pres);
}

static hm_err start_listener(hm_node *n)
{
    hm_err err = hm_net_listen(n->net,
                               &(hm_listen_config){.host = n->listen_host,
                                                   .port = n->listen_port,
                                                   .accept = on_accept,
                                                   .accept_arg = n,
                                                   .conn = n->link_opt},
                               &n->listener);

    if (err != HM_OK) {
        HM_LOG_ERROR("CL-LISTEN", "node %s: cannot listen on %s:%d: %s",
                     n->name, n->listen_host, n->listen_port,
                     hm_err_str(err));
        return err;
    }
    snprintf(n->addr, sizeof n->addr,
             strchr(n->listen_host, ':') ? "[%s]:%d" : "%s:%d",
             n->listen_host, hm_listener_port(n->listener));
    return HM_OK;
}

hm_err hm_node_start(hm_node *n, hm_runtime *rt, hm_net *net)
{
    hm_err err;

    n->rt = rt;
    n->net = net;
    cl_lines_framer_init(&n->lines);
    n->link_opt = (hm_conn_options){.framer = &n->lines,
                                    .user_timeout_ms = cl_user_timeout_ms(n)};
    hm_runtime_register_type(rt, &hm_type_error);
    hm_runtime_register_type(rt, &hm_type_json);
    if ((err = start_listener(n)) != HM_OK)
        return err;
    if ((err = start_tables(n)) != HM_OK)
        goto fail;
    pthread_mutex_lock(&n->lock);
    n->live = hm_calloc(1, sizeof *n->live);
    strcpy(n->live[0], n->name);
    n->live_count = 1;
    n->live_changed = true;
    cl_unlock(n);
    err = hm_runtime_spawn(rt, CL_NODE_ADDR,
                           &(hm_receiver){.handler = cl_node_handle,
                                          .state = n,
                                          .pinned = true},
                           &n->node_addr);
    if (err != HM_OK)
        goto fail;
    /* release: pairs with the acquire loads in the factory and accept. */
    atomic_store_explicit(&n->started, true, memory_order_release);
    if ((err = hm_runtime_send_every(rt, n->node_addr, n->tick_ms, 0,
                                     &n->tick)) != HM_OK)
        goto fail;
    HM_LOG_INFO("CL-START", "node %s (inc %llu) of cluster %s listening on %s",
                n->name, (unsigned long long)n->inc, n->cluster, n->addr);
    return HM_OK;

fail:
    /* release: pairs with the acquire load in on_accept(). */
    atomic_store_explicit(&n->stopped, true, memory_order_release);
    hm_listener_close(n->listener);
    n->listener = NULL;
    return err;
}

/* --------------------------------------------------------------- stop */

void hm_node_stop(hm_node *n, uint32_t wait_ms)
{
    hm_msg *reply = NULL;
    uint64_t deadline;

    /* acquire: pairs with the release store in hm_node_start(); acq_rel:
     * of concurrent stops exactly one sees false and stops. */
    if (!atomic_load_explicit(&n->started, memory_order_acquire) ||
        atomic_exchange_explicit(&n->stopped, true, memory_order_acq_rel))
        return;
    hm_listener_close(n->listener);
    n->listener = NULL;
    if (hm_runtime_call(n->rt, n->node_addr,
                        hm_msg_create(&cl_leave_type, NULL, 0), wait_ms,
                        &reply) == HM_OK)
        hm_msg_destroy(reply);
    /* The peers close their side when they read our LEAVE; wait for that
     * (bounded), so the line is not lost to a reset by hm_net_stop(). */
    deadline = hm_runtime_now_ms(n->rt) + wait_ms;
    while (hm_runtime_now_ms(n->rt) < deadline) {
        size_t open = 0;

        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->snap_count; i++)
            open += n->snap[i].info.linked;
        pthread_mutex_unlock(&n->lock);
        if (!open)
            break;
        usleep(1000); /* shutdown only: nothing to wait on but the peers */
    }
    hm_runtime_cancel_timer(n->rt, n->tick);
}

/* ---------------------------------------------------------- presence */

static hm_err send_name(hm_node *n, const hm_type *type, const char *name)
{
    cl_ev *ev;
    hm_msg *m;
    hm_err err;
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > HM_PRES_NAME_MAX)
        return HM_EINVAL;
    /* acquire: pairs with the release stores in start and stop. */
    if (!atomic_load_explicit(&n->started, memory_order_acquire) ||
        atomic_load_explicit(&n->stopped, memory_order_acquire))
        return HM_ECLOSED;
    m = cl_ev_msg(type, &ev);
    ev->str = hm_strdup(name);
    if ((err = hm_runtime_send(n->rt, n->node_addr, m)) != HM_OK)
        hm_msg_destroy(m);
    return err;
}

hm_err hm_node_register(hm_node *n, const char *name)
{
    return send_name(n, &cl_register_type, name);
}

hm_err hm_node_unregister(hm_node *n, const char *name)
{
    return send_name(n, &cl_unregister_type, name);
}

/* ------------------------------------------------------------- state */

size_t hm_node_members(hm_node *n, hm_node_member *out, size_t cap)
{
    size_t count;

    pthread_mutex_lock(&n->lock);
    count = n->snap_count;
    for (size_t i = 0; i < count && i < cap; i++)
        out[i] = n->snap[i];
    pthread_mutex_unlock(&n->lock);
    return count;
}

void hm_node_stats_get(hm_node *n, hm_node_stats *out)
{
    /* relaxed: counters (exact when idle). */
    out->sent_remote = atomic_load_explicit(&n->st_sent, memory_order_relaxed);
    out->received_remote =
        atomic_load_explicit(&n->st_received, memory_order_relaxed);
    out->undeliverable =
        atomic_load_explicit(&n->st_undeliverable, memory_order_relaxed);
    out->auth_refused =
        atomic_load_explicit(&n->st_refused, memory_order_relaxed);
    out->links_up =
        atomic_load_explicit(&n->st_links_up, memory_order_relaxed);
    out->route_changes =
        atomic_load_explicit(&n->route_epoch, memory_order_relaxed);
}
