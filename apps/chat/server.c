/* apps/chat/server.c: starting and stopping a chat server, its factory, the
 * cluster wiring, and the small helpers every chat receiver uses.
 *
 * The factory makes exactly two kinds of receivers on demand: rooms
 * ("chat/room/<valid name>") and the directory. Users and sessions are
 * never made by the factory: they exist only while a connection does, so a
 * message to a user who is not logged in is refused (and a request for one
 * gets HM_ENOTFOUND, which the sender reports as "no_such_user").
 *
 * In a cluster the runtime's factory is the node's (hm_node_factory), which
 * wraps ours: a name that lives on another node (a user registered there, a
 * room placed there) becomes a local proxy that forwards to it, and only
 * the rest reaches chat_factory. "chat/local/<node>" (local.c) hears from
 * the node's event callback that a member died or left.
 *
 * Key decision: nothing here knows where a receiver lives. Rooms and the
 * directory are *placed* names (chat_placed), users are *registered* names
 * (session.c registers them at login): the cluster layer does the rest. */
#include "apps/chat/chat_impl.h"

#include "cluster/node.h"
#include "cluster/options.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const hm_type chat_track_type = {.name = "chat.track",
                                 .free = chat_note_free};

/* -------------------------------------------------------------- helpers */

void chat_send_to(hm_ctx *ctx, const char *prefix, const char *name,
                  hm_msg *m)
{
    char addr[CHAT_ADDR_MAX];
    hm_err err;

    snprintf(addr, sizeof addr, "%s%s", prefix, name);
    if ((err = hm_ctx_send_name(ctx, addr, m)) != HM_OK) {
        HM_LOG_DEBUG("CHAT-SEND-FAIL", "%s to %s: %s",
                     hm_msg_type(m)->name, addr, hm_err_str(err));
        hm_msg_destroy(m);
    }
}

void chat_write(hm_conn *conn, char *line, size_t len)
{
    hm_err err;

    if ((err = hm_conn_write_take(conn, line, len)) != HM_OK) {
        HM_LOG_DEBUG("CHAT-WRITE-FAIL", "connection %llu: %s",
                     (unsigned long long)hm_conn_id(conn), hm_err_str(err));
        hm_free(line);
    }
}

void chat_write_msg(hm_conn *conn, const char *type, uint64_t id,
                    json_t *data)
{
    char *line;
    size_t len;

    if (chat_encode(type, id, data, &line, &len) == HM_OK)
        chat_write(conn, line, len);
}

void chat_write_error(hm_conn *conn, uint64_t id, chat_err code,
                      const char *reason)
{
    char *line;
    size_t len;

    if (chat_encode_error(id, code, reason, &line, &len) == HM_OK)
        chat_write(conn, line, len);
}

hm_err chat_parse_hostport(const char *s, char *host, size_t host_len,
                           int *port)
{
    /* One grammar for every address a binary is given: the chat client's
     * own parser took "h: 80", "h:+80" and "a:b:80" that the cluster flags
     * refuse (found by fuzz/fuzz_cmdline.c). */
    return hm_cluster_parse_hostport(s, host, host_len, port);
}

/* -------------------------------------------------------------- factory */

static hm_err chat_factory(void *arg, const char *name, hm_receiver *out)
{
    chat_server *srv = arg;
    size_t room_len = strlen(CHAT_ROOM_PREFIX);

    if (strncmp(name, CHAT_ROOM_PREFIX, room_len) == 0 &&
        chat_name_valid(name + room_len)) {
        chat_room_make(srv, name + room_len, out);
        return HM_OK;
    }
    if (strcmp(name, CHAT_DIRECTORY) == 0) {
        chat_directory_make(srv, out);
        return HM_OK;
    }
    return HM_ENOTFOUND; /* users and sessions are spawned, never made */
}

/* Rooms and the directory live where the cluster places them. */
static bool chat_placed(void *arg, const char *name)
{
    return strncmp(name, CHAT_ROOM_PREFIX, strlen(CHAT_ROOM_PREFIX)) == 0 ||
           strcmp(name, CHAT_DIRECTORY) == 0;
}

