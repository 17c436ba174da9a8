/* runtime/runtime.h: the Hermes actor runtime, the one public header.
 *
 * Receivers are plain C functions with state, addressed by name
 * ("chat/user/alice"). A receiver does not exist until a message arrives for
 * its address: then the runtime asks the factory for it (its activation),
 * runs it one message at a time on a fixed pool of worker threads, parks it
 * when its mailbox is empty (no thread, no CPU), and after an idle timeout
 * deactivates it: its hook saves and frees the state, and the next message
 * activates it again through the factory. Timers, request/reply and
 * deactivation all address receivers by name, so a message is never lost
 * because the receiver it was meant for happened to be asleep.
 *
 * docs/runtime.md is the guide, with a complete example; this header is the
 * contract. Ownership words (takes, borrows, returns owned, returns
 * borrowed) are used as in ../shared/STYLE.md section 6. */
#ifndef HM_RUNTIME_RUNTIME_H
#define HM_RUNTIME_RUNTIME_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t; /* jansson's value type; only the codec hooks mention it */
struct hm_store;       /* durable state: runtime/store.h */
struct hm_state_codec; /* runtime/store.h */

typedef struct hm_runtime hm_runtime;
typedef struct hm_addr hm_addr; /* an interned address: a receiver's name */
typedef struct hm_msg hm_msg;
typedef struct hm_ctx hm_ctx; /* the running receiver's view, one call */
typedef uint64_t hm_timer_id; /* 0 is never a valid id */

/* ---------------------------------------------------------------- types */

/* A message type. Define one `static const hm_type` per kind of message and
 * compare pointers to dispatch (`if (hm_msg_type(m) == &SAY_TYPE)`).
 * `name` is the stable wire name ("chat.say") used when the message crosses
 * a network link; register the type with hm_runtime_register_type() so a
 * decoder can find it by name. All hooks are optional. */
typedef struct hm_type {
    const char *name;
    /* Frees a payload the message still owns when it is destroyed. NULL: the
     * payload is not owned (NULL, static, or a borrowed pointer). */
    void (*free)(void *payload);
    /* Codec. to_json borrows `payload` and returns owned JSON, or NULL if
     * it cannot encode it. from_json borrows `json` and, on HM_OK, writes a
     * payload that the message will own. */
    struct json_t *(*to_json)(const void *payload);
    hm_err (*from_json)(const struct json_t *json, void **payload_out);
    /* Optional string codec, for types whose JSON form is a string: a
     * link may use it instead of building a json_t (cluster/fast_encode.c, ADR
     * 0170). to_string borrows `payload` and returns its string (borrowed
     * from the payload, UTF-8 without NUL, `*len` bytes), or NULL if it
     * cannot.
     * from_string borrows `s` (`len` bytes, UTF-8, may hold NUL) and, on
     * HM_OK, writes a payload that the message will own. Both must agree
     * with to_json/from_json, which stay required for every other use. */
    const char *(*to_string)(const void *payload, size_t *len);
    hm_err (*from_string)(const char *s, size_t len, void **payload_out);
} hm_type;

/* Built-in types. */
extern const hm_type hm_type_error;   /* an error reply; arg = hm_err */
extern const hm_type hm_type_timeout; /* a request timed out; req_id set */
extern const hm_type hm_type_tick;    /* a periodic timer; arg = its tag */
extern const hm_type hm_type_json;    /* payload: an owned json_t * */

/* ------------------------------------------------------------- messages */

/* A message: a type, a payload whose ownership moves with the message (it is
 * never copied locally), and a small inline argument. Takes `payload`.
 * Returns owned (never NULL). */
hm_msg *hm_msg_create(const hm_type *type, void *payload, uint64_t arg);
/* Frees `m` and the payload it still owns. Accepts NULL. */
void hm_msg_destroy(hm_msg *m);

const hm_type *hm_msg_type(const hm_msg *m);
/* Returns borrowed: valid while the message lives and still owns it. */
void *hm_msg_payload(const hm_msg *m);
uint64_t hm_msg_arg(const hm_msg *m);
/* The sending receiver, or NULL when sent from outside a receiver.
 * Returns borrowed: valid while the message lives (take a reference with
 * hm_addr_ref() to keep it). */
