/* apps/chat/chat_impl.h: what the chat server's files share (private to
 * apps/chat/; see STYLE 2).
 *
 * The server is five kinds of receivers, each in its own file:
 *   chat/session/<conn id>  session.c    one per connection: HP greeting,
 *                                        line decoding, heartbeat, login
 *   chat/user/<name>        user.c       one per logged-in user: writes to
 *                                        the connection, sends and acks
 *   chat/room/<name>        room.c       one per room, made on demand by
 *                                        the factory: members, broadcast
 *   chat/directory          directory.c  who is online, which rooms exist
 *   chat/local/<node>       local.c      one per node: its users and rooms,
 *                                        a replica of who is online, what
 *                                        to do when another node dies
 * They refer to each other only by name, so the cluster layer can place a
 * room or the directory on any node and route to users wherever they are
 * connected. */
#ifndef CHAT_CHAT_IMPL_H
#define CHAT_CHAT_IMPL_H

#include "apps/chat/note.h"
#include "apps/chat/proto.h"
#include "apps/chat/server.h"
#include "net/conn.h"
#include "net/line.h"
#include "net/net.h"

#define CHAT_SESSION_PREFIX "chat/session/"
#define CHAT_USER_PREFIX "chat/user/"
#define CHAT_ROOM_PREFIX "chat/room/"
#define CHAT_DIRECTORY "chat/directory"
#define CHAT_LOCAL_PREFIX "chat/local/" /* + the node name */
#define CHAT_ADDR_MAX 96 /* bytes of any chat address, NUL included */
#define CHAT_NODE_MAX 65 /* bytes of a node name, NUL included */
#define CHAT_REQUEST_TIMEOUT_MS 5000u
#define CHAT_MAX_ROOMS_PER_USER 64

struct hm_node;

struct chat_server {
    hm_runtime *rt;
    hm_net *net;
    hm_listener *listener;
    struct hm_node *node;        /* NULL: a single server */
    char node_name[CHAT_NODE_MAX]; /* "local" when alone */
    uint32_t idle_timeout_ms;
    hm_line_config line_cfg; /* CHAT_MAX_LINE; borrowed by `framer` */
    hm_framer framer;
};

/* Local-only messages (never cross a link, so no codec). */
extern const hm_type chat_cmd_type;  /* session -> user: owned chat_cmd *;
                                        arg: the connection id */
extern const hm_type chat_gone_type; /* session -> user: the connection
                                        closed; arg: the connection id */
extern const hm_type chat_track_type; /* user or room -> chat/local: arg 1
                                         up, 0 down; note {user | room} */

/* session.c: the accept function of the client listener (an
 * hm_net_accept_fn; `arg` is the chat_server). */
hm_err chat_session_accept(void *arg, uint64_t conn_id, const char *peer,
                           hm_addr **owner_out);

/* user.c: spawns "chat/user/<name>" owning the connection `conn` (a new
 * reference is taken) of session `conn_id`. Returns an owned reference to
 * its address. Errors: HM_EEXIST (the name is live here), those of
 * hm_runtime_spawn(). */
hm_err chat_user_spawn(chat_server *srv, const char *name, hm_conn *conn,
                       uint64_t conn_id, hm_addr **out);

/* local.c: spawns "chat/local/<node>" (and registers it in the cluster).
 * Errors: those of hm_runtime_spawn() and hm_node_register(). */
hm_err chat_local_spawn(chat_server *srv);
/* Tells this node's chat/local that member `node` (borrowed) is gone
 * (`dead`: dead or left, not merely restarted), or is up. Thread-safe:
 * called from the cluster's member event callback. */
void chat_local_node_gone(chat_server *srv, const char *node, bool dead);
void chat_local_node_up(chat_server *srv, const char *node);

/* room.c and directory.c: activations for the factory. `room` borrowed. */
void chat_room_make(chat_server *srv, const char *room, hm_receiver *out);
void chat_directory_make(chat_server *srv, hm_receiver *out);

/* Sends `m` (taken, also on error) to `prefix` + `name`; errors logged at
 * DEBUG and dropped. For fire-and-forget notifications. */
void chat_send_to(hm_ctx *ctx, const char *prefix, const char *name,
                  hm_msg *m);
/* Writes one encoded line (taken, also on error) to `conn`. */
void chat_write(hm_conn *conn, char *line, size_t len);
/* Encodes and writes a chat line (see chat_encode(); takes `data`). */
void chat_write_msg(hm_conn *conn, const char *type, uint64_t id,
                    struct json_t *data);
void chat_write_error(hm_conn *conn, uint64_t id, chat_err code,
                      const char *reason);
/* A JSON array (owned) of the strings names[0, count), each `stride`
 * bytes apart. */
struct json_t *chat_name_list(const char *names, size_t count, size_t stride);

#endif
