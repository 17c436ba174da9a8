/* bench/bench_runtime.c: the Hermes side of the runtime benchmark suite:
 * the program (scenarios are in bench/runtime/).
 *
 * Eight scenarios after the Savina suite, written the way a user of
 * runtime/runtime.h would write them: receivers addressed by interned
 * handles on every hot path (hm_runtime_intern once, then hm_ctx_send),
 * request/reply through hm_ctx_request, timers through
 * hm_runtime_send_after, receivers created on demand by the factory and
 * retired with hm_ctx_deactivate. The same scenarios exist for Erlang and
 * Go in bench/peers/, and bench/suite_runtime.sh runs them side by side
 * (docs/benchmarks.md says what each one measures).
 *
 * The key decision: the end of a run is stamped by the receiver that sees
 * the last message, not by the main thread noticing it, so the main
 * thread's polling never shows up in a figure. Each scenario gets a fresh
 * runtime (and the suite runs each scenario in a fresh process), so one
 * scenario's heap never inflates the next one's memory figure.
 *
 * Usage: bench_runtime [--smoke] [--div N] [SCENARIO...]  (default: all)
 * --div N divides every count by N, to profile under valgrind.
 * Prints TSV rows `scenario hermes value unit better`; with --smoke it runs
 * tiny sizes, checks every count, token and reply, and prints `ok` lines
 * instead of times. Exits 1 on a failed check. */
#include "bench/runtime/bench_runtime.h"

#include <stdlib.h>
#include <string.h>

static const sizes FULL = {
    .pingpong_rounds = 1000000,
    .ring_actors = 503, .ring_hops = 10000000,
    .fanin_count = 20000000,
    .create_count = 1000000,
    .churn_cycles = 1000000, .churn_names = 1000,
    .timer_count = 1000000, .timer_max_ms = 1000,
    .request_total = 1000000,
    .memory_count = 1000000,
    .wait_s = 300,
};

static const sizes SMOKE = {
    .pingpong_rounds = 1000,
    .ring_actors = 503, .ring_hops = 1000,
    .fanin_count = 1000,
    .create_count = 1000,
    .churn_cycles = 1000, .churn_names = 100,
    .timer_count = 1000, .timer_max_ms = 20,
    .request_total = 1000,
    .memory_count = 1000,
    .wait_s = 30,
};


/* ---------------------------------------------------------------- main */

/* Receivers made on demand: "c<i>" (create), "w<i>" (churn), "m<i>"
 * (memory). Their state is the bench itself. */
hm_err factory(void *arg, const char *name, hm_receiver *out)
{
    hm_handler_fn fn;

    switch (name[0]) {
    case 'c':
        fn = child_handle;
        break;
    case 'w':
        fn = worker_handle;
        break;
    case 'm':
        fn = parked_handle;
        break;
    default:
        return HM_ENOTFOUND;
    }
    *out = (hm_receiver){.handler = fn, .state = arg};
    return HM_OK;
}

static const struct {
    const char *name;
    void (*run)(const sizes *sz, bool smoke);
} SCENARIOS[] = {
    {"pingpong", run_pingpong}, {"ring", run_ring},
    {"fanin", run_fanin},       {"create", run_create},
    {"churn", run_churn},       {"timers", run_timers},
    {"request", run_request},   {"memory", run_memory},
};
#define NSCENARIOS (sizeof SCENARIOS / sizeof SCENARIOS[0])

static int find_scenario(const char *name)
{
    for (size_t i = 0; i < NSCENARIOS; i++)
        if (strcmp(SCENARIOS[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* FULL with every count divided by `div` (for profiling under valgrind). */
static sizes divided(uint64_t div)
{
    sizes sz = FULL;
    uint64_t *counts[] = {&sz.pingpong_rounds, &sz.ring_hops, &sz.fanin_count,
                          &sz.create_count, &sz.churn_cycles, &sz.timer_count,
                          &sz.request_total, &sz.memory_count};

    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        *counts[i] = *counts[i] / div > 0 ? *counts[i] / div : 1;
    return sz;
}

int main(int argc, char **argv)
{
    bool smoke = false, any = false;
    sizes full = FULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = true;
        } else if (strcmp(argv[i], "--div") == 0 && i + 1 < argc) {
            uint64_t div = strtoull(argv[i + 1], NULL, 10);
            full = divided(div > 0 ? div : 1);
            argv[i][0] = argv[i + 1][0] = '\0'; /* not scenario names */
            i++;
        } else if (find_scenario(argv[i]) < 0) {
            fprintf(stderr, "%s: no scenario '%s'\n", PROG, argv[i]);
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        int s = find_scenario(argv[i]);
        if (s >= 0) {
            SCENARIOS[s].run(smoke ? &SMOKE : &full, smoke);
            any = true;
        }
    }
    for (size_t i = 0; !any && i < NSCENARIOS; i++)
        SCENARIOS[i].run(smoke ? &SMOKE : &full, smoke);
    return 0;
}
