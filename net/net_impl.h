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
 *   lock-free stack; the pusher that finds it empty writes the eventfd.
 * - The socket's output side (send, shutdown, close) belongs to whoever
 *   holds W_SENDING in conn->wflags: the I/O thread, or a handle making a
 *   direct send (ADR 0151). Reads stay the I/O thread's. */
#ifndef HM_NET_NET_IMPL_H
#define HM_NET_NET_IMPL_H

#include "net/conn.h"
#include "net/net.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

typedef struct hm_loop hm_loop;

/* The timing wheel of connection deadlines: 16 ms ticks, 2048 slots (one
 * round is about 33 s; later deadlines wait in their slot for more
 * rounds). */
/* Direct sends per sleep of a loop (ADR 0151): enough for a message or
 * two at light load; a burst past it is queued and sent in batches. */
#define HM_LOOP_DIRECT_SENDS 1
/* Frames per wake-up of a loop whose owners may run on the loop itself
 * (ADR 0175): past it a burst goes to the workers, which then spin and
 * take the rest, on another core. 16, not 2 (ADR 0235): a loop that was
 * kept off its core for a millisecond or two finds that many frames
 * waiting, and handing the third to a sleeping worker made it wait for a
 * core once more, at the moment it was already late. */
#define HM_LOOP_INLINE_FRAMES 16
#define HM_WHEEL_GRAIN_MS 16u
#define HM_WHEEL_SLOTS 2048u

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
    REQ_IDLE = 1u << 6,   /* idle_req_ms holds a new idle timeout */
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

/* The bits of conn->wflags: who may write to the socket (ADR 0151). */
enum {
    W_DIRECT = 1u << 0,   /* open: a handle may send on the socket itself */
    W_SENDING = 1u << 1,  /* someone holds the socket's output side */
    W_IO_WANTS = 1u << 2, /* the I/O thread waits for the holder to leave */
};

/* One queued write. */
typedef struct wnode {
    struct wnode *next;
    size_t len;
    uint8_t *data;   /* inline[] or a taken buffer */
    bool owned_data; /* data was taken from the writer: free it */
    /* The rest of a direct send: goes before every queued byte. */
    bool front;
    bool bulk; /* hm_conn_write_bulk(): queued behind the others */
    uint8_t inline_data[];
} wnode;

/* A peer's address: IPv4 or IPv6, nothing else reaches a conn. */
typedef union hm_conn_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} hm_conn_addr;

/* The layout is packed for idle connections, which are most of them on a
 * broker (ADR 0150): options are resolved into a few small fields, the
 * frame reader exists only while a read is in progress or a frame is
 * incomplete, the peer's name is formatted on first use, and what only an
 * outgoing connect needs (the connect and user timeouts) rides in
 * `deadline_ms` until the connect starts; an accepted socket gets its user
 * timeout from the listener. */
struct hm_conn {
    hm_task task;
    hm_loop *loop;
    uint64_t id;
    const hm_framer *framer; /* opt.framer, or the default line framer */
    uint32_t max_inflight;   /* resolved opt.max_inflight_len (< 4 GiB) */
    uint32_t max_queue;      /* resolved opt.max_write_queue_len (< 4 GiB) */
    uint32_t linger_ms;      /* resolved opt.linger_ms */

    _Atomic uint32_t idle_req_ms;  /* atomic: for REQ_IDLE */
    _Atomic unsigned refs;         /* atomic */
    _Atomic unsigned requests;     /* atomic: REQ_* bits */
    atomic_bool scheduled;         /* atomic: task is on loop->tasks */
    atomic_bool closed;            /* atomic: writes refused */
    atomic_bool finished;          /* atomic: the socket is closed for good */
    atomic_bool read_paused;       /* atomic: see conn.c, in-flight bound */

    /* Immutable after creation: opt.on_full == HM_NET_FULL_CLOSE and
     * opt.allow_half_open, as POLICY_* bits. */
    uint8_t policy;
    /* atomic: W_* bits; the output side's owner (conn.c, ADR 0151). */
    _Atomic uint8_t wflags;

    /* I/O thread only, from here on to the atomics below (and `remote`,
     * written before the first schedule and immutable afterwards). */
    uint8_t state;        /* conn_state */
    bool read_done : 1;   /* EOF seen, framing error, or reads stopped */
    bool frame_error : 1; /* the framer failed: net.error was sent */
    bool shut_wr_pending : 1;
    bool shut_wr_done : 1;
    bool listed : 1;   /* on loop->conns */
    bool abortive : 1; /* the close resets the connection (SO_LINGER 0) */
    bool timed : 1;    /* filed in the loop's wheel (timed.c) */
    bool io_sending : 1; /* the I/O thread holds W_SENDING */

    _Atomic(wnode *) wstack;       /* atomic: writes (bulk too), newest first */
    _Atomic size_t queued_len;     /* atomic: bytes written, not yet sent */
    _Atomic size_t inflight;       /* atomic: delivered frame bytes not freed */
    _Atomic(hm_addr *) next_owner; /* atomic: for REQ_OWNER */
    /* atomic: "host:port", formatted by the first hm_conn_peer() call and
     * installed with a CAS (the loser frees its copy); NULL until then. */
    _Atomic(char *) peer;

