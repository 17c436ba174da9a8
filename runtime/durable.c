/* runtime/durable.c: durable receiver state and reminders, the runtime's
 * side (the providers are store_sqlite.c and store_redis.c).
 *
 * State moves between memory and the store only inside the receiver's own
 * turn: loaded in the activation step, saved in the deactivation step, after
 * a message (write-through) or when the handler asks (hm_ctx_save). One
 * worker runs a name at a time (docs/adr/0003), so two activations of a
 * name never read or write its record at once, and no lock beyond the
 * store's is needed for state.
 *
 * Reminders are stored records plus ordinary one-shot runtime timers. A
 * table (receiver, reminder) -> (generation, timer) keeps which timer is the
 * live one, so a tick of a reminder that was replaced or forgotten after it
 * fired is recognised in the receiver's turn and dropped. A periodic
 * reminder's next timer is armed when its tick is handled, on the grid of
 * its first due time, so ticks never drift. Due times are stored in wall-
 * clock milliseconds (the monotonic clock restarts with the process),
 * measured as a wall-clock anchor plus the runtime's own clock, so manual
 * mode stays deterministic. */
#include "runtime/durable_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void free_name(void *p)
{
    hm_free(p);
}

const hm_type hm_type_reminder = {.name = "hm.reminder", .free = free_name};

typedef struct rem {
    struct rem *next;
    uint32_t hash;
    uint64_t gen;        /* the live tick's generation (message arg) */
    hm_timer_id timer;   /* the armed runtime timer, 0 if none */
    uint64_t due_unix_ms; /* first due time: the grid's origin */
    uint32_t period_ms;
    size_t key_len;
    char key[]; /* receiver NUL name NUL */
} rem;

typedef struct hm_durable {
    /* Guards the reminder table. Taken before the timer lock and the
     * store's lock, never after (docs/adr/0090). */
    pthread_mutex_t lock;
    rem **buckets;     /* guarded by: lock */
    uint32_t mask;     /* guarded by: lock */
    uint32_t count;    /* guarded by: lock */
    uint64_t next_gen; /* guarded by: lock */
    uint64_t base_unix_ms, base_rt_ms; /* immutable: the wall anchor */
} hm_durable;

/* ----------------------------------------------------------- the clock */

static uint64_t wall_now_ms(hm_runtime *rt)
{
    hm_durable *d = rt->durable;

    return d->base_unix_ms + (hm_rt_now_ms(rt) - d->base_rt_ms);
}

static uint64_t unix_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------- state in a turn */

static const hm_state_codec *codec_of(const hm_addr *e)
{
    return e->hooks->durable;
}

static void report(hm_ctx *ctx, hm_addr *e, const char *what, hm_err err)
{
    const hm_state_codec *c = codec_of(e);

    HM_LOG_ERROR("RT-STORE-FAIL", "%s: %s failed: %s", e->name, what,
                 hm_err_str(err));
    if (c->failed)
        c->failed(ctx, e->state, err);
}

/* Encodes and saves e's state (or deletes its record). */
static hm_err save_state(hm_runtime *rt, hm_ctx *ctx, hm_addr *e)
{
    const hm_state_codec *c = codec_of(e);
    hm_store *store = rt->cfg.store;
    void *data = NULL;
    size_t len = 0;
    hm_err err;

    if (!store) {
        report(ctx, e, "saving state (no store configured)", HM_EINVAL);
        return HM_EINVAL;
    }
    err = c->encode(e->state, &data, &len);
    if (err == HM_ENOTFOUND)
        err = hm_store_remove(store, e->name);
    else if (err == HM_OK)
        err = hm_store_save(store, e->name, data, len);
    else
        HM_LOG_ERROR("RT-STORE-ENCODE", "%s: the codec cannot encode the "
                     "state: %s", e->name, hm_err_str(err));
    free(data);
    if (err != HM_OK)
        report(ctx, e, "saving state", err);
    return err;
}

hm_err hm_durable_load(hm_runtime *rt, hm_ctx *ctx, hm_addr *e)
{
    const hm_state_codec *c = codec_of(e);
    void *data = NULL;
    size_t len = 0;
    hm_err err;

    if (!rt->cfg.store) {
        report(ctx, e, "loading state (no store configured)", HM_EINVAL);
        return HM_EINVAL;
    }
    err = hm_store_load(rt->cfg.store, e->name, &data, &len);
    if (err == HM_ENOTFOUND)
        return HM_OK; /* never saved: the factory's state is the state */
    if (err == HM_OK && (err = c->decode(e->state, data, len)) != HM_OK)
        HM_LOG_ERROR("RT-STORE-DECODE", "%s: the stored state (%zu bytes) "
                     "does not decode: %s", e->name, len, hm_err_str(err));
    free(data);
    if (err != HM_OK)
        report(ctx, e, "loading state", err);
    return err;
}

