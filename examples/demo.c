/* examples/demo.c: a tour of the runtime in one program (`make run` runs it
 * until the MQTT broker exists).
 *
 * Counters live at addresses "counter/<name>". The factory creates one the
 * first time a message arrives for its name; it counts "add" messages,
 * answers "get" requests, and after an idle second is deactivated, its hook
 * "saving" the total into a table that the factory loads it from next time.
 * A timer addressed to a deactivated counter wakes it up again. */
#include "runtime/log.h"
#include "runtime/runtime.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const hm_type ADD = {.name = "demo.add"};
static const hm_type GET = {.name = "demo.get"};
static const hm_type VALUE = {.name = "demo.value"};

/* The "database" the hooks save to: a few named totals. */
typedef struct store {
    pthread_mutex_t lock;
    char names[16][64];
    uint64_t totals[16];
    int count;
} store;

typedef struct counter {
    store *db;
    char name[64];
    uint64_t total;
} counter;

static uint64_t *store_slot(store *db, const char *name)
{
    for (int i = 0; i < db->count; i++)
        if (strcmp(db->names[i], name) == 0)
            return &db->totals[i];
    snprintf(db->names[db->count], sizeof db->names[0], "%s", name);
    db->totals[db->count] = 0;
    return &db->totals[db->count++];
}

static hm_err counter_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    counter *c = state;

    if (hm_msg_type(msg) == &ADD || hm_msg_type(msg) == &hm_type_tick) {
        c->total += hm_msg_arg(msg);
        return HM_OK;
    }
    if (hm_msg_type(msg) == &GET)
        return hm_ctx_reply(ctx, msg, hm_msg_create(&VALUE, NULL, c->total));
    return HM_EINVAL;
}

static void counter_deactivate(hm_ctx *ctx, void *state,
                               hm_deactivate_reason why)
{
    counter *c = state;

    (void)ctx;
    pthread_mutex_lock(&c->db->lock);
    *store_slot(c->db, c->name) = c->total;
    pthread_mutex_unlock(&c->db->lock);
    printf("  [%s deactivated (reason %d), saved total %" PRIu64 "]\n",
           c->name, (int)why, c->total);
    free(c);
}

static const hm_hooks counter_hooks = {.deactivate = counter_deactivate};

static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    store *db = arg;
    counter *c;

    if (strncmp(name, "counter/", 8) != 0)
        return HM_ENOTFOUND;
    c = calloc(1, sizeof *c);
    c->db = db;
    snprintf(c->name, sizeof c->name, "%s", name);
    pthread_mutex_lock(&db->lock);
    c->total = *store_slot(db, name);
    pthread_mutex_unlock(&db->lock);
    printf("  [%s activated, loaded total %" PRIu64 "]\n", name, c->total);
    *out = (hm_receiver){.handler = counter_handle, .state = c,
                         .hooks = &counter_hooks};
    return HM_OK;
}

static uint64_t get(hm_runtime *rt, hm_addr *a)
{
    hm_msg *reply;
    uint64_t v = 0;

    if (hm_runtime_call(rt, a, hm_msg_create(&GET, NULL, 0), 1000, &reply) ==
        HM_OK) {
        v = hm_msg_arg(reply);
        hm_msg_destroy(reply);
    }
    return v;
}

int main(void)
{
    store db = {.lock = PTHREAD_MUTEX_INITIALIZER};
    hm_runtime *rt;
    hm_addr *apples;
    hm_runtime_stats st;

    hm_log_set_level(HM_LOG_LEVEL_WARN);
    if (hm_runtime_create(&(hm_runtime_config){.idle_timeout_ms = 1000,
                                               .factory = factory,
                                               .factory_arg = &db},
                          &rt) != HM_OK)
        return 1;
    printf("Hermes runtime demo: counters that live only while used.\n");
    hm_runtime_intern(rt, "counter/apples", &apples);
    for (int i = 1; i <= 1000; i++)
        hm_runtime_send(rt, apples, hm_msg_create(&ADD, NULL, 1));
    printf("apples = %" PRIu64 " after 1000 adds\n", get(rt, apples));
    printf("waiting for the idle timeout (1 s)...\n");
    sleep(2);
    printf("a timer now adds 5 to the sleeping counter in 100 ms\n");
    hm_runtime_send_after(rt, apples, hm_msg_create(&ADD, NULL, 5), 100,
                          NULL);
    usleep(300000);
    printf("apples = %" PRIu64 " (reactivated by the timer)\n",
           get(rt, apples));
    hm_runtime_stats_get(rt, &st);
    printf("stats: sent %" PRIu64 ", delivered %" PRIu64
           ", activations %" PRIu64 ", deactivations %" PRIu64
           ", timers fired %" PRIu64 "\n",
           st.sent, st.delivered, st.activations, st.deactivations,
           st.timers_fired);
    hm_addr_release(apples);
    printf("closing the runtime (runs every deactivation hook)\n");
    hm_runtime_destroy(rt);
    return 0;
}
