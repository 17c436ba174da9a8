/* net/net_impl.h: the layouts shared by loop.c, conn.c and listener.c.
 * Private to net/: no file outside this folder includes it.
 *
 * Threads and ownership, in one place:
 * - Fields marked "atomic" are touched by any thread; their orders are
 *   explained where they are used.
 * - Everything else in hm_conn and hm_listener belongs to the I/O thread of
 *   its loop (`loop`), or to the creating thread before the object is first
 *   scheduled (the push onto loop->tasks publishes it: release/acquire).
 * - Cross-thread work reaches a loop only as a task on loop->tasks, a
 *   lock-free stack; the pusher that finds it empty writes the eventfd. */
#ifndef HM_NET_NET_IMPL_H
#define HM_NET_NET_IMPL_H

#include "net/conn.h"
#include "net/net.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

typedef struct hm_loop hm_loop;

typedef enum { TASK_CONN = 1, TASK_LISTENER = 2 } task_kind;

/* The first member of hm_conn and hm_listener: what loop->tasks and epoll's
 * data.ptr point to. */
typedef struct hm_task {
    struct hm_task *next; /* link on loop->tasks */
    task_kind kind;
} hm_task;

/* Requests a handle makes to the I/O thread, as bits of conn->requests. */
enum {
    REQ_CLOSE = 1u << 0,
    REQ_ABORT = 1u << 1,
    REQ_SHUT_WR = 1u << 2,
    REQ_RESUME = 1u << 3, /* the owner freed frames: maybe read again */
    REQ_OWNER = 1u << 4,  /* next_owner holds a new owner */
    REQ_FULL = 1u << 5,   /* a write hit the bound under HM_NET_FULL_CLOSE */
};

typedef enum {
    CONN_NEW_ACCEPTED, /* accepted, not yet registered on its loop */
    CONN_NEW_CONNECT,  /* created by hm_net_connect, no socket yet */
    CONN_CONNECTING,   /* non-blocking connect in progress */
    CONN_OPEN,
    CONN_FLUSHING, /* graceful close: sending what is queued */
    CONN_LINGER,   /* write side shut: draining input until EOF */
    CONN_CLOSED,
} conn_state;

/* One queued write. */
typedef struct wnode {
    struct wnode *next;
    size_t len;
    uint8_t *data;   /* inline[] or a taken buffer */
    bool owned_data; /* data was taken from the writer: free it */
    uint8_t inline_data[];
} wnode;

struct hm_conn {
    hm_task task;
    hm_loop *loop;
    uint64_t id;
    char peer[64];
    hm_conn_options opt;
    size_t max_inflight; /* resolved opt.max_inflight_len */
    size_t max_queue;    /* resolved opt.max_write_queue_len */

    _Atomic unsigned refs;         /* atomic */
    atomic_bool scheduled;         /* atomic: task is on loop->tasks */
    atomic_bool closed;            /* atomic: writes refused */
    atomic_bool finished;          /* atomic: the socket is closed for good */
    atomic_bool read_paused;       /* atomic: see conn.c, in-flight bound */
    _Atomic unsigned requests;     /* atomic: REQ_* bits */
    _Atomic(wnode *) wstack;       /* atomic: writes, newest first */
    _Atomic(wnode *) bstack;       /* atomic: bulk writes, newest first */
    _Atomic size_t queued_len;     /* atomic: bytes written, not yet sent */
    _Atomic size_t inflight;       /* atomic: delivered frame bytes not freed */
    _Atomic(hm_addr *) next_owner; /* atomic: for REQ_OWNER */

    /* I/O thread only, from here on. */
    int fd;
    conn_state state;
    uint32_t events; /* the epoll mask registered now (0: none) */
    hm_addr *owner;  /* owned reference */
    hm_frame_reader *reader;
    hm_framer line_framer; /* used when opt.framer is NULL */
    wnode *out_head, *out_tail;
    size_t out_off; /* bytes of out_head already sent */
    wnode *out_plast; /* the last non-bulk node still queued, or NULL */
    bool read_done;   /* EOF seen, framing error, or reads stopped */
    bool frame_error; /* the framer failed: net.error was sent */
    bool shut_wr_pending, shut_wr_done;
    bool listed;   /* on loop->conns */
    bool abortive; /* the close resets the connection (SO_LINGER 0) */
    uint32_t connect_timeout_ms;
    struct hm_conn *prev, *next; /* the loop's list of registered conns */
    struct hm_conn *timed_next;  /* the loop's list of conns with deadlines */
    bool timed;
    uint64_t deadline_ms;
    struct sockaddr_storage remote; /* for connects */
    socklen_t remote_len;
};

