/* runtime/log.h: levelled logging with stable message ids and a pluggable
 * sink.
 *
 * A log call names a level, a stable id ("RT-HANDLER-FAIL") that operators
 * and tests can match on, and a printf format. The macros test the level
 * before evaluating any argument, so a disabled DEBUG line costs one relaxed
 * load. The default sink writes one line to stderr; tests install their own
 * sink to capture and assert on lines. Library code never writes to stdout.
 *
 * The level and sink are process-wide (logging is a property of the process,
 * like stderr itself); both are atomics, safe to change at any time. */
#ifndef HM_RUNTIME_LOG_H
#define HM_RUNTIME_LOG_H

#include <stdatomic.h>

typedef enum {
    HM_LOG_LEVEL_ERROR = 0,
    HM_LOG_LEVEL_WARN = 1,
    HM_LOG_LEVEL_INFO = 2,
    HM_LOG_LEVEL_DEBUG = 3,
} hm_log_level;

/* A sink receives each formatted line (no trailing newline). `id` and `line`
 * are borrowed for the call. Called from any thread, concurrently. */
typedef void (*hm_log_sink_fn)(void *arg, hm_log_level level, const char *id,
                               const char *line);

/* Install `sink` (NULL restores the stderr sink). `arg` is borrowed until the
 * sink is replaced. */
void hm_log_set_sink(hm_log_sink_fn sink, void *arg);
void hm_log_set_level(hm_log_level level);
hm_log_level hm_log_get_level(void);
/* The level named by "error", "warn", "info" or "debug"; -1 if unknown. */
int hm_log_level_parse(const char *name);

void hm_log_write(hm_log_level level, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

extern _Atomic int hm_log_level_now; /* private: read by the macros */

#define HM_LOG_AT(lvl, id, ...)                                               \
    do {                                                                      \
        /* relaxed: a level change need not be seen at once. */               \
        if ((int)(lvl) <= atomic_load_explicit(&hm_log_level_now,             \
                                               memory_order_relaxed))         \
            hm_log_write((lvl), (id), __VA_ARGS__);                           \
    } while (0)
#define HM_LOG_ERROR(id, ...) HM_LOG_AT(HM_LOG_LEVEL_ERROR, id, __VA_ARGS__)
#define HM_LOG_WARN(id, ...) HM_LOG_AT(HM_LOG_LEVEL_WARN, id, __VA_ARGS__)
#define HM_LOG_INFO(id, ...) HM_LOG_AT(HM_LOG_LEVEL_INFO, id, __VA_ARGS__)
#define HM_LOG_DEBUG(id, ...) HM_LOG_AT(HM_LOG_LEVEL_DEBUG, id, __VA_ARGS__)

#endif
