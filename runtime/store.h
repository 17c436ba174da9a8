/* runtime/store.h: durable receiver state and durable timers (reminders).
 *
 * A store keeps bytes under a receiver's name, and reminders (timers that
 * survive a restart). Give the runtime a store (hm_runtime_config.store)
 * and give a receiver's hooks a state codec (hm_hooks.durable): the runtime
 * then loads the receiver's state in the activation step of its own turn,
 * before the activate hook, and saves it in the deactivation step, before
 * the deactivate hook, so the hooks never do storage I/O themselves and the
 * race-freedom of activation (docs/adr/0003) carries over to the stored
 * state: one activation at a time reads and writes a name's record. A
 * receiver that asks for write-through is saved after every message its
 * handler accepts; any receiver can save on demand with hm_ctx_save().
 *
 * Storage I/O runs on the worker that runs the receiver, synchronously,
 * under the store's one lock (docs/adr/0090 says why no storage thread).
 * Two providers ship: SQLite in WAL mode, the embedded default (one database
 * file in a data directory), and Redis, for state shared by the nodes of a
 * cluster. Other providers implement hm_store_ops. Every storage error is
 * logged with the receiver's name and reported to the receiver (through
 * hm_ctx_save()'s result or the codec's `failed` hook); none is swallowed.
 *
 * Ownership words are used as in ../shared/STYLE.md section 6. */
#ifndef HM_RUNTIME_STORE_H
#define HM_RUNTIME_STORE_H

#include "runtime/runtime.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ----------------------------------------------------------- providers */

/* A reminder as a provider stores it. The strings are borrowed. */
typedef struct hm_store_reminder {
    const char *receiver; /* the receiver's name */
    const char *name;     /* the reminder's name, unique per receiver */
    uint64_t due_unix_ms; /* first due time, wall clock (ms since 1970) */
    uint32_t period_ms;   /* 0: fires once */
} hm_store_reminder;

typedef void (*hm_store_reminder_fn)(void *arg, const hm_store_reminder *r);

/* What a provider implements. `impl` is the provider's own object. The
 * store serialises every call (one at a time, any thread), so a provider
 * need not be thread-safe. Each returns HM_OK or HM_ESTORE (after logging
 * what failed and why) unless said otherwise. */
typedef struct hm_store_ops {
    const char *name; /* "sqlite", "redis": for log lines */
    /* The record under `key` (borrowed): on HM_OK returns owned bytes in
     * `*data_out` (malloc'd, freed with free(); NULL when `*len_out` is 0).
     * HM_ENOTFOUND: no record. */
    hm_err (*load)(void *impl, const char *key, void **data_out,
                   size_t *len_out);
    /* Replaces the record under `key`. Borrows `key` and `data`. */
    hm_err (*save)(void *impl, const char *key, const void *data,
                   size_t len);
    /* Deletes the record under `key` (HM_OK if there was none). */
    hm_err (*remove)(void *impl, const char *key);
    /* Inserts or replaces the reminder (receiver, name). Borrows `r`. */
    hm_err (*reminder_put)(void *impl, const hm_store_reminder *r);
    /* Deletes a reminder (HM_OK if there was none). */
    hm_err (*reminder_remove)(void *impl, const char *receiver,
                              const char *name);
    /* Calls `fn` once per stored reminder; the reminder is borrowed for
     * the call, and `fn` must not call the store. */
    hm_err (*reminder_each)(void *impl, hm_store_reminder_fn fn, void *arg);
    /* Frees `impl`. */
    void (*close)(void *impl);
} hm_store_ops;

typedef struct hm_store hm_store;

/* A store over a provider. Borrows `ops` (static) and takes `impl`.
 * Returns owned (never NULL). */
hm_store *hm_store_create(const hm_store_ops *ops, void *impl);
/* Closes the provider and frees the store. Destroy the runtimes that use
 * it first: their close saves every live activation. Accepts NULL. */
void hm_store_destroy(hm_store *s);

/* The embedded default: SQLite in WAL mode (synchronous=NORMAL), one file
 * `hermes.db` in the directory `dir` (borrowed; created if missing, its
 * parent must exist). Opening checks the file (application id, schema and
 * an integrity check), so a corrupt or truncated file is refused here with
 * a log line naming it, never later. The directory is locked (flock on
 * `hermes.lock`) while the store is open, so a second store on it, in this
 * process or another, is refused. Returns owned on HM_OK.
 * Errors: HM_ESTORE (cannot create or open, corrupt, not a Hermes store,
 * in use), HM_EINVAL (no dir). */
hm_err hm_store_open_sqlite(const char *dir, hm_store **out);

typedef struct hm_store_redis_config {
    const char *host;    /* NULL: "127.0.0.1" */
    int port;            /* 0: 6379 */
    const char *prefix;  /* key prefix; NULL: "hermes:" */
    uint32_t timeout_ms; /* connect and command timeout; 0: 2000 */
} hm_store_redis_config;

