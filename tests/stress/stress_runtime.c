/* tests/stress/stress_runtime.c: the runtime's races, many threads, many
 * rounds, checked by invariants rather than by timing.
 *
 * deactivation_race: receivers deactivate (idle after ~9 ms, and on request
 *   every few messages) while four threads and the timer thread keep sending
 *   to them. Invariants: no message lost or handled twice (each sender's
 *   sequence to each receiver is gap-free and in order across activations,
 *   because the state is saved by the hook and loaded by the factory), never
 *   two activations of one name at once, never two messages of one receiver
 *   at once.
 * request_race: requests with timeouts of 0-2 ms race their replies. Each
 *   request is resolved exactly once; late replies are dead letters.
 * close_under_load: receivers bounce messages until the runtime closes;
 *   every activation's hook runs exactly once.
 * directory_churn: four threads send by name and intern 2,048 names of
 *   many lengths (some beyond the slab's classes) while receivers
 *   deactivate after every message and the sweeper reclaims their entries
 *   and shifts the directory's probe runs (docs/adr/0140). Invariants:
 *   every message is handled, every handle names what was interned, and
 *   once nothing is referenced every entry is reclaimed.
 * timer_race: receivers on both workers and two plain threads arm timers
 *   (0-3 ms; a quarter without an id) to each other and cancel a random
 *   half of their own while the timer thread fires them (timers due
 *   together for one receiver travel as one batch). Invariants: a timer whose cancel succeeded is
 *   never delivered, every other timer is delivered exactly once, and the
 *   timers one source arms to one receiver with the same delay arrive in
 *   arming order. */
#include "runtime/runtime.h"
#include "tests/stress/harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ----------------------------------------------------- deactivation race */

#define NRECV 32
#define NSEND 4

static const hm_type SEQ = {.name = "s.seq"};
static const hm_type TICK = {.name = "s.tick"};

typedef struct saved {
    pthread_mutex_t lock;
    uint64_t next[NSEND];
    uint64_t ticks;
} saved;

typedef struct live_state {
    int index;
    uint64_t next[NSEND];
    uint64_t ticks;
    uint64_t handled;
} live_state;

static saved db[NRECV];
static _Atomic int live_flag[NRECV];
static _Atomic int running_flag[NRECV];
static _Atomic int violations;
static _Atomic uint64_t handled_total;

static hm_err seq_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    live_state *s = state;
    int zero = 0;

    if (!atomic_compare_exchange_strong(&running_flag[s->index], &zero, 1))
        atomic_fetch_add(&violations, 1);
    if (hm_msg_type(msg) == &TICK) {
        s->ticks++;
    } else {
        uint64_t sender = hm_msg_arg(msg) >> 32;
        uint64_t n = hm_msg_arg(msg) & 0xffffffffu;
        if (sender >= NSEND || s->next[sender] != n)
            atomic_fetch_add(&violations, 1);
        else
            s->next[sender]++;
    }
    if (++s->handled % 7 == 0)
        hm_ctx_deactivate(ctx);
    atomic_store(&running_flag[s->index], 0);
    atomic_fetch_add(&handled_total, 1);
    return HM_OK;
}

static void seq_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    live_state *s = state;
    int one = 1;

    (void)ctx;
    (void)why;
    pthread_mutex_lock(&db[s->index].lock);
    memcpy(db[s->index].next, s->next, sizeof s->next);
    db[s->index].ticks = s->ticks;
    pthread_mutex_unlock(&db[s->index].lock);
    if (!atomic_compare_exchange_strong(&live_flag[s->index], &one, 0))
        atomic_fetch_add(&violations, 1);
    free(s);
}

static const hm_hooks seq_hooks = {.deactivate = seq_deactivate};

static hm_err seq_factory(void *arg, const char *name, hm_receiver *out)
{
    live_state *s;
    int i, zero = 0;

    (void)arg;
    if (sscanf(name, "d/%d", &i) != 1 || i < 0 || i >= NRECV)
        return HM_ENOTFOUND;
    if (!atomic_compare_exchange_strong(&live_flag[i], &zero, 1))
        atomic_fetch_add(&violations, 1);
    s = calloc(1, sizeof *s);
    s->index = i;
    pthread_mutex_lock(&db[i].lock);
    memcpy(s->next, db[i].next, sizeof s->next);
    s->ticks = db[i].ticks;
    pthread_mutex_unlock(&db[i].lock);
    *out = (hm_receiver){.handler = seq_handle, .state = s,
                         .hooks = &seq_hooks};
    return HM_OK;
}

typedef struct send_job {
    hm_runtime *rt;
    hm_addr **to;
    int id;
    long per_recv;
} send_job;

