/* tests/runtime/gate.h: a test receiver that takes numbered messages in
 * order while it is open and holds the message (hm_ctx_hold) while it is
 * closed, so a bounded mailbox stays full exactly as long as a test says.
 * Used by test_hold.c and test_room.c. The state is the caller's (a static
 * or a test's local that outlives the runtime); every field is atomic
 * because the test thread reads it while a worker runs the handler. */
#ifndef HM_TESTS_RUNTIME_GATE_H
#define HM_TESTS_RUNTIME_GATE_H

#include "runtime/runtime.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gate {
    _Atomic bool open;
    _Atomic uint64_t next;  /* the next number expected = numbers taken */
    _Atomic uint64_t holds; /* messages held while closed */
    _Atomic bool bad;       /* a number out of order */
} gate;

/* seq_cst throughout: a test's few hundred messages do not need less. */
static inline hm_err gate_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    gate *g = state;

    if (!atomic_load(&g->open)) {
        atomic_fetch_add(&g->holds, 1);
        hm_ctx_hold(ctx);
        return HM_OK;
    }
    if (hm_msg_arg(msg) != atomic_load(&g->next))
        atomic_store(&g->bad, true);
    atomic_fetch_add(&g->next, 1);
    return HM_OK;
}

#endif
