/* runtime/rt_impl.h: the layouts shared by the runtime's modules (private).
 *
 * No file outside runtime/ may include this header. The central object is
 * the address entry (struct hm_addr): it is at once the interned name, the
 * directory entry, the mailbox and, while a receiver is active, its
 * activation (handler, state, hooks). Keeping the mailbox in the entry rather
 * than in a separate activation object is the key decision (docs/adr/0002):
 * every message for a name goes to one queue that one worker at a time
 * drains, so deactivation is just another step of that worker's turn and can
 * never race a new message. */
#ifndef HM_RUNTIME_RT_IMPL_H
#define HM_RUNTIME_RT_IMPL_H

#include "runtime/mailbox.h"
#include "runtime/runtime.h"
#include "runtime/slab.h"
#include "runtime/timer.h"
#include "runtime/timer_intake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

/* Message flags. */
enum {
    MSG_REQUEST = 1u << 0, /* from and req_id identify a requester */
    MSG_REPLY = 1u << 1,   /* a reply (or error reply) to req_id */
    MSG_SYSTEM = 1u << 2,  /* runtime-internal; `sys` says which */
    MSG_REPLIED = 1u << 3, /* a request that has been answered */
};

/* System message kinds. */
enum {
    SYS_IDLE_CHECK = 1, /* the sweeper suspects the receiver is idle */
    SYS_TIMEOUT,        /* request req_id timed out */
    SYS_RETIRE,         /* deactivate now (hm_runtime_call's waiter) */
    SYS_BATCH,          /* fired timers' messages in one node (runtime.c) */
};

struct hm_msg {
    hm_node node; /* must be first: the mailbox links messages */
    const hm_type *type;
    void *payload; /* owned unless NULL */
    uint64_t arg;
    hm_addr *from; /* a reference, or NULL */
    uint64_t req_id;
    uint32_t flags;
    uint32_t sys;
};

/* Entry state bits (hm_addr.sflags). Written by the owning worker and, for
 * IDLECHK only, set by the sweeper; all writes are atomic RMWs. */
enum {
    ENT_ACTIVE = 1u << 0,   /* an activation is installed */
    ENT_PINNED = 1u << 1,   /* never idle-deactivated */
    ENT_PENDING = 1u << 2,  /* has requests outstanding */
    ENT_IDLECHK = 1u << 3,  /* an idle check is queued */
    ENT_NEEDHOOK = 1u << 4, /* spawned: activate hook not run yet */
    ENT_RAWREPLY = 1u << 5, /* replies go straight to the handler */
    /* hm_ctx_hold(): the worker ended a turn holding a message (at the
     * front of the mailbox) and left the entry off the run queues; set and
     * cleared by acq_rel CAS between that worker and hm_runtime_wake(). */
    ENT_HELD = 1u << 6,
    ENT_WOKEN = 1u << 7, /* hm_runtime_wake() came while it was running */
    ENT_ANYWHERE = 1u << 8, /* hm_receiver.runs_anywhere */
    /* Someone waits for room in this mailbox (room.c, ADR 0240): a thread
     * in hm_runtime_send_wait() or a room notice. Set by the waiter with
     * a seq_cst RMW, cleared by the consumer when `queued` falls to the
     * low-water mark; the consumer reads it after each turn's subtraction
     * from `queued` (a Dekker pair with the waiter's read of `queued`). */
    ENT_ROOMWAIT = 1u << 9,
};

typedef struct hm_pending {
    uint64_t req_id;
    hm_reply_fn cont;
    void *arg;
    hm_timer_id timer;
} hm_pending;

typedef struct hm_pending_set {
    uint32_t count, cap;
    hm_pending items[];
} hm_pending_set;

struct hm_addr {
    /* `queued` sits right before the mailbox, so that a send's two RMWs
     * (this count, then the exchange of mb.head) usually hit one cache
     * line (always unless the entry starts in the last 8 bytes of one). */
    _Atomic uint32_t queued;     /* messages in mb (for bound and HWM) */
    _Atomic uint32_t refs;       /* handle references */
    hm_mailbox mb;
    /* The activation; owned by the worker running the entry. */
    hm_handler_fn handler;
    void *state;
    const hm_hooks *hooks;
    hm_pending_set *pending;
    _Atomic uint32_t sflags;     /* ENT_* */
    _Atomic uint32_t last_epoch; /* sweep epoch of the last delivery */
    _Atomic uint32_t limit;      /* mailbox bound, 0 = none */
    /* Immutable, NUL-terminated; starts right after `limit` (offset 76 on
     * LP64), so an entry is offsetof(hm_addr, name) + len + 1 bytes. The
     * directory's slot holds the name's hash (docs/adr/0140). */
    char name[];
};

