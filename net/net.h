/* net/net.h: the network event loop: I/O threads, listeners, connections.
 *
 * A hm_net owns a fixed set of I/O threads, each with its own epoll
 * instance. Every connection lives on one I/O thread for its whole life and
 * belongs to a receiver (its owner, a runtime address): the I/O thread reads,
 * frames (net/frame.h) and sends each complete frame to the owner as a
 * runtime message; it never runs receiver code. Receivers write through the
 * connection's handle (net/conn.h) from any thread. docs/net.md is the guide.
 *
 * Shutdown order: hm_net_stop() (closes every connection, tells owners),
 * then hm_runtime_destroy(), then hm_net_destroy(). */
#ifndef HM_NET_NET_H
#define HM_NET_NET_H

#include "net/frame.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_net hm_net;
typedef struct hm_conn hm_conn;
typedef struct hm_listener hm_listener;

#define HM_NET_WRITE_QUEUE_DEFAULT (4u * 1024u * 1024u) /* bytes */
#define HM_NET_INFLIGHT_DEFAULT (4u * 1024u * 1024u)    /* bytes */
#define HM_NET_LINGER_DEFAULT_MS 5000u

/* What a write past the write-queue bound does. Either way the write fails
 * with HM_EFULL and nothing of it is queued. */
typedef enum {
    HM_NET_FULL_ERROR = 0, /* only that: the connection stays open */
    HM_NET_FULL_CLOSE,     /* and the connection is aborted (HM_EFULL) */
} hm_net_full_policy;

/* Per-connection options. Zero values mean the defaults. */
typedef struct hm_conn_options {
    /* Borrowed until hm_net_destroy(); NULL: the line framer with
     * HM_NET_MAX_LINE. */
    const hm_framer *framer;
    /* Bytes written and not yet sent to the socket. */
    size_t max_write_queue_len;
    /* Bytes of frames delivered to the owner whose messages the runtime
     * has not freed yet (plus 64 per frame). Past it the connection stops
     * reading until the owner catches up: TCP pushes back on the peer. */
    size_t max_inflight_len;
    hm_net_full_policy on_full;
    /* false: when the peer closes its side, queued writes are flushed and
     * the connection closes. true: the owner gets "net.eof" and may keep
     * writing until it closes. */
    bool allow_half_open;
    /* A graceful close may take this long to flush and drain. */
    uint32_t linger_ms;
    /* An open connection that delivers no frame for this long is aborted
     * ("net.closed" HM_ETIMEDOUT), counted from "net.opened"; 0: never.
     * The owner changes it with hm_conn_set_idle_timeout(). Exact to the
     * loop's 16 ms tick, never early; not counted while reading is paused
     * on the in-flight bound. */
    uint32_t idle_timeout_ms;
    /* Accepted connections: the socket's send buffer (SO_SNDBUF, which
     * the kernel doubles); 0: the system's default, which grows by
     * itself. Small buffers are for tests of short sends. */
    uint32_t send_buffer_len;
    /* TCP_USER_TIMEOUT: written bytes unacknowledged by the peer for this
     * long fail the connection (HM_ETIMEDOUT). 0: the kernel's default
     * (about 15 minutes of retransmissions). */
    uint32_t user_timeout_ms;
} hm_conn_options;

typedef struct hm_net_config {
    hm_runtime *rt; /* borrowed until hm_net_stop() returns */
    int io_threads; /* 0: 1 */
    /* When every runtime worker sleeps, an I/O thread runs the owner's
     * turn for a frame it read itself, and up to this many turns in all
     * (the owner's and those it makes runnable), instead of waking a
     * worker (ADR 0175). The owners' handlers then run on the I/O thread
     * too, so they must not block. 0: never (ADR 0010's split). */
    uint32_t inline_turns;
} hm_net_config;

/* Creates the net and starts its I/O threads. Borrows `cfg`. Returns owned
 * on HM_OK. Errors: HM_EINVAL (no runtime, io_threads < 0 or > 64),
 * HM_ESYS (epoll, eventfd or a thread could not be created). */
hm_err hm_net_create(const hm_net_config *cfg, hm_net **out);

/* Stops accepting and reading, closes every listener and connection (each
 * owner gets "net.closed" with HM_ECLOSED) and joins the I/O threads.
 * Idempotent. Call from outside the I/O threads. Afterwards every handle
 * fails with HM_ECLOSED; listener handles are still freed with
 * hm_listener_close(), before hm_net_destroy(). */
