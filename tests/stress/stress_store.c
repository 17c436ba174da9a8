/* tests/stress/stress_store.c: durable state and reminders under threads,
 * over a real SQLite store in a temporary directory, checked by invariants.
 *
 * churn: four threads send increments to 64 durable receivers whose idle
 *   timeout is a few milliseconds and that the senders deactivate every
 *   few messages, so activations load and deactivations save all the time
 *   while messages keep arriving; half the receivers are
 *   write-through. After the runtime closes (saving every live activation)
 *   the stored counts add up to exactly the increments sent: no state was
 *   lost or loaded twice across the load/save steps.
 * reminders: periodic reminders tick every millisecond while two threads
 *   replace and forget them at random; the table, the timers and the store
 *   stay consistent (no crash, no leak, nothing stored at the end), and
 *   one-shot reminders armed from many threads each fire exactly once. */
#include "runtime/runtime.h"
#include "runtime/store.h"
#include "tests/stress/harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define NRECV 64
#define NSEND 4

static const hm_type INC = {.name = "s.inc"};

static _Atomic int running[NRECV];
static _Atomic int violations;
static _Atomic long oneshot_fired[NRECV];

typedef struct counter {
    int index;
    long count;
} counter;

static hm_err encode(const void *state, void **data, size_t *len)
{
    const counter *c = state;

    *data = malloc(sizeof c->count);
    memcpy(*data, &c->count, sizeof c->count);
    *len = sizeof c->count;
    return HM_OK;
}

static hm_err decode(void *state, const void *data, size_t len)
{
    counter *c = state;

    if (len != sizeof c->count)
        return HM_EPROTO;
    memcpy(&c->count, data, len);
    return HM_OK;
}

static hm_err handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    counter *c = state;
    int zero = 0;

    if (!atomic_compare_exchange_strong(&running[c->index], &zero, 1))
        atomic_fetch_add(&violations, 1);
    if (hm_msg_type(msg) == &INC)
        c->count += (long)hm_msg_arg(msg);
    else if (hm_msg_type(msg) == &hm_type_reminder &&
             strcmp(hm_msg_payload(msg), "once") == 0)
        atomic_fetch_add(&oneshot_fired[c->index], 1);
    atomic_store(&running[c->index], 0);
    return HM_OK;
}

static void release(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    free(state);
}

static const hm_state_codec codec = {.encode = encode, .decode = decode};
static const hm_state_codec wt_codec = {
    .encode = encode, .decode = decode, .write_through = true};
static const hm_hooks hooks = {.deactivate = release, .durable = &codec};
static const hm_hooks wt_hooks = {.deactivate = release,
                                  .durable = &wt_codec};

static hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    counter *c = calloc(1, sizeof *c);

    c->index = atoi(name + 2);
    out->handler = handle;
    out->state = c;
    out->hooks = c->index % 2 ? &wt_hooks : &hooks;
    return HM_OK;
}

static hm_runtime *open_rt(hm_store *s, uint32_t idle_ms)
{
    hm_runtime *rt;

    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                 .idle_timeout_ms = idle_ms,
                                                 .factory = factory,
                                                 .store = s},
                            &rt) == HM_OK);
    return rt;
}

/* ----------------------------------------------------------------- churn */

typedef struct sender {
    hm_runtime *rt;
    hm_addr *to[NRECV];
    long rounds;
    unsigned seed;
} sender;

static void *send_main(void *arg)
{
    sender *s = arg;

    for (long i = 0; i < s->rounds; i++) {
        int r = (int)(rand_r(&s->seed) % NRECV);
        CHECK(hm_runtime_send(s->rt, s->to[r],
                              hm_msg_create(&INC, NULL, 1)) == HM_OK);
        if (i % 16 == 0) /* a save and a load between two messages */
            CHECK(hm_runtime_deactivate(s->rt, s->to[r]) == HM_OK);
        if (i % 512 == 0)
            usleep(2000); /* and now and then some go idle */
    }
    return NULL;
}

static hm_store *store;