hm_addr *hm_msg_from(const hm_msg *m);
/* Correlation id: non-zero on requests, replies and request timeouts. */
uint64_t hm_msg_req_id(const hm_msg *m);
/* True if this message is a reply (or a request's timeout or error). */
bool hm_msg_is_reply(const hm_msg *m);
/* Moves the payload out: returns owned (the caller frees it); the message
 * no longer owns a payload. */
void *hm_msg_take_payload(hm_msg *m);
/* A new message with m's type, payload and argument, moved out of `m`
 * (which keeps no payload). For forwarding. Returns owned. */
hm_msg *hm_msg_move(hm_msg *m);

/* Encodes the payload with the type's codec. Returns owned JSON on HM_OK.
 * Errors: HM_ECODEC if the type has no codec or it failed. */
hm_err hm_msg_to_json(const hm_msg *m, struct json_t **out);
/* Decodes a payload of a registered type named `type_name`. Borrows `json`.
 * Returns an owned message on HM_OK. Errors: HM_ENOTFOUND (no such type),
 * HM_ECODEC (no decoder), or the decoder's error. */
hm_err hm_msg_from_json(hm_runtime *rt, const char *type_name,
                        const struct json_t *json, uint64_t arg,
                        hm_msg **out);

/* ------------------------------------------------------------ receivers */

/* Handles one message. `msg` is borrowed: the runtime frees it after the
 * call (take the payload with hm_msg_take_payload() to keep it). Returning
 * an error discards this activation: the error is logged with the address,
 * the deactivate hook runs, and the next message activates it afresh. */
typedef hm_err (*hm_handler_fn)(hm_ctx *ctx, void *state, hm_msg *msg);

typedef enum {
    HM_DEACTIVATE_IDLE,      /* idle timeout */
    HM_DEACTIVATE_REQUESTED, /* the receiver called hm_ctx_deactivate() */
    HM_DEACTIVATE_ERROR,     /* its handler returned an error */
    HM_DEACTIVATE_CLOSE,     /* the runtime is closing */
} hm_deactivate_reason;

typedef struct hm_hooks {
    /* Runs once before the first message of an activation (load state
     * here). An error refuses the activation: the message that caused it
     * goes to dead letters and the next one tries again. */
    hm_err (*activate)(hm_ctx *ctx, void *state);
    /* Runs exactly once when the activation ends, for any reason (save
     * state here). Takes `state`: the hook frees it. Messages sent from it
     * are delivered, except when the runtime is closing. */
    void (*deactivate)(hm_ctx *ctx, void *state, hm_deactivate_reason why);
    /* Durable state (runtime/store.h): with a codec and a store, the state
     * is loaded before `activate` and saved before `deactivate`. NULL: not
     * durable. Borrowed (static). */
    const struct hm_state_codec *durable;
} hm_hooks;

/* What a factory returns: an activation. */
typedef struct hm_receiver {
    hm_handler_fn handler;  /* required */
    void *state;            /* owned by the activation; see hooks */
    const hm_hooks *hooks;  /* borrowed for the activation's life; NULL ok */
    uint32_t mailbox_limit; /* 0: the runtime's default */
    bool pinned;            /* never deactivated for being idle */
    /* Its handler and hooks never block, so a thread that is not a worker
     * may run its turns (hm_runtime_send_here(), ADR 0175). */
    bool runs_anywhere;
} hm_receiver;

/* Called on a worker when a message arrives for `name` and no activation is
 * live. Fills `out` and returns HM_OK, or returns an error to refuse: the
 * message goes to dead letters and a request gets an error reply at once.
 * Called from any worker, concurrently for different names. */
typedef hm_err (*hm_factory_fn)(void *arg, const char *name,
                                hm_receiver *out);

/* A message that could not be delivered: the factory refused, the mailbox
 * bound was hit on a timer or reply, or the runtime closed with it queued.
 * `msg` is borrowed; the runtime frees it after the call. Any thread. */