static void *seq_sender(void *p)
{
    send_job *j = p;
    unsigned seed = (unsigned)j->id * 7919u;

    for (long n = 0; n < j->per_recv; n++) {
        for (int r = 0; r < NRECV; r++) {
            hm_msg *m = hm_msg_create(&SEQ, NULL,
                                      ((uint64_t)j->id << 32) | (uint64_t)n);
            CHECK(hm_runtime_send(j->rt, j->to[r], m) == HM_OK);
        }
        if (rand_r(&seed) % 64 == 0)
            usleep(rand_r(&seed) % 3000); /* let receivers go idle */
    }
    return NULL;
}

static void deactivation_race(void)
{
    hm_runtime *rt;
    hm_addr *to[NRECV];
    pthread_t t[NSEND];
    send_job jobs[NSEND];
    long per_recv = stress_scaled(1500);
    long ticks = stress_scaled(2000);
    uint64_t expect;
    hm_runtime_stats st;

    for (int i = 0; i < NRECV; i++) {
        pthread_mutex_init(&db[i].lock, NULL);
        memset(db[i].next, 0, sizeof db[i].next);
        db[i].ticks = 0;
    }
    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                 .idle_timeout_ms = 1,
                                                 .batch = 4,
                                                 .factory = seq_factory},
                            &rt) == HM_OK);
    for (int i = 0; i < NRECV; i++) {
        char name[16];
        snprintf(name, sizeof name, "d/%d", i);
        CHECK(hm_runtime_intern(rt, name, &to[i]) == HM_OK);
    }
    for (long k = 0; k < ticks; k++)
        CHECK(hm_runtime_send_after(rt, to[k % NRECV],
                                    hm_msg_create(&TICK, NULL, 0),
                                    (uint32_t)(k % 50), NULL) == HM_OK);
    for (int i = 0; i < NSEND; i++) {
        jobs[i] = (send_job){rt, to, i, per_recv};
        pthread_create(&t[i], NULL, seq_sender, &jobs[i]);
    }
    for (int i = 0; i < NSEND; i++)
        pthread_join(t[i], NULL);
    expect = (uint64_t)(NSEND * per_recv * NRECV + ticks);
    for (int w = 0; w < 30000 && atomic_load(&handled_total) < expect; w++)
        usleep(1000);
    CHECK(atomic_load(&handled_total) == expect);
    hm_runtime_stats_get(rt, &st);
    CHECK(st.dead_letters == 0);
    CHECK(st.activations > NRECV); /* deactivation really happened */
    for (int i = 0; i < NRECV; i++)
        hm_addr_release(to[i]);
    hm_runtime_destroy(rt);
    uint64_t ticks_seen = 0;
    for (int i = 0; i < NRECV; i++) {
        for (int s = 0; s < NSEND; s++)
            CHECK(db[i].next[s] == (uint64_t)per_recv);
        ticks_seen += db[i].ticks;
        CHECK(atomic_load(&live_flag[i]) == 0);
    }
    CHECK(ticks_seen == (uint64_t)ticks);
    CHECK(atomic_load(&violations) == 0);
    printf("     %llu activations, %llu deactivations\n",
           (unsigned long long)st.activations,
           (unsigned long long)st.deactivations);
}

/* ----------------------------------------------------------- requests */

static const hm_type GO = {.name = "s.go"};
static const hm_type Q = {.name = "s.q"};
static _Atomic uint64_t resolved, replied, timed_out, requested, dead;

static void on_outcome(hm_ctx *ctx, void *state, hm_msg *reply, hm_err err,
                       void *arg)
{
    (void)ctx;
    (void)state;
    (void)arg;
    if (err == HM_OK && reply)
        atomic_fetch_add(&replied, 1);
    else if (err == HM_ETIMEDOUT && !reply)
        atomic_fetch_add(&timed_out, 1);
    else
        atomic_fetch_add(&violations, 1);
    atomic_fetch_add(&resolved, 1);
}

static hm_err asker(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hm_addr *answerer = state;
    hm_err err;

    err = hm_ctx_request(ctx, answerer, hm_msg_create(&Q, NULL, 0),
                         (uint32_t)(hm_msg_arg(msg) % 3), on_outcome, NULL,
                         NULL);
    if (err == HM_OK)
        atomic_fetch_add(&requested, 1);
    return err;
}

static hm_err answer(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    return hm_ctx_reply(ctx, msg, hm_msg_create(&Q, NULL, 1));
}