/* Per-thread counters: written only by their owner thread (relaxed load and
 * store, no RMW), read by anyone with relaxed loads. */
typedef struct hm_counters {
    _Alignas(64) _Atomic uint64_t sent;
    _Atomic uint64_t delivered, activations, deactivations;
    _Atomic uint64_t dead_letters, timers_fired, handler_errors, hwm;
} hm_counters;

#define HM_RUNQ_SIZE 256u

typedef struct hm_runq {
    _Atomic uint32_t head; /* consumers (owner and thieves) CAS it */
    _Atomic uint32_t tail; /* written by the owner only */
    _Atomic(hm_addr *) slot[HM_RUNQ_SIZE];
} hm_runq;

typedef struct hm_steal_look {
    uint32_t head, tail;
    uint64_t at_ns; /* 0: never looked */
} hm_steal_look;

typedef struct hm_worker {
    hm_runtime *rt;
    int index;
    pthread_t thread;
    _Atomic(hm_addr *) runnext; /* the receiver woken last by this worker */
    hm_runq q;
    /* Owner only: the receiver the current message of this worker's turn
     * woke last (hm_sched_wake), not yet counted in rt->busy and not yet
     * visible to anyone. If the turn's receiver parks right after that
     * message, the woken one inherits its count and runs next here without
     * a single atomic; otherwise hm_sched_flush() schedules it as usual. */
    hm_addr *next;
    uint32_t turns;    /* turns taken so far (wraps) */
    uint32_t check_at; /* the next turn that looks at global and ring */
    uint64_t rng;
    /* Owner only: receivers this worker parked and has not yet taken off
     * rt->busy (docs/adr/0205). rt->busy never counts less than the
     * receivers not parked: a wake on this worker spends one of these
     * instead of adding to busy, and the rest is subtracted whenever the
     * worker runs out of local work, before it steals, spins or sleeps. */
    int64_t busy_owed;
    /* Owner only: how long this worker's next idle spin may last (ns):
     * SPIN_NS after a spin that found work, halved after each one that
     * found none, down to SPIN_NS / 16 (sched.c, docs/adr/0250). */
    uint32_t spin_ns;
    /* Thief only: for each worker (by index), its ring's head when this
     * one first saw it there, and when (sched.c's ring_stale, ADR 0285).
     * One block for all workers, freed through workers[0]. */
    hm_steal_look *looks;
    hm_counters st;
} hm_worker;

#define HM_DIR_SHARDS 64u

/* Room waits (room.c, ADR 0240): entries hash to one of these slots; a
 * mailbox drained to its low-water mark bumps its slot's `seq` (the futex
 * word senders blocked in hm_runtime_send_wait() sleep on) and sends the
 * room notices registered for it. */
#define HM_ROOM_SLOTS 16u
typedef struct hm_room_notice hm_room_notice; /* room.c */
typedef struct hm_batch hm_batch;             /* batch.c */
typedef struct hm_room_slot {
    /* seq_cst (all three atomics): Dekker pairs between waiters and the
     * consumer that drains, documented at their uses in room.c. */
    _Alignas(64) _Atomic uint32_t seq; /* futex word: bumped per drain */
    _Atomic uint32_t sleepers;         /* threads in a wait on this slot */
    _Atomic uint32_t notices;          /* records in `list` */
    pthread_mutex_t lock;
    hm_room_notice *list; /* guarded by: lock */
} hm_room_slot;

/* One shard of the directory: an open-addressing table (linear probing)
 * of 64-bit slots, each an entry's address and 20 bits of its name's hash
 * (directory.c), 0 when empty. */
typedef struct hm_shard {
    pthread_mutex_t lock;
    uint64_t *slots; /* guarded by: lock; mask + 1 of them */
    uint32_t mask;   /* guarded by: lock */
    uint32_t count;  /* guarded by: lock; entries in slots */
    hm_slab_cache cache; /* guarded by: lock; this shard's entries */
} hm_shard;