typedef void (*hm_dead_letter_fn)(void *arg, const char *to_name,
                                  const hm_msg *msg, hm_err reason);

/* ------------------------------------------------------------- runtime */

typedef struct hm_runtime_config {
    int threads;              /* workers; 0: the cores we may run on */
    bool manual;              /* deterministic: no threads, a manual clock */
    uint32_t idle_timeout_ms; /* 0: 60000; UINT32_MAX: never */
    uint32_t batch;           /* messages per turn; 0: 64 */
    uint32_t mailbox_limit;   /* default bound; 0: unbounded */
    hm_factory_fn factory;    /* NULL: only spawned receivers exist */
    void *factory_arg;
    hm_dead_letter_fn dead_letter; /* NULL: counted and logged at DEBUG */
    void *dead_letter_arg;
    /* Durable state and reminders (runtime/store.h); borrowed, must outlive
     * the runtime. NULL: nothing is durable. */
    struct hm_store *store;
} hm_runtime_config;

/* Creates and starts a runtime. Borrows `cfg`. Returns owned on HM_OK.
 * Errors: HM_EINVAL (bad config), HM_ESYS (a thread could not start). */
hm_err hm_runtime_create(const hm_runtime_config *cfg, hm_runtime **out);

/* Closes and frees the runtime: new sends fail with HM_ECLOSED, each running
 * receiver finishes its current message, queued messages go to dead letters
 * (reason HM_ECLOSED), every live activation's deactivate hook runs (reason
 * HM_DEACTIVATE_CLOSE), timers are cancelled, every thread is joined and all
 * memory freed. Call from outside the runtime (never from a handler).
 * Accepts NULL. All hm_addr references die with it. */
void hm_runtime_destroy(hm_runtime *rt);

/* Registers `type` so that hm_msg_from_json() finds it by name. Borrows
 * `type` for the runtime's life. Errors: HM_EEXIST (another type has the
 * name), HM_EINVAL (no name). Thread-safe. */
hm_err hm_runtime_register_type(hm_runtime *rt, const hm_type *type);
/* Returns borrowed (the registered type), or NULL. Thread-safe. */
const hm_type *hm_runtime_find_type(hm_runtime *rt, const char *name);

/* ------------------------------------------------------------ addresses */

#define HM_ADDR_MAX_LEN 1024 /* bytes in a name, without the NUL */

/* Interns `name` (borrowed): returns an owned reference to its handle, the
 * same handle for the same name while any reference lives. Sends through a
 * handle never hash the name again. Names starting with '$' are reserved
 * for the runtime. Errors: HM_EINVAL (empty, too long, or reserved),
 * HM_ECLOSED. Thread-safe. */
hm_err hm_runtime_intern(hm_runtime *rt, const char *name, hm_addr **out);
/* Takes another reference. Returns `a`. Thread-safe. */
hm_addr *hm_addr_ref(hm_addr *a);
/* Drops a reference. The handle is reclaimed by the runtime once it has no
 * references, no activation and no queued message. Accepts NULL. */
void hm_addr_release(hm_addr *a);
/* Returns borrowed: valid while a reference is held. */
const char *hm_addr_name(const hm_addr *a);

/* --------------------------------------------------------------- sending */

/* Queues `msg` for `to` (borrowed). Thread-safe and non-blocking, from any
 * thread. Takes `msg` on HM_OK; on error the caller still owns it. The
 * message has no sender (see hm_ctx_send()). Messages from one thread (or
 * one receiver) to one receiver are handled in send order.
 * Errors: HM_ECLOSED (runtime closing), HM_EFULL (mailbox bound). */
hm_err hm_runtime_send(hm_runtime *rt, hm_addr *to, hm_msg *msg);
/* The same, by name (borrowed). Errors also: HM_EINVAL (bad name). */
hm_err hm_runtime_send_name(hm_runtime *rt, const char *name, hm_msg *msg);
/* Like hm_runtime_send(), with `from` (borrowed; the message takes a
 * reference; NULL: no sender) as the sender: for layers that deliver a
 * message on another's behalf, such as the cluster delivering a message
 * that came from another node under its original sender's name. */
