/* apps/chat/server.h: the chat server: a runtime, a client listener and,
 * in a cluster, a node (docs/chat.md).
 *
 * Key decision: the server is nothing but receivers on the runtime (see
 * chat_impl.h for the four kinds); this module only wires them up: the
 * factory that makes rooms and the directory on demand, the listener whose
 * accepted connections become sessions, and the cluster node whose events
 * tell the chat that a node and its users are gone. */
#ifndef CHAT_SERVER_H
#define CHAT_SERVER_H

#include "runtime/err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct chat_server chat_server;
struct hm_cluster_options;

typedef struct chat_server_config {
    const char *listen;       /* "HOST:PORT" for clients; port 0: ephemeral */
    uint32_t idle_timeout_ms; /* silent clients are logged out; 0: 30000 */
    int threads;              /* runtime workers; 0: online cores */
    /* Borrowed for the call; NULL or not enabled: a single server. */
    const struct hm_cluster_options *cluster;
} chat_server_config;

/* Starts a server. Borrows `cfg`. Returns owned on HM_OK.
 * Errors: HM_EINVAL (a bad address or option), HM_EEXIST (address in use),
 * HM_ESYS, and those of the cluster node. Each is logged. */
hm_err chat_server_start(const chat_server_config *cfg, chat_server **out);

/* The client port (the real one when 0 was asked for). */
int chat_server_port(const chat_server *s);
/* This server's node name ("local" when alone) and, in a cluster, its
 * cluster address (else ""). Return borrowed until stop. */
const char *chat_server_node(const chat_server *s);
const char *chat_server_cluster_addr(const chat_server *s);

/* Stops and frees the server: clients are disconnected, the node leaves
 * the cluster gracefully. Call from outside the runtime. Accepts NULL. */
void chat_server_stop(chat_server *s);

/* Splits "HOST:PORT" or "[V6]:PORT" (borrowed) into `host` (`host_len`
 * bytes) and `*port`, by hm_cluster_parse_hostport()'s grammar (PORT is
 * plain decimal). Errors: HM_EINVAL. Pure. */
hm_err chat_parse_hostport(const char *s, char *host, size_t host_len,
                           int *port);

#endif