/* A Redis store (state shared by the nodes of a cluster): state under
 * "<prefix>state:<name>", reminders in the hash "<prefix>reminders".
 * Borrows `cfg`. Connects (and PINGs) now; a lost connection is re-made
 * on the next call. Returns owned on HM_OK.
 * Errors: HM_ESTORE (cannot connect), HM_EINVAL. */
hm_err hm_store_open_redis(const hm_store_redis_config *cfg, hm_store **out);
/* The same over `fd`, a socket already connected to a server (taken: the
 * store closes it), with key prefix `prefix` (borrowed; NULL: "hermes:"),
 * for the fuzz target and unit tests that play the server in-process
 * (ADR 0275). Sends nothing now; a connection lost later is not made
 * again (there is no address to dial): calls then fail with HM_ESTORE.
 * Returns owned on HM_OK. Errors: HM_ESTORE. */
hm_err hm_store_open_redis_fd(int fd, const char *prefix, hm_store **out);

/* Direct access, for tools and tests. Thread-safe (the store's lock).
 * hm_store_load returns owned bytes (free() them) on HM_OK. */
hm_err hm_store_load(hm_store *s, const char *key, void **data_out,
                     size_t *len_out);
hm_err hm_store_save(hm_store *s, const char *key, const void *data,
                     size_t len);
hm_err hm_store_remove(hm_store *s, const char *key);
hm_err hm_store_reminder_each(hm_store *s, hm_store_reminder_fn fn,
                              void *arg);

/* ------------------------------------------------------ durable receivers */

/* How a receiver's state becomes bytes and back; hm_hooks.durable points
 * to one (static, borrowed for the activation's life). With a NULL codec a
 * receiver is not durable (as before this header existed). */
typedef struct hm_state_codec {
    /* Encodes `state` (borrowed): on HM_OK returns owned bytes (malloc'd;
     * the runtime free()s them). HM_ENOTFOUND means "nothing to keep": the
     * record is deleted (a session that ended, a cleared cart). */
    hm_err (*encode)(const void *state, void **data_out, size_t *len_out);
    /* Fills the fresh `state` (the factory's) from stored bytes (borrowed).
     * Not called when no record exists. An error refuses the activation. */
    hm_err (*decode)(void *state, const void *data, size_t len);
    /* Optional: told of every storage error concerning this receiver (load
     * on activation, save on deactivation or write-through), in its turn,
     * after the error was logged. `state` is borrowed. */
    void (*failed)(hm_ctx *ctx, void *state, hm_err err);
    /* Save after every message the handler accepts (HM_OK), before the next
     * message. If that save fails the activation is discarded like a
     * failed handler (no save on the way out), so memory never runs ahead
     * of the store unseen. */
    bool write_through;
} hm_state_codec;

/* The rules, for a receiver with a codec in a runtime with a store:
 * - activation: the record is loaded and decoded before the activate hook;
 *   a load or decode error refuses the activation (the message goes to
 *   dead letters, the deactivate hook frees the state, nothing is saved).
 * - deactivation (idle, requested, close): the state is encoded and saved
 *   before the deactivate hook. If that fails on an idle or requested
 *   deactivation the activation stays (the state is not lost; the next
 *   idle check tries again); at close it is logged and lost.
 * - a handler error (HM_DEACTIVATE_ERROR) saves nothing: the activation is
 *   discarded and the next one starts from the last saved state.
 * A codec without a store configured refuses the activation (HM_EINVAL). */

/* Saves the running receiver's state now. Errors: HM_EINVAL (no codec or
 * no store), the codec's error, HM_ESTORE. */
hm_err hm_ctx_save(hm_ctx *ctx);

/* ------------------------------------------------------------ reminders */

/* A reminder's message: payload is the reminder's name (a string owned by
 * the message), arg is reserved. */
extern const hm_type hm_type_reminder;

/* Arms (or replaces) the reminder `name` (borrowed) of the running
 * receiver: first due in `due_ms`, then every `period_ms` (0: once). It is
 * stored before this returns, survives hm_runtime_destroy and a crash, and
 * a runtime created on the same store arms it again; when it fires, it
 * activates the receiver like any message. A one-shot reminder is deleted
 * once its handler returned HM_OK (at least once: a crash in between fires
 * it again). A periodic reminder keeps to its grid (first due + k*period);
 * ticks missed while no runtime ran are delivered as one tick at start.
 * Errors: HM_EINVAL (no store, empty name), HM_ESTORE. */
hm_err hm_ctx_remind(hm_ctx *ctx, const char *name, uint32_t due_ms,
                     uint32_t period_ms);
/* The same for the receiver named `receiver` (borrowed), from any thread.
 * Errors also: HM_ECLOSED. */
hm_err hm_runtime_remind(hm_runtime *rt, const char *receiver,
                         const char *name, uint32_t due_ms,
                         uint32_t period_ms);
/* Deletes a reminder: stored and armed. A tick already queued is dropped
 * before the handler sees it. Errors: HM_ENOTFOUND, HM_ESTORE. */
hm_err hm_ctx_forget(hm_ctx *ctx, const char *name);
hm_err hm_runtime_forget(hm_runtime *rt, const char *receiver,
                         const char *name);

#endif