struct hm_listener {
    hm_task task;
    hm_loop *loop;
    _Atomic unsigned refs; /* atomic: the handle and the loop's */
    atomic_bool scheduled; /* atomic: task is on loop->tasks */
    atomic_bool close_req; /* atomic: hm_listener_close() was called */
    int port;
    hm_net_accept_fn accept;
    void *accept_arg;
    hm_conn_options opt;

    /* I/O thread only. */
    int fd;
    uint32_t events;
    bool registered, stopped;
    uint64_t resume_ms;       /* non-zero: accepting paused until then */
    struct hm_listener *next; /* the loop's list */
};

struct hm_loop {
    hm_net *net;
    int index;
    int epfd;
    int wakefd;
    int reserve_fd; /* spare descriptor released on EMFILE (listener.c) */
    pthread_t thread;
    bool thread_started;
    _Atomic(hm_task *) tasks; /* atomic: pending work, newest first */
    atomic_bool stopping;     /* atomic */

    /* I/O thread only. */
    hm_conn *conns;         /* registered conns */
    hm_conn *timed;         /* conns with a deadline */
    hm_listener *listeners; /* registered listeners */

    /* Counters: relaxed atomics, read by hm_net_stats_get(). */
    _Atomic uint64_t accepted, accept_dropped, connected, closed, open,
        frames_in, bytes_in, bytes_out, write_full, read_pauses;
};

struct hm_net {
    hm_runtime *rt;
    int nloops;
    hm_loop *loops;
    _Atomic uint64_t next_id;   /* atomic: connection ids, from 1 */
    _Atomic unsigned next_loop; /* atomic: round-robin placement */
    atomic_bool stopped;        /* atomic */
};

/* loop.c. Any thread: hm_loop_schedule (pushes `task`, which the loop
 * borrows until it runs), hm_net_pick_loop, hm_loop_now_ms. The loop's
 * thread: hm_loop_epoll_set (sets fd's interest to `want`, tracked in
 * `*current`; 0 removes it). */
void hm_loop_schedule(hm_loop *loop, hm_task *task);
hm_loop *hm_net_pick_loop(hm_net *net);
void hm_loop_epoll_set(hm_loop *loop, int fd, hm_task *task, uint32_t *current,
                       uint32_t want);
uint64_t hm_loop_now_ms(void);

/* conn.c (any thread). hm_conn_create returns owned (the loop's
 * reference), borrowing `opt`. hm_conn_event returns an owned message that
 * holds a new reference to `c` and a copy of data[0, len). */
hm_conn *hm_conn_create(hm_net *net, hm_loop *loop, const hm_conn_options *opt);
void hm_conn_schedule(hm_conn *c);
hm_msg *hm_conn_event(hm_conn *c, const hm_type *type, hm_err err,
                      const uint8_t *data, size_t len, size_t charge);

/* conn_io.c (the conn's I/O thread; after hm_net_stop, the stopping
 * thread). hm_conn_finish closes for good, tells the owner and drops the
 * loop's reference: `c` may be freed on return unless the caller holds a
 * reference. */
void hm_conn_run_task(hm_conn *c);
void hm_conn_on_event(hm_conn *c, uint32_t events);
void hm_conn_on_deadline(hm_conn *c, uint64_t now_ms);
void hm_conn_finish(hm_conn *c, hm_err reason);
void hm_conn_set_deadline(hm_conn *c, uint64_t deadline_ms);
hm_err hm_conn_errno(int e);

/* listener.c. hm_conn_format_peer (any thread) writes "host:port" of `sa`
 * (borrowed) into out[0, cap). The rest run on the listener's loop thread,
 * or on the stopping thread after hm_net_stop. */
void hm_conn_format_peer(const struct sockaddr *sa, char *out, size_t cap);
void hm_listener_run_task(hm_listener *l);
void hm_listener_on_event(hm_listener *l, uint32_t events);
void hm_listener_on_deadline(hm_loop *loop, uint64_t now_ms, uint64_t *next_ms);
void hm_listener_stop(hm_listener *l);

#endif