void hm_net_stop(hm_net *net);

/* Stops if needed and frees the net. Accepts NULL. Call it when no thread
 * can use a handle of this net any more (after hm_runtime_destroy() when
 * receivers hold handles); handles still referenced stay valid memory and
 * keep failing with HM_ECLOSED. */
void hm_net_destroy(hm_net *net);

/* Counters, summed over I/O threads; relaxed (exact when idle). */
typedef struct hm_net_stats {
    uint64_t accepted;       /* connections accepted */
    uint64_t accept_dropped; /* accepted then closed: out of descriptors */
    uint64_t connected;      /* outgoing connections established */
    uint64_t closed;         /* connections closed (any way) */
    uint64_t open;           /* connections registered now */
    uint64_t frames_in;      /* frames delivered to owners */
    uint64_t bytes_in;       /* bytes read */
    uint64_t bytes_out;      /* bytes written */
    uint64_t write_full;     /* writes refused with HM_EFULL */
    uint64_t read_pauses;    /* reads paused on the in-flight bound */
    uint64_t direct_sends;   /* writes a handle sent itself (ADR 0151) */
    uint64_t inline_frames;  /* frames whose owner ran on the loop (0175) */
} hm_net_stats;

/* Fills `out` (borrowed, caller's storage). Thread-safe. */
void hm_net_stats_get(hm_net *net, hm_net_stats *out);

/* ------------------------------------------------------------ listening */

/* Chooses the owner of an accepted connection. Runs on an I/O thread, so it
 * must be quick and must not block (spawning a pinned receiver with
 * hm_runtime_spawn() is fine). `peer` ("[::1]:5000") is borrowed for the
 * call. Returns an owned address reference in `*owner_out` on HM_OK; any
 * error refuses the connection (it is closed at once). */
typedef hm_err (*hm_net_accept_fn)(void *arg, uint64_t conn_id,
                                   const char *peer, hm_addr **owner_out);

typedef struct hm_listen_config {
    const char *host;        /* NULL or "::": every IPv6 and IPv4 address */
    int port;                /* 0: an ephemeral port (see hm_listener_port) */
    int backlog;             /* 0: 511 */
    hm_net_accept_fn accept; /* required */
    void *accept_arg;        /* borrowed until hm_net_stop() returns */
    hm_conn_options conn;    /* for every accepted connection */
} hm_listen_config;

/* Binds and listens on the calling thread (so a busy port fails here), then
 * hands the socket to an I/O thread. Borrows `cfg`. Returns an owned handle
 * on HM_OK. Errors: HM_EINVAL (no accept function, bad host or port),
 * HM_EEXIST (address in use), HM_ESYS. Thread-safe. */
hm_err hm_net_listen(hm_net *net, const hm_listen_config *cfg,
                     hm_listener **out);
/* The bound port of `l` (borrowed). Thread-safe. */
int hm_listener_port(const hm_listener *l);
/* Stops accepting and closes the socket (on its I/O thread, soon after the
 * call); connections already accepted live on. Frees the handle: `l` must
 * not be used again. Accepts NULL. Thread-safe. */
void hm_listener_close(hm_listener *l);

/* ----------------------------------------------------------- connecting */

typedef struct hm_connect_config {
    const char *host; /* a name or a numeric IPv4 / IPv6 address */
    int port;
    hm_addr *owner;      /* borrowed; the connection takes a reference */
    uint32_t timeout_ms; /* 0: 10000 */
    hm_conn_options conn;
} hm_connect_config;

/* Starts an outgoing connection owned by cfg->owner. The host is resolved
 * on the calling thread (getaddrinfo: pass a numeric address from a
 * receiver so it never blocks); the connect itself is non-blocking. The
 * outcome arrives at the owner: "net.opened", or "net.closed" with
 * HM_ECONNREFUSED, HM_ETIMEDOUT or HM_ESYS and no "net.opened". Writes the
 * connection's id to `id_out` (may be NULL). Borrows `cfg`.
 * Errors: HM_EINVAL (no owner, bad port), HM_ENOTFOUND (no such host),
 * HM_ECLOSED (net stopped). Thread-safe. */
hm_err hm_net_connect(hm_net *net, const hm_connect_config *cfg,
                      uint64_t *id_out);

#endif
