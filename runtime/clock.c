/* runtime/clock.c: CLOCK_MONOTONIC, read through the vDSO.
 *
 * Key decision: one clock for every deadline and timer in Hermes, the
 * monotonic one, so a wall-clock step (NTP, an administrator) never fires a
 * timer early or holds one back. clock_gettime() on it usually costs tens
 * of nanoseconds through the vDSO, without a system call. */
#include "runtime/clock.h"

#include <time.h>

uint64_t hm_clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t hm_clock_now_ms(void)
{
    return hm_clock_now_ns() / 1000000u;
}