/* Runs on the "cluster/node" receiver: quick, and only a send. */
static void on_member_event(void *arg, const char *name, uint64_t inc,
                            hm_member_event event)
{
    chat_server *srv = arg;
    HM_LOG_INFO("CHAT-MEMBER", "member %s (incarnation %llu): %s", name,
                (unsigned long long)inc, hm_member_event_name(event));
    if (event == HM_MEMBER_EV_DEAD || event == HM_MEMBER_EV_LEFT)
        chat_local_node_gone(srv, name, true);
    else if (event == HM_MEMBER_EV_REPLACED) /* its old users are gone */
        chat_local_node_gone(srv, name, false);
    else if (event == HM_MEMBER_EV_UP)
        chat_local_node_up(srv, name);
}

static hm_err create_node(chat_server *srv, const hm_cluster_options *o)
{
    hm_node_config nc = {0};
    hm_err err;

    hm_cluster_options_apply(o, &nc);
    nc.factory = chat_factory;
    nc.factory_arg = srv;
    nc.placed = chat_placed;
    nc.on_event = on_member_event;
    nc.event_arg = srv;
    if ((err = hm_node_create(&nc, &srv->node)) != HM_OK)
        return err;
    snprintf(srv->node_name, sizeof srv->node_name, "%s",
             hm_node_name(srv->node));
    return HM_OK;
}

/* ------------------------------------------------------------ lifecycle */

static hm_err start_runtime(chat_server *srv, int threads)
{
    hm_runtime_config rc = {.threads = threads,
                            .factory = chat_factory,
                            .factory_arg = srv};
    hm_err err;

    if (srv->node) {
        rc.factory = hm_node_factory;
        rc.factory_arg = srv->node;
    }
    if ((err = hm_runtime_create(&rc, &srv->rt)) != HM_OK)
        return err;
    if ((err = chat_note_register_types(srv->rt)) != HM_OK)
        return err;
    if ((err = hm_net_create(&(hm_net_config){.rt = srv->rt, .io_threads = 1},
                             &srv->net)) != HM_OK)
        return err;
    return HM_OK;
}

static hm_err start_listening(chat_server *srv, const char *listen)
{
    char host[256];
    int port;

    if (chat_parse_hostport(listen, host, sizeof host, &port) != HM_OK) {
        HM_LOG_ERROR("CHAT-BAD-LISTEN", "--listen %s: expected HOST:PORT",
                     listen);
        return HM_EINVAL;
    }
    return hm_net_listen(srv->net,
                         &(hm_listen_config){.host = host, .port = port,
                                             .accept = chat_session_accept,
                                             .accept_arg = srv,
                                             .conn = {.framer = &srv->framer}},
                         &srv->listener);
}

hm_err chat_server_start(const chat_server_config *cfg, chat_server **out)
{
    chat_server *srv = hm_calloc(1, sizeof *srv);
    hm_err err = HM_OK;

    srv->idle_timeout_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms
                                                : 30000;
    srv->line_cfg.max_line_len = CHAT_MAX_LINE;
    hm_line_framer_init(&srv->framer, &srv->line_cfg);
    snprintf(srv->node_name, sizeof srv->node_name, "local");
    if (cfg->cluster && cfg->cluster->enabled &&
        (err = create_node(srv, cfg->cluster)) != HM_OK)
        goto fail;
    if ((err = start_runtime(srv, cfg->threads)) != HM_OK)
        goto fail;
    if (srv->node && (err = hm_node_start(srv->node, srv->rt, srv->net)) !=
                         HM_OK)
        goto fail;
    if ((err = chat_local_spawn(srv)) != HM_OK ||
        (err = start_listening(srv, cfg->listen)) != HM_OK)
        goto fail;
    *out = srv;
    return HM_OK;

fail:
    HM_LOG_ERROR("CHAT-START-FAIL", "the chat server did not start: %s",
                 hm_err_str(err));
    chat_server_stop(srv);
    return err;
}

int chat_server_port(const chat_server *s)
{
    return hm_listener_port(s->listener);
}

const char *chat_server_node(const chat_server *s)
{
    return s->node_name;
}

const char *chat_server_cluster_addr(const chat_server *s)
{
    return s->node ? hm_node_addr(s->node) : "";
}

void chat_server_stop(chat_server *s)
{
    if (!s)
        return;
    hm_listener_close(s->listener);
    if (s->node && s->rt)
        hm_node_stop(s->node, 1000);
    if (s->net)
        hm_net_stop(s->net);
    hm_runtime_destroy(s->rt);
    hm_net_destroy(s->net);
    hm_node_destroy(s->node);
    hm_free(s);
}
