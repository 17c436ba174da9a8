/* runtime/store.c: a store is a provider (hm_store_ops) behind one lock.
 *
 * Providers are single-threaded objects (one SQLite connection, one Redis
 * connection), and workers call them from any thread, so the store
 * serialises every call with one mutex held for exactly one provider call.
 * SQLite admits one writer at a time anyway, and a Redis connection
 * answers in order, so a connection per worker would buy little but more
 * file handles and sockets (docs/adr/0090). */
#include "runtime/store.h"

#include "runtime/alloc.h"
#include "runtime/durable_impl.h"
#include "runtime/log.h"

#include <pthread.h>

struct hm_store {
    const hm_store_ops *ops;
    pthread_mutex_t lock; /* serialises every call on impl */
    void *impl;           /* guarded by: lock */
};

hm_store *hm_store_create(const hm_store_ops *ops, void *impl)
{
    hm_store *s = hm_calloc(1, sizeof *s);

    HM_ASSERT(ops && ops->load && ops->save && ops->remove &&
              ops->reminder_put && ops->reminder_remove &&
              ops->reminder_each);
    s->ops = ops;
    s->impl = impl;
    hm_rt_mutex_init(&s->lock);
    return s;
}

void hm_store_destroy(hm_store *s)
{
    if (!s)
        return;
    if (s->ops->close)
        s->ops->close(s->impl);
    pthread_mutex_destroy(&s->lock);
    hm_free(s);
}

const char *hm_store_provider_name(const hm_store *s)
{
    return s->ops->name ? s->ops->name : "store";
}

hm_err hm_store_load(hm_store *s, const char *key, void **data_out,
                     size_t *len_out)
{
    hm_err err;

    pthread_mutex_lock(&s->lock);
    err = s->ops->load(s->impl, key, data_out, len_out);
    pthread_mutex_unlock(&s->lock);
    return err;
}

hm_err hm_store_save(hm_store *s, const char *key, const void *data,
                     size_t len)
{
    hm_err err;

    pthread_mutex_lock(&s->lock);
    err = s->ops->save(s->impl, key, data, len);
    pthread_mutex_unlock(&s->lock);
    return err;
}

hm_err hm_store_remove(hm_store *s, const char *key)
{
    hm_err err;

    pthread_mutex_lock(&s->lock);
    err = s->ops->remove(s->impl, key);
    pthread_mutex_unlock(&s->lock);
    return err;
}

hm_err hm_store_reminder_put(hm_store *s, const hm_store_reminder *r)
{
    hm_err err;

    pthread_mutex_lock(&s->lock);
    err = s->ops->reminder_put(s->impl, r);
    pthread_mutex_unlock(&s->lock);
    return err;
}

hm_err hm_store_reminder_remove(hm_store *s, const char *receiver,
                                const char *name)
{
    hm_err err;

    pthread_mutex_lock(&s->lock);
    err = s->ops->reminder_remove(s->impl, receiver, name);
    pthread_mutex_unlock(&s->lock);
    return err;
}

hm_err hm_store_reminder_each(hm_store *s, hm_store_reminder_fn fn,
                              void *arg)
{
    hm_err err;

    pthread_mutex_lock(&s->lock);
    err = s->ops->reminder_each(s->impl, fn, arg);
    pthread_mutex_unlock(&s->lock);
    return err;
}