struct hm_runtime {
    hm_runtime_config cfg;
    uint32_t batch;
    uint32_t idle_timeout_ms;
    uint32_t sweep_period_ms;
    bool manual;

    _Atomic bool closing;  /* sends fail once set */
    _Atomic bool stopping; /* workers exit once set */

    hm_shard shards[HM_DIR_SHARDS];
    struct hm_slab *entries; /* the shards' entries (runtime/slab.h) */
    struct hm_arena *tables; /* the shards' large tables (runtime/arena.h) */

    /* Scheduler (sched.c). */
    int nworkers;
    hm_worker *workers;  /* nworkers, or 1 in manual mode (not a thread) */
    pthread_mutex_t gq_lock;
    hm_addr **gq;        /* guarded by: gq_lock; a ring */
    uint32_t gq_head, gq_count, gq_cap; /* guarded by: gq_lock */
    _Atomic uint32_t gq_size;           /* mirror of gq_count for peeking */
    pthread_mutex_t sleep_lock;
    pthread_cond_t sleep_cond;
    _Atomic int sleepers;
    _Atomic int spinning;
    /* Whether idle workers spin before they sleep: not when the process
     * may use one core only (taskset), where a spinning worker holds the
     * core the thread that would give it work needs (ADR 0235). Set at
     * create, before any thread starts; hm_runtime_has_spare_core(). */
    bool spin;

    /* Quiescence (hm_runtime_wait_idle). */
    _Atomic int64_t busy; /* entries not parked */
    _Atomic int idle_waiters;
    pthread_mutex_t idle_lock;
    pthread_cond_t idle_cond;

    /* Timers and the sweeper (timer thread, or the manual clock). */
    pthread_mutex_t timer_lock;
    pthread_cond_t timer_cond;
    hm_timers timers;       /* guarded by: timer_lock */
    /* Arms nobody can cancel, filed into `timers` by the holder of
     * timer_lock before it uses them (timer_intake.h, docs/adr/0250). */
    hm_timer_intake intake;
    uint64_t next_sweep_ms; /* guarded by: timer_lock */
    uint64_t pass_start_ms; /* owned by the sweeping thread */
    uint32_t sweep_cursor;  /* next shard; owned by the sweeping thread */
    bool timer_stop;        /* guarded by: timer_lock */
    /* Written under timer_lock: when the sleeping timer thread wakes; 0
     * while awake. seq_cst store before its last intake drain and seq_cst
     * load after an intake claim (docs/adr/0250): an arm either is seen by
     * that drain or sees the deadline and signals timer_cond. */
    _Atomic uint64_t timer_wait_until;
    /* Emptied batch arrays (batch.c, a Treiber stack: pushed with a
     * release CAS by the unpacking workers, taken whole with an acquire
     * exchange by a firing thread) and how many are spare, on it or on a
     * firing thread's private list (relaxed: a bound, not a
     * synchronisation). */
    _Atomic(struct hm_batch *) batch_spare;
    _Atomic uint32_t batch_nspare;
    bool timer_started;
    pthread_t timer_thread;
    _Atomic uint64_t manual_now_ms;
    _Atomic uint32_t epoch; /* sweep passes so far */

    _Atomic uint64_t next_req_id;
    _Atomic uint64_t next_call_id;
#define HM_EXT_SHARDS 16u
    /* Events on non-worker threads: shard i > 0 is written by the one
     * thread that holds index i (owner stores, as a worker's counters);
     * shard 0 by RMWs, from threads holding no index (runtime.c). */
    hm_counters ext[HM_EXT_SHARDS];

    /* Room waits and notices (room.c). room_waiters counts the threads
     * inside hm_runtime_send_wait()'s sleep loop (seq_cst: destroy waits
     * for zero after it has woken them all). */
    hm_room_slot room[HM_ROOM_SLOTS];
    _Atomic uint32_t room_waiters;

    pthread_mutex_t types_lock;
    const hm_type **types; /* guarded by: types_lock */
    size_t ntypes, types_cap;
    /* Durable state (durable.c): the reminder table; NULL without a
     * store. Set in hm_runtime_create before any message or reminder can
     * reach a worker, then immutable. */
    struct hm_durable *durable;
};

