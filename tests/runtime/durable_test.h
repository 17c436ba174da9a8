/* tests/runtime/durable_test.h: a durable counter receiver and helpers
 * shared by the store tests (SQLite and Redis).
 *
 * Names decide the receiver's flavour: "wt/..." saves after every message
 * (write-through), any other name saves on deactivation. The state is a count stored as
 * decimal text, so a test can read the store and see it. Everything runs
 * in manual mode on the test's thread, so the journal needs no lock. */
#ifndef HM_TESTS_RUNTIME_DURABLE_TEST_H
#define HM_TESTS_RUNTIME_DURABLE_TEST_H

#include "runtime/runtime.h"
#include "runtime/store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const hm_type INC = {.name = "t.inc"};     /* count += arg */
static const hm_type FAIL = {.name = "t.fail"};   /* the handler fails */
static const hm_type SAVE = {.name = "t.save"};   /* hm_ctx_save() */
static const hm_type CLEAR = {.name = "t.clear"}; /* nothing to keep */
static const hm_type REMIND = {.name = "t.remind"}; /* arm "r", arg ms */
static const hm_type FORGET = {.name = "t.forget"}; /* forget "r" */

typedef struct dj {
    long last_count;       /* count after the last INC */
    int reminders;         /* reminder ticks seen */
    char last_reminder[32];
    int store_failures;    /* codec `failed` calls */
    hm_err last_failure;
    hm_err last_save;      /* hm_ctx_save()'s result */
    int dead;
} dj;

static dj DJ;

typedef struct counter {
    long count;
    bool cleared;
} counter;

static hm_err counter_encode(const void *state, void **data, size_t *len)
{
    const counter *c = state;
    char buf[32];
    int n;

    if (c->cleared)
        return HM_ENOTFOUND;
    n = snprintf(buf, sizeof buf, "%ld", c->count);
    *data = strdup(buf);
    *len = (size_t)n;
    return HM_OK;
}

static hm_err counter_decode(void *state, const void *data, size_t len)
{
    counter *c = state;
    char buf[32];
    char *end;

    if (len == 0 || len >= sizeof buf)
        return HM_EPROTO;
    memcpy(buf, data, len);
    buf[len] = '\0';
    c->count = strtol(buf, &end, 10);
    return *end == '\0' ? HM_OK : HM_EPROTO;
}

static void counter_failed(hm_ctx *ctx, void *state, hm_err err)
{
    DJ.store_failures++;
    DJ.last_failure = err;
}

static hm_err counter_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    counter *c = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &INC) {
        c->count += (long)hm_msg_arg(msg);
        DJ.last_count = c->count;
    } else if (t == &FAIL) {
        return HM_EPROTO;
    } else if (t == &SAVE) {
        DJ.last_save = hm_ctx_save(ctx);
    } else if (t == &CLEAR) {
        c->cleared = true;
    } else if (t == &REMIND) {
        return hm_ctx_remind(ctx, "r", (uint32_t)hm_msg_arg(msg), 0);
    } else if (t == &FORGET) {
        return hm_ctx_forget(ctx, "r");
    } else if (t == &hm_type_reminder) {
        DJ.reminders++;
        snprintf(DJ.last_reminder, sizeof DJ.last_reminder, "%s",
                 (const char *)hm_msg_payload(msg));
    }
    return HM_OK;
}

static void counter_free(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    free(state);
}

static const hm_state_codec counter_codec = {
    .encode = counter_encode,
    .decode = counter_decode,
    .failed = counter_failed,
};
static const hm_state_codec counter_wt_codec = {
    .encode = counter_encode,
    .decode = counter_decode,
    .failed = counter_failed,
    .write_through = true,
};
static const hm_hooks counter_hooks = {.deactivate = counter_free,
                                       .durable = &counter_codec};
static const hm_hooks counter_wt_hooks = {.deactivate = counter_free,
                                          .durable = &counter_wt_codec};

static hm_err counter_factory(void *arg, const char *name, hm_receiver *out)
{
    out->handler = counter_handle;
    out->state = calloc(1, sizeof(counter));
    out->hooks = strncmp(name, "wt/", 3) == 0 ? &counter_wt_hooks
                                              : &counter_hooks;
    return HM_OK;
}

static void counter_dead(void *arg, const char *to, const hm_msg *m,
                         hm_err reason)
{
    DJ.dead++;
}

/* A manual runtime over `store` (may be NULL), idle timeout 1 s. */
static hm_runtime *durable_rt(hm_store *store)
{
    hm_runtime *rt;

    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){
                                       .manual = true,
                                       .idle_timeout_ms = 1000,
                                       .factory = counter_factory,
                                       .dead_letter = counter_dead,
                                       .store = store},
                                   &rt),
                 HM_OK);
    return rt;
}

static void deliver(hm_runtime *rt, const char *name, const hm_type *t,
                 uint64_t arg)
{
    cr_assert_eq(hm_runtime_send_name(rt, name, hm_msg_create(t, NULL, arg)),
                 HM_OK);
    hm_runtime_run_until_idle(rt);
}

/* The stored count of `name`, or -1 if there is no record. */
static long stored_count(hm_store *s, const char *name)
{
    void *data = NULL;
    size_t len = 0;
    counter c = {0};
    hm_err err = hm_store_load(s, name, &data, &len);

    if (err == HM_ENOTFOUND)
        return -1;
    cr_assert_eq(err, HM_OK);
    cr_assert_eq(counter_decode(&c, data, len), HM_OK);
    free(data);
    return c.count;
}

static void count_reminder(void *arg, const hm_store_reminder *r)
{
    (*(int *)arg)++;
}

static int stored_reminders(hm_store *s)
{
    int n = 0;

    cr_assert_eq(hm_store_reminder_each(s, count_reminder, &n), HM_OK);
    return n;
}

#endif