hm_err hm_runtime_send_from(hm_runtime *rt, hm_addr *from, hm_addr *to,
                            hm_msg *msg);

/* Backpressure for threads outside the runtime (ADR 0240), like a send
 * on a full buffered channel in Go: as hm_runtime_send(), but when `to`'s
 * mailbox bound (hm_receiver.mailbox_limit) refuses the message, the
 * calling thread sleeps (a futex, no spinning, no CPU) until the receiver
 * has drained its mailbox to half the bound, then tries again, for up to
 * `timeout_ms` in all (UINT32_MAX: no limit; 0: never sleeps). Messages
 * from one thread still arrive in send order. Takes `msg` on HM_OK; on
 * error the caller still owns it. Never sleeps on a worker, inside a
 * handler, on a guest of hm_runtime_send_here() or in manual mode: there
 * it is hm_runtime_send() and returns HM_EFULL (a receiver asks for a
 * notice instead: hm_ctx_notify_room()). A receiver that holds its
 * message (hm_ctx_hold()) does not drain, so its senders sleep until it
 * is woken. A thread asleep here when hm_runtime_destroy() starts returns
 * HM_ECLOSED, and destroy waits for it to leave the call (no thread may
 * start a call once destroy has started, as for every other call).
 * Errors: HM_ECLOSED, HM_ETIMEDOUT (still full at the deadline),
 * HM_EFULL (on a worker or in manual mode). */
hm_err hm_runtime_send_wait(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                            uint32_t timeout_ms);

/* Like hm_runtime_send(), but when the send makes `to` runnable, the
 * calling thread runs its turn itself instead of waking a worker, then the
 * turns of the receivers that turn made runnable (each taking the one
 * before's place, as a worker's runnext does), up to `max_turns` turns in
 * all; what is still runnable then goes to the workers. For a thread that
 * is not a worker (an I/O loop, ADR 0175) when every worker sleeps, so a
 * hand-off would cost a wake-up: the handlers run on the caller's thread,
 * so it must be one that may run them (they must not block). On a worker,
 * in manual mode or with `max_turns` 0 it is hm_runtime_send(). */
hm_err hm_runtime_send_here(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                            uint32_t max_turns);
/* True when no worker is running or spinning: all sleep, so waking one
 * costs a context switch. A hint, stale as soon as it is read. */
bool hm_runtime_workers_idle(hm_runtime *rt);
/* True when the process may run on more than one core (its affinity at
 * hm_runtime_create), so a worker woken by this thread can run beside it;
 * false under `taskset -c N`, where a hand-off only adds context switches
 * (ADR 0235). */
bool hm_runtime_has_spare_core(hm_runtime *rt);

/* Creates the activation of `name` now with `r` (borrowed; the activation
 * takes r->state). Optionally returns an owned reference in `out` (may be
 * NULL). The activate hook runs on a worker before the first message.
 * Errors: HM_EEXIST (a live activation exists), HM_EINVAL, HM_ECLOSED. */
hm_err hm_runtime_spawn(hm_runtime *rt, const char *name,
                        const hm_receiver *r, hm_addr **out);

/* Blocking request from outside the runtime (main, tests): sends `msg` to
 * `to` as a request and waits up to `timeout_ms` for the reply, returned
 * owned in `reply_out` (an hm_type_error reply comes back as HM_OK too: check
 * its type). Takes `msg` on HM_OK or HM_ETIMEDOUT. Never call it from a
 * handler (HM_EINVAL). In manual mode it runs the runtime until idle and
 * times out if no reply came. Errors: HM_ETIMEDOUT, HM_ECLOSED, HM_EFULL. */
hm_err hm_runtime_call(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                       uint32_t timeout_ms, hm_msg **reply_out);

/* Asks the activation of `a` (borrowed) to end once the messages queued
 * before this call are handled: its deactivate hook runs with reason
 * HM_DEACTIVATE_REQUESTED, even if pinned, and the next message activates
 * it again. Does nothing if it is not active by then. For layers that move
 * receivers between nodes. Errors: HM_ECLOSED. Thread-safe. */