bool hm_durable_save_on_exit(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                             hm_deactivate_reason why)
{
    /* relaxed: the flags of an entry we own, written in this turn. */
    uint32_t flags = atomic_load_explicit(&e->sflags, memory_order_relaxed);

    /* A handler error discards the activation's changes; a spawned
     * activation whose state was never loaded must not overwrite the
     * record with the factory's fresh state. */
    if (why == HM_DEACTIVATE_ERROR || (flags & ENT_NEEDHOOK))
        return true;
    if (save_state(rt, ctx, e) == HM_OK)
        return true;
    return why == HM_DEACTIVATE_CLOSE;
}

hm_err hm_ctx_save(hm_ctx *ctx)
{
    hm_addr *e = ctx->self;

    if (!e->handler || !hm_durable_is(e) || !ctx->rt->cfg.store)
        return HM_EINVAL;
    return save_state(ctx->rt, ctx, e);
}

/* ------------------------------------------------------ reminder table */

/* The table key "receiver\0name\0" in `buf` (at least HM_ADDR_MAX_LEN*2+2);
 * returns its length, or 0 if a part is empty or too long. */
static size_t make_key(char *buf, const char *receiver, const char *name)
{
    size_t rl = strnlen(receiver, HM_ADDR_MAX_LEN + 1);
    size_t nl = strnlen(name, HM_ADDR_MAX_LEN + 1);

    if (rl == 0 || nl == 0 || rl > HM_ADDR_MAX_LEN || nl > HM_ADDR_MAX_LEN)
        return 0;
    memcpy(buf, receiver, rl + 1);
    memcpy(buf + rl + 1, name, nl + 1);
    return rl + nl + 2;
}

#define KEY_MAX (HM_ADDR_MAX_LEN * 2 + 2)

/* The slot that holds (or would hold) `key`; caller holds d->lock. */
static rem **find_slot(hm_durable *d, const char *key, size_t len,
                       uint32_t hash)
{
    rem **p = &d->buckets[hash & d->mask];

    while (*p && !((*p)->hash == hash && (*p)->key_len == len &&
                   memcmp((*p)->key, key, len) == 0))
        p = &(*p)->next;
    return p;
}

static void grow(hm_durable *d)
{
    uint32_t cap = (d->mask + 1) * 2;
    rem **b = hm_calloc(cap, sizeof *b);

    for (uint32_t i = 0; i <= d->mask; i++) {
        rem *r = d->buckets[i], *next;
        for (; r; r = next) {
            next = r->next;
            r->next = b[r->hash & (cap - 1)];
            b[r->hash & (cap - 1)] = r;
        }
    }
    hm_free(d->buckets);
    d->buckets = b;
    d->mask = cap - 1;
}

/* Finds or inserts the entry for `key`; caller holds d->lock. */
static rem *get_rem(hm_durable *d, const char *key, size_t len)
{
    uint32_t hash = hm_dir_hash(key, len);
    rem **p = find_slot(d, key, len, hash), *r;

    if (*p)
        return *p;
    r = hm_calloc(1, sizeof *r + len);
    r->hash = hash;
    r->key_len = len;
    memcpy(r->key, key, len);
    *p = r;
    if (++d->count > (d->mask + 1) * 2)
        grow(d);
    return r;
}

/* Unlinks and frees the entry for `key` if present; caller holds d->lock.
 * Returns its timer (0 if none or absent) for the caller to cancel. */
static hm_timer_id drop_rem(hm_durable *d, const char *key, size_t len,
                            bool *found)
{
    rem **p = find_slot(d, key, len, hm_dir_hash(key, len)), *r = *p;
    hm_timer_id t;

    *found = r != NULL;
    if (!r)
        return 0;
    t = r->timer;
    *p = r->next;
    d->count--;
    hm_free(r);
    return t;
}

/* Arms r's next tick at `due_unix_ms` for `to` (borrowed); caller holds
 * d->lock (then the timer lock: the order of docs/adr/0090). */