struct hm_ctx {
    hm_runtime *rt;
    hm_worker *w; /* NULL on the closing thread */
    hm_addr *self;
    bool deactivate;
    bool hold;    /* hm_ctx_hold() was called on this message */
    hm_msg *held; /* the message the handler held, back in the mailbox */
    uint32_t delivered; /* handler calls this turn, not yet counted */
};

/* Counter helpers: the owner thread's relaxed increment. */
static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    /* relaxed: only the owner writes; readers want an estimate. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Initialises a mutex that spins briefly before sleeping (glibc's adaptive
 * kind): the runtime's locks are held for short, bounded work, and on this
 * kind of VM a futex wake-up costs more than the wait it saves. */
void hm_rt_mutex_init(pthread_mutex_t *m);

/* The worker running on this thread, if it belongs to `rt` (inline: every
 * send from outside a handler asks). Set by sched.c only. */
extern _Thread_local hm_worker *hm_sched_tl_worker;
static inline hm_worker *hm_sched_self(hm_runtime *rt)
{
    hm_worker *w = hm_sched_tl_worker;
    return w && w->rt == rt ? w : NULL;
}

/* sched.c */
void hm_sched_init(hm_runtime *rt);
hm_err hm_sched_start(hm_runtime *rt);
void hm_sched_stop(hm_runtime *rt);
void hm_sched_fini(hm_runtime *rt);
/* Schedules a receiver already counted in rt->busy (hm_runtime_wake).
 * Any thread. */
void hm_sched_schedule(hm_runtime *rt, hm_addr *e);
/* The caller found e's mailbox parked (a push or a spawn): counts it in
 * rt->busy and schedules it. `w` is hm_sched_self(rt). On a worker (inside a
 * turn: nothing else on a worker thread sends; a guest of
 * hm_runtime_send_here is not one) the receiver goes to w->next instead,
 * uncounted, until the message ends (hm_sched_flush or the hand-off
 * at park in hm_rt_run_entry). */
void hm_sched_wake_slow(hm_runtime *rt, hm_worker *w, hm_addr *e);
static inline void hm_sched_wake(hm_runtime *rt, hm_worker *w, hm_addr *e)
{
    if (w && !w->next && w->index >= 0 && !rt->manual)
        w->next = e; /* the common case of hm_sched_wake_slow() */
    else
        hm_sched_wake_slow(rt, w, e);
}
/* After a message of w's turn: counts and schedules w->next, if any. */
void hm_sched_flush_slow(hm_runtime *rt, hm_worker *w);
static inline void hm_sched_flush(hm_runtime *rt, hm_worker *w)
{
    if (w->next)
        hm_sched_flush_slow(rt, w);
}
/* The worker's next turn when the last one handed a receiver over
 * (w->next) and neither the global queue nor the ring is due, nor an older
 * receiver waits in runnext: that receiver, or NULL (then the scheduler's
 * find_local decides, w->next included). */
static inline hm_addr *hm_sched_take_handoff(hm_worker *w)
{
    hm_addr *e = w->next;

    /* relaxed: only this worker stores a receiver into its runnext
     * (thieves only take it), so NULL stays NULL. */
    if (!e || w->turns + 1 == w->check_at ||
        atomic_load_explicit(&w->runnext, memory_order_relaxed))
        return NULL;
    w->turns++;
    w->next = NULL;
    return e;
}
/* True if nothing else waits for worker `w` (a real worker, not a guest,
 * not manual mode): no w->next, runnext, ring or global queue. A turn that
 * used its whole batch then takes another batch at once instead of going
 * back on the ring, where an idle worker spinning for work would steal it
 * (the receiver's entry, state and messages then move between cores; in
 * `fanin` both workers ran the one sink, half its turns each). */
bool hm_sched_alone(hm_runtime *rt, hm_worker *w);
/* The owner worker puts back a receiver that still has messages. */
void hm_sched_requeue(hm_runtime *rt, hm_worker *w, hm_addr *e);
/* Manual mode: the next scheduled receiver, or NULL. */
hm_addr *hm_sched_take_global(hm_runtime *rt);

