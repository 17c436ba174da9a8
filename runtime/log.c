/* runtime/log.c: formatting and the default stderr sink.
 *
 * The sink and its argument are published together as one pointer to an
 * immutable pair, so a reader never sees a new sink with an old argument.
 * Replaced pairs are kept on a list (they are a few bytes, and a sink is
 * replaced a handful of times in a process's life), so a thread still inside
 * the old sink never reads freed memory. */
#include "runtime/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* relaxed: a level; a log line may see an old one for a moment. */
_Atomic int hm_log_level_now = HM_LOG_LEVEL_INFO;

typedef struct sink_pair {
    hm_log_sink_fn fn;
    void *arg;
    struct sink_pair *retired_next; /* guarded by: retired_lock */
} sink_pair;

/* acq_rel exchange in hm_log_set_sink(), acquire load in hm_log_write():
 * a writer sees the pair's fields once it sees the pointer. */
static _Atomic(sink_pair *) current_sink;
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static sink_pair *retired; /* guarded by: retired_lock */

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

static void stderr_sink(void *arg, hm_log_level level, const char *id,
                        const char *line)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32];

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %-5s %s %s\n", stamp, ts.tv_nsec / 1000000,
            level_names[level], id, line);
}

void hm_log_set_sink(hm_log_sink_fn sink, void *arg)
{
    sink_pair *p = NULL, *old;

    if (sink) {
        p = malloc(sizeof *p);
        if (!p)
            abort();
        p->fn = sink;
        p->arg = arg;
        p->retired_next = NULL;
    }
    /* acq_rel: the release half pairs with the acquire load in
     * hm_log_write(), so a writer sees the pair's fields. The old pair is
     * kept, not freed (see the file comment). */
    old = atomic_exchange_explicit(&current_sink, p, memory_order_acq_rel);
    if (old) {
        pthread_mutex_lock(&retired_lock);
        old->retired_next = retired;
        retired = old;
        pthread_mutex_unlock(&retired_lock);
    }
}

void hm_log_set_level(hm_log_level level)
{
    /* relaxed: the level is advisory and read with relaxed loads. */
    atomic_store_explicit(&hm_log_level_now, (int)level, memory_order_relaxed);
}

hm_log_level hm_log_get_level(void)
{
    return (hm_log_level)atomic_load_explicit(&hm_log_level_now,
                                              memory_order_relaxed);
}

int hm_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void hm_log_write(hm_log_level level, const char *id, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    /* acquire: pairs with the release store in hm_log_set_sink(). */
    sink_pair *p = atomic_load_explicit(&current_sink, memory_order_acquire);

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (p)
        p->fn(p->arg, level, id, line);
    else
        stderr_sink(NULL, level, id, line);
}