static void arm_tick(hm_runtime *rt, rem *r, hm_addr *to, uint64_t due_unix)
{
    const char *name = r->key + strlen(r->key) + 1;
    uint64_t now = wall_now_ms(rt);
    uint64_t delay = due_unix > now ? due_unix - now : 0;
    hm_msg *m = hm_msg_create(&hm_type_reminder, hm_strdup(name), r->gen);

    if (delay > UINT32_MAX)
        delay = UINT32_MAX;
    r->timer = 0;
    if (hm_rt_arm(rt, to, m, (uint32_t)delay, 0, 0, &r->timer) != HM_OK)
        hm_msg_destroy(m); /* closing: the record stays for next time */
}

/* The next point of r's grid strictly after now. */
static uint64_t next_on_grid(const rem *r, uint64_t now)
{
    uint64_t k;

    if (now < r->due_unix_ms)
        return r->due_unix_ms;
    k = (now - r->due_unix_ms) / r->period_ms + 1;
    return r->due_unix_ms + k * r->period_ms;
}

/* Stores and arms a reminder; `to` is borrowed. */
static hm_err remind(hm_runtime *rt, hm_addr *to, const char *name,
                     uint64_t due_unix, uint32_t period_ms)
{
    hm_durable *d = rt->durable;
    char key[KEY_MAX];
    size_t len = make_key(key, to->name, name ? name : "");
    hm_store_reminder sr = {to->name, name, due_unix, period_ms};
    hm_timer_id old;
    hm_err err;
    rem *r;

    if (!d || len == 0)
        return HM_EINVAL;
    pthread_mutex_lock(&d->lock);
    if ((err = hm_store_reminder_put(rt->cfg.store, &sr)) != HM_OK) {
        pthread_mutex_unlock(&d->lock);
        HM_LOG_ERROR("RT-REMIND-FAIL", "%s: reminder %s not stored: %s",
                     to->name, name, hm_err_str(err));
        return err;
    }
    r = get_rem(d, key, len);
    old = r->timer;
    r->gen = ++d->next_gen;
    r->due_unix_ms = due_unix;
    r->period_ms = period_ms;
    hm_runtime_cancel_timer(rt, old);
    arm_tick(rt, r, to, due_unix);
    pthread_mutex_unlock(&d->lock);
    return HM_OK;
}

hm_err hm_ctx_remind(hm_ctx *ctx, const char *name, uint32_t due_ms,
                     uint32_t period_ms)
{
    if (!ctx->rt->durable)
        return HM_EINVAL;
    return remind(ctx->rt, ctx->self, name,
                  wall_now_ms(ctx->rt) + due_ms, period_ms);
}

hm_err hm_runtime_remind(hm_runtime *rt, const char *receiver,
                         const char *name, uint32_t due_ms,
                         uint32_t period_ms)
{
    hm_addr *to;
    hm_err err;

    if (!rt->durable)
        return HM_EINVAL;
    if ((err = hm_runtime_intern(rt, receiver, &to)) != HM_OK)
        return err;
    err = remind(rt, to, name, wall_now_ms(rt) + due_ms, period_ms);
    hm_addr_release(to);
    return err;
}

hm_err hm_runtime_forget(hm_runtime *rt, const char *receiver,
                         const char *name)
{
    hm_durable *d = rt->durable;
    char key[KEY_MAX];
    size_t len;
    bool found;
    hm_timer_id t;
    hm_err err;

    if (!d || !receiver || !name ||
        (len = make_key(key, receiver, name)) == 0)
        return HM_EINVAL;
    pthread_mutex_lock(&d->lock);
    err = hm_store_reminder_remove(rt->cfg.store, receiver, name);
    if (err == HM_OK) {
        t = drop_rem(d, key, len, &found);
        hm_runtime_cancel_timer(rt, t);
        if (!found)
            err = HM_ENOTFOUND;
    }
    pthread_mutex_unlock(&d->lock);
    return err;
}

hm_err hm_ctx_forget(hm_ctx *ctx, const char *name)
{
    return hm_runtime_forget(ctx->rt, ctx->self->name, name);
}

/* ------------------------------------------------ reminders in a turn */

bool hm_durable_reminder_due(hm_runtime *rt, hm_addr *e, const hm_msg *m)
{
    hm_durable *d = rt->durable;
    char key[KEY_MAX];
    size_t len;
    rem *r;
    bool live;

    if (!d || !m->payload ||
        (len = make_key(key, e->name, m->payload)) == 0)
        return false;
    pthread_mutex_lock(&d->lock);
    r = *find_slot(d, key, len, hm_dir_hash(key, len));
    live = r && r->gen == m->arg;
    if (live && r->period_ms)
        arm_tick(rt, r, e, next_on_grid(r, wall_now_ms(rt)));
    pthread_mutex_unlock(&d->lock);
    return live;
}