hm_err hm_runtime_deactivate(hm_runtime *rt, hm_addr *a);

/* Calls `fn` with the name of every receiver active now (a snapshot: some
 * may end or start meanwhile). `name` is borrowed for the call; `fn` must
 * not call back into the runtime's directory (intern, send by name, spawn)
 * because a directory lock is held. Thread-safe. */
void hm_runtime_foreach_active(hm_runtime *rt,
                               void (*fn)(void *arg, const char *name),
                               void *arg);

/* ---------------------------------------------------------------- timers */

/* Delivers `msg` to `to` after `delay_ms`. The timer holds the address, not
 * the activation: if the receiver was deactivated meanwhile, the message
 * activates it again. Takes `msg` on HM_OK. `id_out` may be NULL.
 * Errors: HM_ECLOSED. Thread-safe. */
hm_err hm_runtime_send_after(hm_runtime *rt, hm_addr *to, hm_msg *msg,
                             uint32_t delay_ms, hm_timer_id *id_out);
/* Delivers an hm_type_tick message with arg `tag` to `to` every
 * `period_ms` (> 0) until cancelled. Errors: HM_EINVAL, HM_ECLOSED. */
hm_err hm_runtime_send_every(hm_runtime *rt, hm_addr *to, uint32_t period_ms,
                             uint64_t tag, hm_timer_id *id_out);
/* Cancels a timer. True if it was armed (a one-shot's message is freed
 * undelivered); false if it already fired or never existed. Thread-safe. */
bool hm_runtime_cancel_timer(hm_runtime *rt, hm_timer_id id);

/* ---------------------------------------------------- inside a receiver */

/* These take the `ctx` a handler or hook was given; they are valid only
 * during that call, on that thread. */

/* Returns borrowed: the running receiver's address. */
hm_addr *hm_ctx_self(hm_ctx *ctx);
hm_runtime *hm_ctx_runtime(hm_ctx *ctx);
/* The runtime's clock (the manual clock in manual mode). */
uint64_t hm_ctx_now_ms(hm_ctx *ctx);

/* Like hm_runtime_send(), with this receiver as the sender. */
hm_err hm_ctx_send(hm_ctx *ctx, hm_addr *to, hm_msg *msg);
hm_err hm_ctx_send_name(hm_ctx *ctx, const char *name, hm_msg *msg);

/* From the next message on, `handler` handles this receiver's messages
 * (a state machine's transition). `state` replaces the state pointer; pass
 * hm_ctx_state(ctx) to keep it. */
void hm_ctx_become(hm_ctx *ctx, hm_handler_fn handler, void *state);
void *hm_ctx_state(hm_ctx *ctx);
/* Ends this activation after the current message (hook reason
 * HM_DEACTIVATE_REQUESTED). */
void hm_ctx_deactivate(hm_ctx *ctx);

/* Backpressure for a receiver that cannot take the current message now
 * (its downstream is full): the message is kept, not freed, and handed to
 * the handler again, first, once someone calls hm_runtime_wake() on this
 * address; until then the receiver does not run, its mailbox fills, and
 * senders get HM_EFULL from its mailbox bound (hm_receiver.mailbox_limit).
 * Register for the wake-up before holding (a wake that comes before the
 * hold ends makes the message run again at once). Ignored if the handler
 * returns an error. */
void hm_ctx_hold(hm_ctx *ctx);
/* Room notice (ADR 0240): a receiver whose send to `to` (borrowed) was
 * refused with HM_EFULL asks to be sent `notice` (taken on HM_OK) once
 * `to`'s mailbox has drained to half its bound, instead of polling with
 * a timer. The notice arrives as an ordinary message to this receiver,
 * whatever its own bound, with hm_msg_from() == `to`; it is sent at once
 * if `to` has room already (or no bound), and exactly once. It means
 * "try again now", not "your send will succeed": others may fill the
 * room first. A notice still waiting when the runtime closes is freed
 * unsent. Errors: HM_ECLOSED. */