static void count_dead(void *arg, const char *to, const hm_msg *m, hm_err e)
{
    (void)arg;
    (void)to;
    (void)m;
    if (e == HM_ETIMEDOUT)
        atomic_fetch_add(&dead, 1);
    else
        atomic_fetch_add(&violations, 1);
}

static void request_race(void)
{
    hm_runtime *rt;
    hm_addr *askers[8], *answerers[8];
    long rounds = stress_scaled(3000);

    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                 .dead_letter = count_dead},
                            &rt) == HM_OK);
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "ans/%d", i);
        CHECK(hm_runtime_spawn(rt, name,
                               &(hm_receiver){.handler = answer,
                                              .pinned = true},
                               &answerers[i]) == HM_OK);
        snprintf(name, sizeof name, "ask/%d", i);
        CHECK(hm_runtime_spawn(rt, name,
                               &(hm_receiver){.handler = asker,
                                              .state = answerers[i],
                                              .pinned = true},
                               &askers[i]) == HM_OK);
    }
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 8; i++)
            CHECK(hm_runtime_send(rt, askers[i],
                                  hm_msg_create(&GO, NULL, (uint64_t)r)) ==
                  HM_OK);
    for (int w = 0; w < 30000 && atomic_load(&resolved) < (uint64_t)rounds * 8;
         w++)
        usleep(1000);
    CHECK(hm_runtime_wait_idle(rt, 10000) == HM_OK);
    CHECK(atomic_load(&requested) == (uint64_t)rounds * 8);
    CHECK(atomic_load(&resolved) == atomic_load(&requested));
    CHECK(atomic_load(&replied) + atomic_load(&timed_out) ==
          atomic_load(&resolved));
    CHECK(atomic_load(&dead) <= atomic_load(&timed_out));
    CHECK(atomic_load(&violations) == 0);
    for (int i = 0; i < 8; i++) {
        hm_addr_release(askers[i]);
        hm_addr_release(answerers[i]);
    }
    hm_runtime_destroy(rt);
    printf("     %llu replies, %llu timeouts, %llu late replies\n",
           (unsigned long long)atomic_load(&replied),
           (unsigned long long)atomic_load(&timed_out),
           (unsigned long long)atomic_load(&dead));
}

/* ---------------------------------------------------- close under load */

static const hm_type HOP = {.name = "s.hop"};
static _Atomic int hooks_run, activated;

static hm_err hopper(hm_ctx *ctx, void *state, hm_msg *msg)
{
    char next[16];
    hm_msg *m;

    (void)state;
    snprintf(next, sizeof next, "h/%d", (int)((hm_msg_arg(msg) + 1) % 50));
    m = hm_msg_create(&HOP, NULL, hm_msg_arg(msg) + 1);
    if (hm_ctx_send_name(ctx, next, m) != HM_OK)
        hm_msg_destroy(m);
    return HM_OK;
}

static void hop_hook(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    (void)ctx;
    (void)state;
    (void)why;
    atomic_fetch_add(&hooks_run, 1);
}
static const hm_hooks hop_hooks = {.deactivate = hop_hook};

static hm_err hop_factory(void *arg, const char *name, hm_receiver *out)
{
    (void)arg;
    (void)name;
    atomic_fetch_add(&activated, 1);
    *out = (hm_receiver){.handler = hopper, .hooks = &hop_hooks};
    return HM_OK;
}

static void close_under_load(void)
{
    long rounds = stress_scaled(20);

    for (long r = 0; r < rounds; r++) {
        hm_runtime *rt;
        atomic_store(&hooks_run, 0);
        atomic_store(&activated, 0);
        CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                     .factory = hop_factory},
                                &rt) == HM_OK);
        for (int i = 0; i < 20; i++)
            CHECK(hm_runtime_send_name(rt, "h/0",
                                       hm_msg_create(&HOP, NULL,
                                                     (uint64_t)i)) == HM_OK);
        usleep(2000);
        hm_runtime_destroy(rt);
        CHECK(atomic_load(&hooks_run) == atomic_load(&activated));
    }
}

/* ------------------------------------------------------- directory churn */

#define CHURN_NAMES 2048
#define CHURN_THREADS 4

static const hm_type D = {.name = "s.d"};
static _Atomic uint64_t churn_handled;

static hm_err churn_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    (void)state;
    (void)msg;
    atomic_fetch_add(&churn_handled, 1);
    hm_ctx_deactivate(ctx); /* the entry becomes reclaimable */
    return HM_OK;
}

static hm_err churn_factory(void *arg, const char *name, hm_receiver *out)
{
    (void)arg;
    (void)name;
    *out = (hm_receiver){.handler = churn_handle};
    return HM_OK;
}