/* runtime.c */
void hm_rt_run_entry(hm_runtime *rt, hm_worker *w, hm_addr *e);
hm_err hm_rt_push(hm_runtime *rt, hm_addr *e, hm_msg *m, bool bounded);
/* batch.c */
#define HM_RT_BATCH_MAX 64u /* messages in one batch node at most */
/* Pushes `n` messages (taken, 1 <= n <= HM_RT_BATCH_MAX) to `e` as one
 * mailbox node that the turn unpacks in order (docs/adr/0180); unbounded:
 * the caller checks that `e` has no mailbox limit. `cache` is the calling
 * thread's private list of spare arrays (NULL at first; one list per
 * thread, dropped with hm_rt_batch_cache_drop), refilled from the
 * runtime's spares (docs/adr/0280). Any thread. */
void hm_rt_push_batch(hm_runtime *rt, hm_addr *e, hm_msg *const *ms,
                      uint32_t n, hm_batch **cache);
/* Frees a private list of spare arrays and sets `*cache` to NULL. */
void hm_rt_batch_cache_drop(hm_runtime *rt, hm_batch **cache);
/* Frees the runtime's spare arrays; no thread may push or unbatch. */
void hm_rt_batch_spares_fini(hm_runtime *rt);
/* The type of a batch node (read by hm_rt_unbatch only). */
extern const hm_type hm_rt_batch_type;
/* hm_rt_unbatch() on a batch. */
void hm_rt_unbatch_open(hm_runtime *rt, hm_node **tail, hm_msg *m);
/* Consumer of a mailbox only: if `m` (just popped) is such a batch, puts
 * its messages back at the front of the mailbox in order, gives its array
 * back to the spares, frees the node and returns true; else false.
 * `tail` is the consumer's end: &mb->tail, or the turn's local copy
 * (hm_mailbox_pop_at). Inline: the turn asks it of every message. */
static inline bool hm_rt_unbatch(hm_runtime *rt, hm_node **tail, hm_msg *m)
{
    if (m->type != &hm_rt_batch_type)
        return false;
    hm_rt_unbatch_open(rt, tail, m);
    return true;
}
/* A turn parked its receiver: one less in rt->busy. On a worker, the
 * subtraction is deferred (hm_worker.busy_owed). */
void hm_rt_busy_dec(hm_runtime *rt);
/* Subtracts `n` from rt->busy now, waking idle waiters at zero. */
void hm_rt_busy_sub(hm_runtime *rt, int64_t n);
void hm_rt_dead_letter(hm_runtime *rt, hm_worker *w, hm_addr *e, hm_msg *m,
                       hm_err reason);
uint64_t hm_rt_now_ms(hm_runtime *rt);
/* Counts `n` events on the calling (non-worker) thread's shard of
 * rt->ext: inline once the thread holds a shard of its own
 * (hm_rt_ext_index, runtime.c), which is every send after its first. */
extern _Thread_local unsigned hm_rt_ext_index;
void hm_rt_count_ext_slow(hm_runtime *rt, size_t field, uint64_t n);
static inline void hm_rt_count_ext(hm_runtime *rt, size_t field, uint64_t n)
{
    unsigned i = hm_rt_ext_index;

    if (i)
        counter_add((_Atomic uint64_t *)((char *)&rt->ext[i] + field), n);
    else
        hm_rt_count_ext_slow(rt, field, n);
}
/* Counts one event on `w` (owner store) or, when NULL, on the calling
 * thread's shard of the non-worker counters. A guest of
 * hm_runtime_send_here counts in its own struct, which the call adds to
 * the thread's shard when it ends (hm_rt_fold_counters), so this path has
 * no test for guests. `field` is offsetof(hm_counters, x). */
static inline void hm_rt_count(hm_runtime *rt, hm_worker *w, size_t field)
{
    if (w)
        counter_add((_Atomic uint64_t *)((char *)&w->st + field), 1);
    else
        hm_rt_count_ext(rt, field, 1);
}
/* Adds `c` (a guest's counters, on the calling thread) to the calling
 * thread's shard of the non-worker counters. */
void hm_rt_fold_counters(hm_runtime *rt, const hm_counters *c);
#define HM_COUNT(rt, w, f) hm_rt_count((rt), (w), offsetof(hm_counters, f))
/* Ends e's activation (hook, pending requests), inside its turn. */
void hm_rt_deactivate(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                      hm_deactivate_reason why);
/* Sends with `from` (may be NULL) as the sender; as hm_runtime_send(). */
hm_err hm_rt_send_from(hm_runtime *rt, hm_addr *from, hm_addr *to,
                       hm_msg *m);