/* A one-shot reminder was handled: delete it, stored and in the table. */
static void retire_one_shot(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                            const hm_msg *m)
{
    hm_durable *d = rt->durable;
    char key[KEY_MAX];
    size_t len = make_key(key, e->name, m->payload);
    bool found;
    rem *r;
    hm_err err = HM_OK;

    if (!d || len == 0)
        return;
    pthread_mutex_lock(&d->lock);
    r = *find_slot(d, key, len, hm_dir_hash(key, len));
    if (r && r->gen == m->arg && r->period_ms == 0) {
        err = hm_store_reminder_remove(rt->cfg.store, e->name, m->payload);
        if (err == HM_OK)
            drop_rem(d, key, len, &found);
    }
    pthread_mutex_unlock(&d->lock);
    if (err != HM_OK)
        HM_LOG_ERROR("RT-REMIND-FAIL", "%s: handled reminder %s not "
                     "deleted (it fires again after a restart): %s",
                     e->name, (const char *)m->payload, hm_err_str(err));
}

hm_err hm_durable_after(hm_runtime *rt, hm_ctx *ctx, hm_addr *e,
                        const hm_msg *m)
{
    if (m->type == &hm_type_reminder)
        retire_one_shot(rt, ctx, e, m);
    if (!e->handler || !hm_durable_is(e) || !codec_of(e)->write_through)
        return HM_OK;
    return save_state(rt, ctx, e);
}

/* -------------------------------------------------- start and finish */

typedef struct loaded {
    hm_store_reminder *items;
    size_t count, cap;
} loaded;

static void collect(void *arg, const hm_store_reminder *r)
{
    loaded *l = arg;

    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->items = hm_realloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->count++] = (hm_store_reminder){
        hm_strdup(r->receiver), hm_strdup(r->name), r->due_unix_ms,
        r->period_ms};
}

/* Arms one stored reminder again (its first tick at once if overdue). */
static void rearm(hm_runtime *rt, const hm_store_reminder *sr)
{
    hm_addr *to;
    hm_err err = hm_runtime_intern(rt, sr->receiver, &to);

    if (err != HM_OK) {
        HM_LOG_ERROR("RT-REMIND-FAIL", "stored reminder %s of '%s' "
                     "skipped: %s", sr->name, sr->receiver, hm_err_str(err));
        return;
    }
    char key[KEY_MAX];
    size_t len = make_key(key, sr->receiver, sr->name);
    if (len > 0) {
        hm_durable *d = rt->durable;
        pthread_mutex_lock(&d->lock);
        rem *r = get_rem(d, key, len);
        r->gen = ++d->next_gen;
        r->due_unix_ms = sr->due_unix_ms;
        r->period_ms = sr->period_ms;
        arm_tick(rt, r, to, sr->due_unix_ms);
        pthread_mutex_unlock(&d->lock);
    }
    hm_addr_release(to);
}

hm_err hm_durable_start(hm_runtime *rt)
{
    hm_durable *d;
    loaded l = {0};
    hm_err err;

    if (!rt->cfg.store)
        return HM_OK;
    d = hm_calloc(1, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    d->mask = 63;
    d->buckets = hm_calloc(d->mask + 1, sizeof *d->buckets);
    d->base_unix_ms = unix_now_ms();
    d->base_rt_ms = hm_rt_now_ms(rt);
    rt->durable = d;
    err = hm_store_reminder_each(rt->cfg.store, collect, &l);
    for (size_t i = 0; i < l.count; i++) {
        if (err == HM_OK)
            rearm(rt, &l.items[i]);
        hm_free((char *)l.items[i].receiver);
        hm_free((char *)l.items[i].name);
    }
    hm_free(l.items);
    if (err == HM_OK && l.count > 0)
        HM_LOG_INFO("RT-REMIND-LOAD", "%zu stored reminders armed (%s)",
                    l.count, hm_store_provider_name(rt->cfg.store));
    return err;
}

void hm_durable_fini(hm_runtime *rt)
{
    hm_durable *d = rt->durable;

    if (!d)
        return;
    for (uint32_t i = 0; i <= d->mask; i++) {
        rem *r = d->buckets[i], *next;
        for (; r; r = next) {
            next = r->next;
            hm_free(r);
        }
    }
    hm_free(d->buckets);
    pthread_mutex_destroy(&d->lock);
    hm_free(d);
    rt->durable = NULL;
}
