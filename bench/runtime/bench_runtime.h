/* bench/runtime/bench_runtime.h: what the runtime benchmark's files share
 * (bench/bench_runtime.c is the program; bench/runtime/ holds its
 * scenarios and helpers, linked into it by the Makefile).
 *
 * Sizes, message types, the per-run `bench` record and the helpers every
 * scenario uses; each scenario file defines its run_* functions. */
#ifndef HM_BENCH_RUNTIME_BENCH_RUNTIME_H
#define HM_BENCH_RUNTIME_BENCH_RUNTIME_H

#include "bench/bench_common.h"
#include "runtime/runtime.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PROG "bench_runtime"
#define FANIN_SENDERS 4
#define REQUEST_PAIRS 4
#define CREATE_CHUNK 1024 /* children the parent addresses per turn */

typedef struct sizes {
    uint64_t pingpong_rounds;
    uint64_t ring_actors, ring_hops;
    uint64_t fanin_count;
    uint64_t create_count;
    uint64_t churn_cycles, churn_names;
    uint64_t timer_count, timer_max_ms;
    uint64_t request_total;
    uint64_t memory_count;
    uint32_t wait_s; /* give up (and fail) after this long */
} sizes;


/* Message types: payload-free, the argument carries everything. */
extern const hm_type T_START;
extern const hm_type T_PING;
extern const hm_type T_PONG;
extern const hm_type T_TOKEN;
extern const hm_type T_ITEM;
extern const hm_type T_WORK;
extern const hm_type T_DONE;
extern const hm_type T_MORE;
extern const hm_type T_FIRE;
extern const hm_type T_REQ;
extern const hm_type T_REP;


/* One scenario run: the runtime, its sizes, and what the receivers report
 * back to the main thread. */
typedef struct bench {
    hm_runtime *rt;
    const sizes *sz;
    bool smoke;
    atomic_uint_fast64_t end_ns;   /* stamped by the last receiver */
    atomic_uint_fast64_t progress; /* scenario-defined count */
    atomic_uint_fast64_t errors;   /* failed sends or replies */
    atomic_uint_fast64_t last;     /* scenario-defined final value */
} bench;


void finish(bench *b);
void count_error(bench *b);
hm_err send_arg(hm_ctx *ctx, bench *b, hm_addr *to, const hm_type *t,
                uint64_t arg);
void post(bench *b, hm_addr *to, const hm_type *t, uint64_t arg);
hm_addr *intern(bench *b, const char *name);
hm_addr *spawn(bench *b, const char *name, hm_handler_fn fn, void *state);
uint64_t await_end(bench *b, const char *what);
void settle(bench *b, hm_runtime_stats *st);
void open_runtime(bench *b, const sizes *sz, bool smoke,
                  uint32_t idle_timeout_ms);
double seconds(uint64_t t0, uint64_t t1);
const char *name_of(char *buf, char prefix, uint64_t i);

/* The factory of every scenario's runtime (bench/bench_runtime.c). */
hm_err factory(void *arg, const char *name, hm_receiver *out);
/* Receivers the factory makes. */
hm_err child_handle(hm_ctx *ctx, void *state, hm_msg *msg);
hm_err worker_handle(hm_ctx *ctx, void *state, hm_msg *msg);
hm_err parked_handle(hm_ctx *ctx, void *state, hm_msg *msg);

/* bench/runtime/messaging.c */
void run_pingpong(const sizes *sz, bool smoke);
void run_ring(const sizes *sz, bool smoke);
void run_fanin(const sizes *sz, bool smoke);
void run_request(const sizes *sz, bool smoke);
/* bench/runtime/lifecycle.c */
void run_create(const sizes *sz, bool smoke);
void run_churn(const sizes *sz, bool smoke);
void run_timers(const sizes *sz, bool smoke);
void run_memory(const sizes *sz, bool smoke);

#endif