/* Manual mode: runs scheduled receivers on this thread until none. */
size_t hm_sched_run_manual(hm_runtime *rt);
/* Hands `m` to the handler of the active entry `e` (takes `m`). */
void hm_rt_deliver(hm_runtime *rt, hm_ctx *ctx, hm_addr *e, hm_msg *m);
hm_err hm_rt_spawn(hm_runtime *rt, const char *name, const hm_receiver *r,
                   bool internal, hm_addr **out);

/* directory.c */
void hm_dir_init(hm_runtime *rt);
void hm_dir_fini(hm_runtime *rt);
uint32_t hm_dir_hash(const char *name, size_t len);
/* Measures and hashes a name in one pass: false if it is NULL, empty or
 * longer than HM_ADDR_MAX_LEN; else its length and hm_dir_hash(). */
bool hm_dir_hash_name(const char *name, size_t *len_out, uint32_t *hash_out);
hm_shard *hm_dir_shard(hm_runtime *rt, uint32_t hash);
/* Finds or creates the entry for `name` in `sh`; caller holds sh->lock. */
hm_addr *hm_dir_get_locked(hm_runtime *rt, hm_shard *sh, const char *name,
                           size_t len, uint32_t hash);
/* Runs the part of the current sweep pass (idle checks, reclamation) that
 * is due at `now_ms`; returns when to call again. One thread at a time. */
uint64_t hm_dir_sweep_step(hm_runtime *rt, uint64_t now_ms);
/* Calls fn on every entry; single-threaded use at close. */
void hm_dir_each(hm_runtime *rt, void (*fn)(hm_runtime *, hm_addr *));
uint64_t hm_dir_count(hm_runtime *rt);
/* Bytes of the entries held in the slab, and of the tables mapped outside
 * malloc (for hm_runtime_stats_get). */
void hm_dir_bytes(hm_runtime *rt, uint64_t *entries, uint64_t *tables);
/* True if the entry has not had a delivery for the idle timeout. */
bool hm_rt_idle_expired(hm_runtime *rt, hm_addr *e);
/* Drops `n` references to `a` at once, as n hm_addr_release() would (the
 * timer thread, for a run of fired timers to one receiver). */
void hm_dir_release_n(hm_addr *a, uint32_t n);

/* request.c */
void hm_req_handle_reply(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                         hm_msg *m);
void hm_req_handle_timeout(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                           hm_msg *m);
void hm_req_drop_all(hm_runtime *rt, hm_addr *e);
/* Sends an error reply for an unanswered request `m` (borrowed). */
void hm_req_error_reply(hm_runtime *rt, hm_addr *self, hm_msg *m,
                        hm_err code);

/* timers glue (runtime.c) */
hm_err hm_rt_arm(hm_runtime *rt, hm_addr *to, hm_msg *msg, uint32_t delay_ms,
                 uint32_t period_ms, uint64_t tag, hm_timer_id *id_out);

/* room.c (ADR 0240) */
void hm_room_init(hm_runtime *rt);
/* After `closing` is set: wakes every waiter and waits until none is
 * left in the runtime's code. */
void hm_room_close(hm_runtime *rt);
/* hm_runtime_send_wait() after its first send was refused (runtime.c
 * inlines the first send; this is out of line). */
hm_err hm_room_send_wait_slow(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                              uint32_t timeout_ms);
/* Threads inside hm_runtime_send_wait() past a refused send, now. */
uint32_t hm_room_waiting(hm_runtime *rt);
/* Frees the notices never sent (after the workers have stopped). */
void hm_room_fini(hm_runtime *rt);
/* The consumer of e's mailbox, having just taken messages off `queued`
 * (now `left`), wakes what waits for room once `left` is at the mark. */
void hm_room_drained_slow(hm_runtime *rt, hm_addr *e, uint32_t left);
static inline void hm_room_drained(hm_runtime *rt, hm_addr *e, uint32_t left)
{
    /* seq_cst: after the seq_cst subtraction from `queued` that made
     * `left`; a waiter sets the flag and then reads `queued`, so one of
     * the two sees the other (on x86 this load is a plain mov). */
    if (atomic_load(&e->sflags) & ENT_ROOMWAIT)
        hm_room_drained_slow(rt, e, left);
}

/* msg.c */
hm_msg *hm_msg_alloc(void);
void hm_msg_set_from(hm_msg *m, hm_addr *from);

#endif