    /* I/O thread only. */
    int fd;
    uint32_t events; /* the epoll mask registered now (0: none) */
    hm_addr *owner;  /* owned reference */
    hm_frame_reader *reader; /* NULL while no byte is buffered */
    wnode *out_head, *out_tail;
    uint32_t out_off; /* bytes of out_head already sent */
    uint32_t idle_ms; /* no frame for this long: abort (0: never) */
    struct hm_conn *prev, *next; /* the loop's list of registered conns */
    /* The loop's timing wheel (timed.c): the slot's list. */
    struct hm_conn *timed_next, **timed_pprev;
    /* The state's deadline (connect, linger, framing error), 0 for none;
     * before an outgoing connect starts, the connect timeout in ms (low 32
     * bits) and opt.user_timeout_ms (high 32 bits). */
    uint64_t deadline_ms;
    uint32_t last_rx_tick; /* wheel tick of the last frame, mod 2^32 */
    hm_conn_addr remote;   /* the peer's address (connects: the target) */
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
    /* atomic: direct sends handles may still make instead of waking this
     * loop: HM_LOOP_DIRECT_SENDS while it sleeps in epoll_wait, 0 while
     * it is awake (a heuristic only, ADR 0151). */
    _Atomic int direct_budget;

    /* I/O thread only. */
    hm_conn *conns;         /* registered conns */
    hm_listener *listeners; /* registered listeners */
    uint64_t now_ms;        /* hm_loop_now_ms() at the start of this turn */
    uint32_t inline_left;   /* frames this wake-up may still run here */
    /* True from epoll_wait's return until run_tasks() takes the stack: a
     * task this thread pushes meanwhile runs in that pass, so the push
     * needs no eventfd write (ADR 0235). */
    bool tasks_pass_due;
    /* The timing wheel of connection deadlines (timed.c): slot i holds
     * the conns due in a tick t with t % HM_WHEEL_SLOTS == i (possibly
     * some rounds later); a bit per non-empty slot. */
    uint64_t wheel_tick; /* the first tick not yet run */
    hm_conn *wheel[HM_WHEEL_SLOTS];
    uint64_t wheel_bits[HM_WHEEL_SLOTS / 64];

    /* Counters: relaxed atomics, read by hm_net_stats_get(). */
    _Atomic uint64_t accepted, accept_dropped, connected, closed, open,
        frames_in, bytes_in, bytes_out, write_full, read_pauses, direct_sends,
        inline_frames;
};

struct hm_net {
    hm_runtime *rt;
    int nloops;
    hm_loop *loops;
    uint32_t inline_turns; /* hm_net_config's; 0: never (ADR 0175) */
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

enum { POLICY_FULL_CLOSE = 1u << 0, POLICY_HALF_OPEN = 1u << 1 };

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
/* Sets TCP_USER_TIMEOUT on socket `fd` (0: leaves the kernel's default);
 * a failure is logged at debug level, nothing else. */
void hm_conn_set_user_timeout(int fd, uint32_t ms);
hm_err hm_conn_errno(int e);

/* conn_out.c (the conn's I/O thread). hm_conn_take_writes moves the
 * handles' writes onto the output queue (the rest of a direct send first,
 * non-bulk ahead of bulk not begun); hm_conn_flush_output sends the queue
 * until the socket is full (HM_OK) or fails (the error); hm_conn_drop_output
 * frees all of it. The output side (ADR 0151): hm_conn_io_acquire takes it
 * now or returns false (the holder schedules `c` when it lets go);
 * hm_conn_io_release lets go (handles may send directly again if the conn
 * is open and nothing is queued); hm_conn_io_acquire_for_good waits for a
 * handle's send in progress and keeps it, before the socket closes. */
void hm_conn_take_writes(hm_conn *c);
hm_err hm_conn_flush_output(hm_conn *c);
void hm_conn_drop_output(hm_conn *c);
bool hm_conn_io_acquire(hm_conn *c);
void hm_conn_io_release(hm_conn *c);
void hm_conn_io_acquire_for_good(hm_conn *c);

/* timed.c (the conn's I/O thread). hm_conn_set_deadline sets the state's
 * deadline (0: none) and refiles; hm_conn_refile files `c` at the nearest
 * of its deadline and its idle expiry, or takes it out of the wheel when
 * it has neither; hm_conn_unfile takes it out; hm_conn_mark_rx records a
 * frame now (the idle clock restarts); hm_conn_idle_due says when the
 * idle timeout expires (UINT64_MAX: never). hm_loop_run_wheel runs every
 * due conn's hm_conn_on_deadline and returns the next time to call it
 * (UINT64_MAX: none). */
void hm_conn_set_deadline(hm_conn *c, uint64_t deadline_ms);
void hm_conn_refile(hm_conn *c);
void hm_conn_unfile(hm_conn *c);
void hm_conn_mark_rx(hm_conn *c);
uint64_t hm_conn_idle_due(const hm_conn *c);
uint64_t hm_loop_run_wheel(hm_loop *loop, uint64_t now_ms);

/* listener.c. hm_conn_format_peer (any thread) writes "host:port" of `sa`
 * (borrowed) into out[0, cap). The rest run on the listener's loop thread,
 * or on the stopping thread after hm_net_stop. */
#define HM_CONN_PEER_LEN 64 /* "[v6 address]:port" and its NUL fit */
void hm_conn_format_peer(const struct sockaddr *sa, char *out, size_t cap);
void hm_listener_run_task(hm_listener *l);
void hm_listener_on_event(hm_listener *l, uint32_t events);
void hm_listener_on_deadline(hm_loop *loop, uint64_t now_ms, uint64_t *next_ms);
void hm_listener_stop(hm_listener *l);

#endif
