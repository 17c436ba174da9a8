/* runtime/durable_impl.h: the runtime's side of durable state (private).
 *
 * No file outside runtime/ may include this header. runtime.c calls these
 * at the four points of a receiver's turn where stored state matters
 * (activation, delivery of a reminder, after a message, deactivation), and
 * lifecycle.c creates and frees the reminder table with the runtime. Each
 * call costs one pointer test when the receiver has no codec. */
#ifndef HM_RUNTIME_DURABLE_IMPL_H
#define HM_RUNTIME_DURABLE_IMPL_H

#include "runtime/rt_impl.h"
#include "runtime/store.h"

/* store.c: the provider calls not in the public header. */
const char *hm_store_provider_name(const hm_store *s);
hm_err hm_store_reminder_put(hm_store *s, const hm_store_reminder *r);
hm_err hm_store_reminder_remove(hm_store *s, const char *receiver,
                                const char *name);

/* True if e's activation has a state codec. */
static inline bool hm_durable_is(const hm_addr *e)
{
    return e->hooks && e->hooks->durable;
}

/* hm_runtime_create, after the threads started: the reminder table, and
 * every stored reminder armed again. Errors: the store's. */
hm_err hm_durable_start(hm_runtime *rt);
/* hm_runtime_destroy, after the timers were drained. Accepts no table. */
void hm_durable_fini(hm_runtime *rt);

/* Activation step: loads and decodes e's record into e->state. On error it
 * has logged and told the codec's `failed` hook; the caller refuses the
 * activation (and must not save). */
hm_err hm_durable_load(hm_runtime *rt, hm_ctx *ctx, hm_addr *e);
/* Deactivation step, before the hook: saves e's state unless `why` is
 * HM_DEACTIVATE_ERROR. False: the save failed and the activation must stay
 * (idle or requested deactivation). */
bool hm_durable_save_on_exit(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                             hm_deactivate_reason why);
/* After the handler returned HM_OK for `m` (borrowed): write-through, and
 * a one-shot reminder's deletion. An error means the activation must be
 * discarded (already logged and reported). */
hm_err hm_durable_after(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                        const hm_msg *m);
/* Before a reminder message `m` (borrowed) reaches the handler: false if
 * it is stale (forgotten or replaced meanwhile) and must be dropped; a
 * periodic reminder's next tick is armed here. */
bool hm_durable_reminder_due(hm_runtime *rt, hm_addr *e, const hm_msg *m);

#endif