/* "d/<k>" padded to a length picked by k: 3 to 300 bytes. */
static void churn_name(char *buf, size_t cap, unsigned k)
{
    int n = snprintf(buf, cap, "d/%u/", k);
    size_t len = 3 + (k * 37u) % 298u;

    while ((size_t)n < len && (size_t)n + 1 < cap)
        buf[n++] = (char)('a' + k % 26);
    buf[n] = '\0';
}

typedef struct churn_job {
    hm_runtime *rt;
    long rounds;
    uint64_t seed, sent;
} churn_job;

static void *churn_thread(void *p)
{
    churn_job *j = p;
    char name[320];

    for (long r = 0; r < j->rounds; r++) {
        unsigned k;
        j->seed = j->seed * 6364136223846793005ull + 1442695040888963407ull;
        k = (unsigned)(j->seed >> 33) % CHURN_NAMES;
        churn_name(name, sizeof name, k);
        if (r % 2) {
            CHECK(hm_runtime_send_name(j->rt, name,
                                       hm_msg_create(&D, NULL, k)) == HM_OK);
        } else {
            hm_addr *a;
            CHECK(hm_runtime_intern(j->rt, name, &a) == HM_OK);
            CHECK(strcmp(hm_addr_name(a), name) == 0);
            CHECK(hm_runtime_send(j->rt, a, hm_msg_create(&D, NULL, k)) ==
                  HM_OK);
            hm_addr_release(a);
        }
        j->sent++;
    }
    return NULL;
}