static void churn(void)
{
    hm_runtime *rt = open_rt(store, 4);
    sender s[NSEND];
    pthread_t t[NSEND];
    long total = 0, rounds = stress_scaled(5000);

    for (int i = 0; i < NSEND; i++) {
        s[i] = (sender){.rt = rt, .rounds = rounds, .seed = (unsigned)i + 1};
        for (int r = 0; r < NRECV; r++) {
            char name[16];
            snprintf(name, sizeof name, "c/%d", r);
            CHECK(hm_runtime_intern(rt, name, &s[i].to[r]) == HM_OK);
        }
        pthread_create(&t[i], NULL, send_main, &s[i]);
    }
    for (int i = 0; i < NSEND; i++) {
        pthread_join(t[i], NULL);
        for (int r = 0; r < NRECV; r++)
            hm_addr_release(s[i].to[r]);
    }
    CHECK(hm_runtime_wait_idle(rt, 60000) == HM_OK);
    hm_runtime_stats st;
    hm_runtime_stats_get(rt, &st);
    CHECK(st.deactivations > 0); /* the churn really churned */
    printf("     churn: %llu activations, %llu deactivations\n",
           (unsigned long long)st.activations,
           (unsigned long long)st.deactivations);
    hm_runtime_destroy(rt);
    for (int r = 0; r < NRECV; r++) {
        char name[16];
        void *data;
        size_t len;
        long v = 0;
        snprintf(name, sizeof name, "c/%d", r);
        if (hm_store_load(store, name, &data, &len) == HM_OK) {
            CHECK(len == sizeof v);
            memcpy(&v, data, len);
            free(data);
        }
        total += v;
    }
    CHECK(total == rounds * NSEND);
    CHECK(atomic_load(&violations) == 0);
}

/* ------------------------------------------------------------- reminders */

typedef struct fiddler {
    hm_runtime *rt;
    long rounds;
    unsigned seed;
} fiddler;

static void *fiddle_main(void *arg)
{
    fiddler *f = arg;

    for (long i = 0; i < f->rounds; i++) {
        char name[16];
        int r = (int)(rand_r(&f->seed) % 8);
        snprintf(name, sizeof name, "c/%d", r);
        if (rand_r(&f->seed) % 2)
            CHECK(hm_runtime_remind(f->rt, name, "tick", 1, 1) == HM_OK);
        else
            hm_runtime_forget(f->rt, name, "tick");
    }
    return NULL;
}

static void count(void *arg, const hm_store_reminder *r)
{
    (*(int *)arg)++;
}

static int count_stored(hm_store *s)
{
    int n = 0;

    CHECK(hm_store_reminder_each(s, count, &n) == HM_OK);
    return n;
}

static void reminders(void)
{
    hm_runtime *rt = open_rt(store, 1000);
    fiddler f[2];
    pthread_t t[2];
    double deadline;
    long fired;

    for (int i = 0; i < 2; i++) {
        f[i] = (fiddler){rt, stress_scaled(2000), (unsigned)i + 7};
        pthread_create(&t[i], NULL, fiddle_main, &f[i]);
    }
    for (int r = 0; r < NRECV; r++) {
        char name[16];
        snprintf(name, sizeof name, "c/%d", r);
        CHECK(hm_runtime_remind(rt, name, "once", (uint32_t)(r % 5), 0) ==
              HM_OK);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int r = 0; r < 8; r++) {
        char name[16];
        snprintf(name, sizeof name, "c/%d", r);
        hm_runtime_forget(rt, name, "tick");
    }
    deadline = stress_now_s() + 60;
    do {
        fired = 0;
        for (int r = 0; r < NRECV; r++)
            fired += atomic_load(&oneshot_fired[r]) > 0;
        if (fired < NRECV)
            usleep(1000); /* the timers are due within 5 ms */
    } while (fired < NRECV && stress_now_s() < deadline);
    CHECK(hm_runtime_wait_idle(rt, 60000) == HM_OK);
    hm_runtime_destroy(rt);
    for (int r = 0; r < NRECV; r++)
        CHECK(atomic_load(&oneshot_fired[r]) == 1);
    CHECK(count_stored(store) == 0);
    CHECK(atomic_load(&violations) == 0);
}

int main(void)
{
    char dir[] = "/tmp/hermes-stress-store-XXXXXX", cmd[64];

    CHECK(mkdtemp(dir) != NULL);
    CHECK(hm_store_open_sqlite(dir, &store) == HM_OK);
    RUN_SCENARIO(churn);
    RUN_SCENARIO(reminders);
    hm_store_destroy(store);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
