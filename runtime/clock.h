/* runtime/clock.h: monotonic time in milliseconds and nanoseconds.
 *
 * All runtime time comes from here. A runtime in deterministic mode keeps its
 * own manual clock (see hm_runtime_advance()) and never calls these. */
#ifndef HM_RUNTIME_CLOCK_H
#define HM_RUNTIME_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds since an arbitrary origin. Thread-safe. */
uint64_t hm_clock_now_ms(void);
/* Monotonic nanoseconds since an arbitrary origin. Thread-safe. */
uint64_t hm_clock_now_ns(void);

#endif