static void directory_churn(void)
{
    hm_runtime *rt;
    churn_job jobs[CHURN_THREADS];
    pthread_t th[CHURN_THREADS];
    uint64_t sent = 0;
    hm_runtime_stats st;
    double give_up;

    /* idle 8 ms: a sweep pass, with reclamation, every millisecond. */
    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                                 .idle_timeout_ms = 8,
                                                 .factory = churn_factory},
                            &rt) == HM_OK);
    for (int i = 0; i < CHURN_THREADS; i++) {
        jobs[i] = (churn_job){.rt = rt,
                              .rounds = stress_scaled(40000),
                              .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
        CHECK(pthread_create(&th[i], NULL, churn_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < CHURN_THREADS; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        sent += jobs[i].sent;
    }
    CHECK(hm_runtime_wait_idle(rt, 60000) == HM_OK);
    CHECK(atomic_load(&churn_handled) == sent);
    /* Nothing is referenced and nothing is active: the sweeper must
     * reclaim every entry within a few passes. */
    give_up = stress_now_s() + 10.0;
    do {
        usleep(2000);
        hm_runtime_stats_get(rt, &st);
    } while (st.addresses > 0 && stress_now_s() < give_up);
    CHECK(st.addresses == 0);
    CHECK(st.entry_bytes == 0);
    hm_runtime_destroy(rt);
}

/* ------------------------------------------------------------ timer race */

#define TR_RECV 8
#define TR_SRC (TR_RECV + 2) /* the receivers, then two plain threads */
#define TR_KEEP 16           /* ids a source remembers, to cancel one */

enum { TR_ARMED = 1, TR_CANCELLED = 2 };

static const hm_type TR_FIRE = {.name = "s.tfire"};

typedef struct tr_source {
    hm_timer_id ids[TR_KEEP];
    uint32_t tokens[TR_KEEP];
    uint32_t next_seq[TR_RECV];
    uint64_t rng;
} tr_source;

static struct {
    hm_runtime *rt;
    hm_addr *to[TR_RECV];
    uint32_t budget;
    _Atomic uint32_t minted, cancelled, delivered;
    _Atomic uint8_t *state;     /* per token */
    _Atomic uint8_t *hits;      /* deliveries per token */
    uint32_t *tok_seq;          /* written before arming, read on delivery */
    uint8_t *tok_src;
    /* last seq delivered per (source, receiver) + 1; touched only by that
     * receiver's turns, which the runtime orders. */
    uint32_t last[TR_SRC][TR_RECV];
    tr_source src[TR_SRC];
} tr;

static uint32_t tr_rand(tr_source *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (uint32_t)s->rng;
}

/* Source `si` arms one timer to a random receiver and, every other time,
 * cancels one of the timers it armed before. False once the budget is spent. */
static bool tr_step(int si)
{
    tr_source *s = &tr.src[si];
    uint32_t tok = atomic_fetch_add(&tr.minted, 1);
    uint32_t dst = tr_rand(s) % TR_RECV, k = tr_rand(s) % TR_KEEP;
    /* One in four is armed without an id (no record; docs/adr/0180). */
    bool anon = tr_rand(s) % 4 == 0;
    hm_timer_id id = 0;

    if (tok >= tr.budget)
        return false;
    tr.tok_src[tok] = (uint8_t)si;
    tr.tok_seq[tok] = s->next_seq[dst]++;
    atomic_store(&tr.state[tok], TR_ARMED);
    CHECK(hm_runtime_send_after(tr.rt, tr.to[dst],
                                hm_msg_create(&TR_FIRE, NULL,
                                              (uint64_t)tok << 8 | dst),
                                (uint32_t)si % 4, anon ? NULL : &id) ==
          HM_OK);
    if (tr_rand(s) % 2 && s->ids[k] != 0 &&
        hm_runtime_cancel_timer(tr.rt, s->ids[k])) {
        atomic_store(&tr.state[s->tokens[k]], TR_CANCELLED);
        atomic_fetch_add(&tr.cancelled, 1);
    }
    if (!anon) {
        s->ids[k] = id;
        s->tokens[k] = tok;
    }
    return true;
}

static hm_err tr_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    int self = (int)(intptr_t)state;
    uint32_t tok = (uint32_t)(hm_msg_arg(msg) >> 8);

    if (hm_msg_type(msg) != &TR_FIRE) /* the kick-off */
        return tr_step(self), HM_OK;
    CHECK((int)(hm_msg_arg(msg) & 0xff) == self);
    CHECK(atomic_load(&tr.state[tok]) == TR_ARMED);
    CHECK(atomic_fetch_add(&tr.hits[tok], 1) == 0);
    /* Same source, same receiver, same delay: arming order. */
    uint32_t *last = &tr.last[tr.tok_src[tok]][self];
    CHECK(tr.tok_seq[tok] + 1 > *last);
    *last = tr.tok_seq[tok] + 1;
    atomic_fetch_add(&tr.delivered, 1);
    (void)ctx;
    tr_step(self);
    tr_step(self);
    return HM_OK;
}

static void *tr_thread(void *p)
{
    int si = (int)(intptr_t)p;

    while (tr_step(si))
        if (tr_rand(&tr.src[si]) % 8 == 0)
            usleep(100);
    return NULL;
}

static void timer_race(void)
{
    pthread_t th[2];
    char name[16];
    double give_up;

    memset(&tr, 0, sizeof tr);
    tr.budget = (uint32_t)stress_scaled(40000);
    tr.state = calloc(tr.budget + 1, 1);
    tr.hits = calloc(tr.budget + 1, 1);
    tr.tok_seq = calloc(tr.budget + 1, sizeof *tr.tok_seq);
    tr.tok_src = calloc(tr.budget + 1, 1);
    for (int i = 0; i < TR_SRC; i++)
        tr.src[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    CHECK(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &tr.rt) ==
          HM_OK);
    for (int i = 0; i < TR_RECV; i++) {
        hm_receiver r = {.handler = tr_handle, .state = (void *)(intptr_t)i,
                         .pinned = true};
        snprintf(name, sizeof name, "tr/%d", i);
        CHECK(hm_runtime_spawn(tr.rt, name, &r, &tr.to[i]) == HM_OK);
    }
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, tr_thread,
                             (void *)(intptr_t)(TR_RECV + i)) == 0);
    for (int i = 0; i < TR_RECV; i++)
        CHECK(hm_runtime_send(tr.rt, tr.to[i],
                              hm_msg_create(&hm_type_tick, NULL, 0)) == HM_OK);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* Everything armed is delivered or was cancelled, within 30 s. */
    give_up = stress_now_s() + 30;
    while (atomic_load(&tr.delivered) + atomic_load(&tr.cancelled) <
           tr.budget) {
        CHECK(stress_now_s() < give_up);
        usleep(1000);
    }
    CHECK(hm_runtime_wait_idle(tr.rt, 10000) == HM_OK);
    for (int i = 0; i < TR_RECV; i++)
        hm_addr_release(tr.to[i]);
    hm_runtime_destroy(tr.rt);
    for (uint32_t t = 0; t < tr.budget; t++)
        CHECK(atomic_load(&tr.hits[t]) ==
              (atomic_load(&tr.state[t]) == TR_CANCELLED ? 0 : 1));
    free(tr.state);
    free(tr.hits);
    free(tr.tok_seq);
    free(tr.tok_src);
}

int main(void)
{
    RUN_SCENARIO(deactivation_race);
    RUN_SCENARIO(request_race);
    RUN_SCENARIO(close_under_load);
    RUN_SCENARIO(directory_churn);
    RUN_SCENARIO(timer_race);
    return 0;
}
