/* tests/stress/harness.h: the tiny harness of the stress programs.
 *
 * Stress programs are plain executables (Criterion cannot start under
 * ThreadSanitizer), run by `make test`, `make asan` and `make tsan`. Each
 * scenario is a function; CHECK prints the failed condition with its
 * location and exits non-zero. STRESS_SCALE (a percentage, default 100)
 * shrinks or grows the work, so TSan runs can stay short. */
#ifndef HM_TESTS_STRESS_HARNESS_H
#define HM_TESTS_STRESS_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "CHECK failed: %s at %s:%d\n", #cond, __FILE__,  \
                    __LINE__);                                               \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static inline long stress_scaled(long n)
{
    const char *s = getenv("STRESS_SCALE");
    long pct = s ? atol(s) : 100;
    long v = n * pct / 100;
    return v > 0 ? v : 1;
}

static inline double stress_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define RUN_SCENARIO(fn)                                                     \
    do {                                                                     \
        double t0_ = stress_now_s();                                         \
        fn();                                                                \
        printf("ok   %-40s %.2f s\n", #fn, stress_now_s() - t0_);            \
        fflush(stdout);                                                      \
    } while (0)

#endif