hm_err hm_ctx_notify_room(hm_ctx *ctx, hm_addr *to, hm_msg *notice);
/* Runs a receiver that held a message (hm_ctx_hold()) again. Any thread;
 * harmless if it holds nothing (its next hold then retries at once).
 * Errors: none today (HM_OK). */
hm_err hm_runtime_wake(hm_runtime *rt, hm_addr *a);

/* Continuation for a request: runs on the requester, in its context, with
 * the reply (borrowed; freed after the call) or NULL and err HM_ETIMEDOUT. An
 * error reply (hm_type_error) arrives with err set to its code. */
typedef void (*hm_reply_fn)(hm_ctx *ctx, void *state, hm_msg *reply,
                            hm_err err, void *arg);

/* Sends `msg` to `to` as a request. The reply, or a timeout after
 * `timeout_ms`, arrives either through `cont` (with `arg`) or, when `cont`
 * is NULL, as a message to the handler with hm_msg_req_id() equal to
 * `*req_id_out`: the reply itself, or an hm_type_timeout message. Nothing
 * ever blocks. Takes `msg` on HM_OK. `req_id_out` may be NULL. A receiver
 * with requests outstanding is never deactivated for being idle. */
hm_err hm_ctx_request(hm_ctx *ctx, hm_addr *to, hm_msg *msg,
                      uint32_t timeout_ms, hm_reply_fn cont, void *arg,
                      uint64_t *req_id_out);
/* Replies to `request` (borrowed) with `reply` (taken on HM_OK). A request
 * from outside the runtime (hm_runtime_call()) is answered the same way.
 * Errors: HM_EINVAL (not a request, or already answered), HM_ECLOSED. */
hm_err hm_ctx_reply(hm_ctx *ctx, hm_msg *request, hm_msg *reply);
/* Replies with an hm_type_error message carrying `code`. */
hm_err hm_ctx_reply_error(hm_ctx *ctx, hm_msg *request, hm_err code);

/* ---------------------------------------------- observing and testing */

typedef struct hm_runtime_stats {
    uint64_t sent;          /* messages accepted by a send */
    uint64_t delivered;     /* messages handed to a handler */
    uint64_t activations;   /* factory or spawn activations */
    uint64_t deactivations; /* deactivate hooks run (any reason) */
    uint64_t dead_letters;
    uint64_t timers_fired;
    uint64_t handler_errors;
    uint64_t mailbox_hwm; /* most messages seen queued for one receiver */
    uint64_t live;        /* activations alive now */
    uint64_t addresses;   /* interned addresses now (live or referenced) */
    uint64_t entry_bytes; /* the addresses' entries, held in the runtime's
                           * own slab rather than malloc (docs/adr/0140) */
    uint64_t table_bytes; /* the directory's tables that are mapped rather
                           * than malloc'd (those of 64 KiB and more) */
    uint64_t send_waiting; /* threads in hm_runtime_send_wait() now, past
                            * a refused send (asleep or retrying) */
} hm_runtime_stats;

/* Reads the counters (exact when the runtime is idle). Thread-safe. */
void hm_runtime_stats_get(hm_runtime *rt, hm_runtime_stats *out);

/* Waits until no message is queued or being handled (pending timers do not
 * count), up to `timeout_ms`. For tests and orderly shutdown.
 * Errors: HM_ETIMEDOUT. Threaded mode only (manual: use run_until_idle). */
hm_err hm_runtime_wait_idle(hm_runtime *rt, uint32_t timeout_ms);

/* Manual mode: runs receivers on the calling thread until no message is
 * queued. Returns the number of messages handled. */
size_t hm_runtime_run_until_idle(hm_runtime *rt);
/* Manual mode: advances the manual clock by `ms`, firing due timers and
 * idle deactivations in deadline order, running until idle after each. */
void hm_runtime_advance(hm_runtime *rt, uint64_t ms);
/* The runtime's clock in ms (manual or monotonic). */
uint64_t hm_runtime_now_ms(hm_runtime *rt);

#endif
