/* bench/bench_common.h: what every benchmark program shares: clocks, the
 * TSV row, the smoke check, and the process's memory figures.
 *
 * Each bench/bench_*.c builds into its own program, so the helpers are
 * static inline here rather than a library. A program prints its results
 * to stdout as TSV rows `scenario system value unit better` (the header is
 * written by the suite script, which collects the rows of every program);
 * in smoke mode it prints one `ok` line per checked scenario instead, and
 * exits 1 at the first failed check. Nothing here is timing-sensitive:
 * timing is reported, never asserted. */
#ifndef HM_BENCH_COMMON_H
#define HM_BENCH_COMMON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Monotonic wall time in nanoseconds. */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time used by every thread of the process, in nanoseconds. */
static inline uint64_t bench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time used by the calling thread, in nanoseconds. */
static inline uint64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u,
                          .tv_nsec = (long)(us % 1000000u) * 1000};
    nanosleep(&ts, NULL);
}

/* Prints one result row. `better` is "higher" or "lower". */
static inline void bench_row(const char *scenario, const char *system,
                             double value, const char *unit,
                             const char *better)
{
    printf("%s\t%s\t%.6g\t%s\t%s\n", scenario, system, value, unit, better);
    fflush(stdout);
}

/* A failed smoke or sanity check: says what differed and exits 1. */
static inline void bench_fail(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: CHECK FAILED: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Checks `got == want` for a named count; exits 1 if not. */
static inline void bench_check(const char *prog, const char *what,
                               uint64_t got, uint64_t want)
{
    if (got != want)
        bench_fail(prog, "%s: got %llu, want %llu", what,
                   (unsigned long long)got, (unsigned long long)want);
}

/* Resident set size of this process in bytes (from /proc/self/statm), or
 * 0 if it cannot be read. */
static inline uint64_t bench_rss_bytes(void)
{
    unsigned long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &pages_total, &pages_resident) != 2)
        pages_resident = 0;
    fclose(f);
    return (uint64_t)pages_resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* xorshift64*: the same small generator in every benchmark (and in the
 * peers), so the timer delays have the same distribution everywhere. */
static inline uint64_t bench_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static inline int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The `pct` percentile (0..100) of `v`, which must be sorted (use
 * bench_cmp_i64 with qsort). */
static inline int64_t bench_percentile(const int64_t *v, size_t count,
                                       double pct)
{
    size_t i;

    if (count == 0)
        return 0;
    i = (size_t)(pct / 100.0 * (double)(count - 1) + 0.5);
    return v[i < count ? i : count - 1];
}

#endif
