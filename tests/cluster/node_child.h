/* tests/cluster/node_child.h: a Hermes cluster node as a separate process,
 * for the multi-process tests of cluster/node.c.
 *
 * The test binary runs itself again (/proc/self/exe) with HM_TEST_NODE=1 in
 * its environment and the cluster flags on its command line; its main()
 * then calls child_main() instead of running the tests. The child is a real
 * node: its own runtime, net and I/O threads, on 127.0.0.1. It talks to
 * the test over pipes, one line each way:
 *   stdout: "ready <addr> <inc>", "event <member> <inc> <EVENT>",
 *           "got <address> <text>" (a message its echo receiver handled)
 *   stdin:  "register <name>", "send <name> <text>", "quit"
 * Its echo receivers ("test/echo/...") answer a request with
 * "echo:<text>@<node>". */
#ifndef HM_TESTS_CLUSTER_NODE_CHILD_H
#define HM_TESTS_CLUSTER_NODE_CHILD_H

#include "cluster/node.h"
#include "cluster/options.h"
#include "net/net.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The test's message type: a string payload. */
static inline void text_free(void *p)
{
    hm_free(p);
}

static inline json_t *text_to_json(const void *p)
{
    return json_string(p ? p : "");
}

static inline hm_err text_from_json(const json_t *j, void **out)
{
    /* A C string cannot hold a NUL (text_from_string agrees). */
    if (!json_is_string(j) ||
        memchr(json_string_value(j), '\0', json_string_length(j)))
        return HM_EPROTO;
    *out = hm_strdup(json_string_value(j));
    return HM_OK;
}

/* The string codec (runtime.h): a link encodes and decodes the text
 * without a json_t; it must agree with the JSON one above. */
static inline const char *text_to_string(const void *p, size_t *len)
{
    const char *s = p ? p : "";

    *len = strlen(s);
    return s;
}

static inline hm_err text_from_string(const char *s, size_t len, void **out)
{
    char *copy;

    if (memchr(s, '\0', len))
        return HM_EPROTO; /* a C string cannot hold it */
    copy = hm_alloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    *out = copy;
    return HM_OK;
}

static const hm_type TEXT = {.name = "test.text", .free = text_free,
                             .to_json = text_to_json,
                             .from_json = text_from_json,
                             .to_string = text_to_string,
                             .from_string = text_from_string};

static inline hm_msg *text_msg(const char *s)
{
    return hm_msg_create(&TEXT, hm_strdup(s), 0);
}

/* Called by echo receivers for each message they handle. */
typedef void (*echo_seen_fn)(void *arg, const char *addr, const char *text);

typedef struct echo_env {
    const char *node;
    echo_seen_fn seen;
    void *seen_arg;
} echo_env;

static inline hm_err echo_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    echo_env *env = state;
    char reply[512];
    const char *text;

    if (hm_msg_type(msg) != &TEXT)
        return HM_OK;
    text = hm_msg_payload(msg);
    env->seen(env->seen_arg, hm_addr_name(hm_ctx_self(ctx)), text);
    if (hm_msg_req_id(msg) && !hm_msg_is_reply(msg)) {
        snprintf(reply, sizeof reply, "echo:%s@%s", text, env->node);
        hm_ctx_reply(ctx, msg, text_msg(reply));
    }
    return HM_OK;
}

/* A sink counts what it receives and answers a request with the count. */
static inline hm_err sink_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    uint64_t *count = state;
    char text[32];

    if (hm_msg_type(msg) != &TEXT)
        return HM_OK;
    if (hm_msg_req_id(msg) && !hm_msg_is_reply(msg)) {
        snprintf(text, sizeof text, "%llu", (unsigned long long)*count);
        hm_ctx_reply(ctx, msg, text_msg(text));
    } else {
        (*count)++;
    }
    return HM_OK;
}

static inline void sink_deactivate(hm_ctx *ctx, void *state,
                            hm_deactivate_reason why)
{
    (void)ctx;
    (void)why;
    hm_free(state);
}

static const hm_hooks sink_hooks = {.deactivate = sink_deactivate};

/* A "from" receiver reports each message with its sender's address:
 * "<text> from <sender>" ("-" when it has none). */
static inline hm_err from_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    echo_env *env = state;
    const hm_addr *from = hm_msg_from(msg);
    char text[512];

    if (hm_msg_type(msg) != &TEXT)
        return HM_OK;
    snprintf(text, sizeof text, "%s from %s", (const char *)hm_msg_payload(msg),
             from ? hm_addr_name(from) : "-");
    env->seen(env->seen_arg, hm_addr_name(hm_ctx_self(ctx)), text);
    return HM_OK;
}

/* The application factory: "test/echo/..." names are echo receivers,
 * "test/sink/..." names sinks, "test/from/..." names report senders. */
static inline hm_err echo_factory(void *arg, const char *name,
                                  hm_receiver *out)
{
    if (strncmp(name, "test/from/", 10) == 0) {
        *out = (hm_receiver){.handler = from_handle, .state = arg};
        return HM_OK;
    }
    if (strncmp(name, "test/sink/", 10) == 0) {
        *out = (hm_receiver){.handler = sink_handle,
                             .state = hm_calloc(1, sizeof(uint64_t)),
                             .hooks = &sink_hooks};
        return HM_OK;
    }
    if (strncmp(name, "test/echo/", 10) != 0)
        return HM_ENOTFOUND;
    *out = (hm_receiver){.handler = echo_handle, .state = arg};
    return HM_OK;
}

/* Failure-detector timers shrunk about fourfold, for smoke runs
 * (HM_NODE_FAST): a silent node is dead in well under a second. */
static inline void fast_timers(hm_members_config *t)
{
    *t = (hm_members_config){.heartbeat_interval_ms = 60,
                             .suspect_after_ms = 400,
                             .probe_timeout_ms = 250,
                             .round_timeout_ms = 300,
                             .probe_interval_ms = 120,
                             .dead_after_ms = 600};
}

/* Names under this prefix are placed receivers (rendezvous hashing). */
#define PLACED_PREFIX "test/echo/p/"

static inline bool placed_names(void *arg, const char *name)
{
    (void)arg;
    return strncmp(name, PLACED_PREFIX, sizeof PLACED_PREFIX - 1) == 0;
}

/* ------------------------------------------------------------- child */

static inline void child_say(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static inline void child_say(const char *fmt, ...)
{
    va_list ap;

    flockfile(stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    funlockfile(stdout);
}

static inline void child_seen(void *arg, const char *addr,
                              const char *text)
{
    (void)arg;
    child_say("got %s %s", addr, text);
}

static inline void child_event(void *arg, const char *name, uint64_t inc,
                        hm_member_event ev)
{
    (void)arg;
    child_say("event %s %llu %s", name, (unsigned long long)inc,
              hm_member_event_name(ev));
}

static inline void child_commands(hm_runtime *rt, hm_node *node)
{
    char line[1024];

    while (fgets(line, sizeof line, stdin)) {
        char *nl = strchr(line, '\n');
        char *arg;

        if (nl)
            *nl = '\0';
        if (strcmp(line, "quit") == 0)
            break;
        if (strncmp(line, "lookup ", 7) == 0 &&
            (arg = strchr(line + 7, ' ')) != NULL) {
            char where[HM_NODE_NAME_MAX + 1] = "";
            *arg++ = '\0';
            /* Presence has no event to wait on: poll, bounded. */
            for (int i = 0; i < 5000; i++) {
                if (hm_node_lookup(node, line + 7, where) == HM_OK &&
                    strcmp(where, arg) == 0)
                    break;
                usleep(2000);
            }
            child_say("found %s %s", line + 7, where);
        } else if (strncmp(line, "register ", 9) == 0) {
            hm_node_register(node, line + 9);
        } else if (strncmp(line, "send ", 5) == 0 &&
                   (arg = strchr(line + 5, ' ')) != NULL) {
            hm_msg *m;
            *arg++ = '\0';
            m = text_msg(arg);
            if (hm_runtime_send_name(rt, line + 5, m) != HM_OK)
                hm_msg_destroy(m);
        }
    }
}

static inline int child_main(int argc, char **argv)
{
    hm_cluster_options opt;
    hm_node_config cfg = {.factory = echo_factory, .on_event = child_event,
                          .placed = placed_names};
    echo_env env = {.seen = child_seen};
    hm_runtime *rt = NULL;
    hm_net *net = NULL;
    hm_node *node = NULL;

    const char *level = getenv("HM_NODE_LOG"); /* "info" to debug */

    hm_log_set_level(level && hm_log_level_parse(level) >= 0
                         ? (hm_log_level)hm_log_level_parse(level)
                         : HM_LOG_LEVEL_WARN);
    if (hm_cluster_options_parse(&argc, argv, &opt) != HM_OK || !opt.enabled) {
        fprintf(stderr, "child: %s\n", opt.error);
        return 2;
    }
    hm_cluster_options_apply(&opt, &cfg);
    cfg.factory_arg = &env;
    if (getenv("HM_NODE_FAST"))
        fast_timers(&cfg.timers);
    env.node = opt.node;
    if (hm_node_create(&cfg, &node) != HM_OK ||
        hm_runtime_create(&(hm_runtime_config){.threads = 2,
                                               .factory = hm_node_factory,
                                               .factory_arg = node},
                          &rt) != HM_OK ||
        hm_runtime_register_type(rt, &TEXT) != HM_OK ||
        hm_net_create(&(hm_net_config){.rt = rt}, &net) != HM_OK ||
        hm_node_start(node, rt, net) != HM_OK) {
        fprintf(stderr, "child %s: cannot start the node\n", opt.node);
        return 3;
    }
    child_say("ready %s %llu", hm_node_addr(node),
              (unsigned long long)hm_node_inc(node));
    child_commands(rt, node);
    hm_node_stop(node, 1000);
    hm_net_stop(net);
    hm_runtime_destroy(rt);
    hm_net_destroy(net);
    hm_node_destroy(node);
    hm_cluster_options_fini(&opt);
    return 0;
}

/* --------------------------------------------- children, seen from above */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define CHILD_WAIT_MS 10000 /* a hang guard, never a timing assertion */

typedef struct child {
    pid_t pid;
    int in_fd, out_fd;
    char buf[8192];
    size_t len;
    char addr[HM_NODE_ADDR_MAX + 1];
    uint64_t inc;
} child;

static inline void now_plus(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Reads the next line from `c` into `line` (borrowed, `cap` bytes). False
 * at end of stream or after the hang guard. */
static inline bool child_line(child *c, char *line, size_t cap)
{
    struct timespec dl, now;

    now_plus(&dl, CHILD_WAIT_MS);
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        struct pollfd p = {.fd = c->out_fd, .events = POLLIN};
        ssize_t r;
        int left;

        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            snprintf(line, cap, "%.*s", (int)n, c->buf);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return true;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = (int)((dl.tv_sec - now.tv_sec) * 1000 +
                     (dl.tv_nsec - now.tv_nsec) / 1000000);
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return false;
        r = read(c->out_fd, c->buf + c->len, sizeof c->buf - c->len - 1);
        if (r <= 0)
            return false;
        c->len += (size_t)r;
    }
}

/* Skips lines until one starts with `prefix`; copies it to `line`. */
static inline bool child_expect(child *c, const char *prefix, char *line,
                                size_t cap)
{
    while (child_line(c, line, cap))
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static inline bool child_send(child *c, const char *cmd)
{
    size_t len = strlen(cmd);

    return write(c->in_fd, cmd, len) == (ssize_t)len &&
           write(c->in_fd, "\n", 1) == 1;
}

/* Starts node `name` joining `join` with the secret file `secret` (all
 * borrowed), this same binary re-executed; waits for its "ready" line.
 * `fast`: shrunk failure-detector timers. False (and no child) on failure. */
static inline bool child_spawn(child *c, const char *name, const char *join,
                        const char *secret, bool fast)
{
    int in[2], out[2];
    char line[512];

    memset(c, 0, sizeof *c);
    if (pipe(in) != 0 || pipe(out) != 0)
        return false;
    c->pid = fork();
    if (c->pid < 0)
        return false;
    if (c->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        setenv("HM_TEST_NODE", "1", 1);
        if (fast)
            setenv("HM_NODE_FAST", "1", 1);
        /* Criterion's sandbox (BoxFort) would take this process over as
         * one of its workers if it saw its arena in the environment. */
        unsetenv("BXFI_MAP");
        /* HM_TEST_NODE_EXE: the binary's path, for runs under valgrind
         * (where /proc/self/exe is the tool). */
        const char *exe = getenv("HM_TEST_NODE_EXE");
        execl(exe ? exe : "/proc/self/exe", "node", "--node", name,
              "--cluster-listen",
              "127.0.0.1:0", "--join", join, "--cluster-secret-file",
              secret, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->in_fd = in[1];
    c->out_fd = out[0];
    if (child_expect(c, "ready ", line, sizeof line) &&
        sscanf(line, "ready %128s %llu", c->addr,
               (unsigned long long *)&c->inc) == 2)
        return true;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    close(c->in_fd);
    close(c->out_fd);
    c->pid = 0;
    return false;
}

static inline void child_reap(child *c)
{
    waitpid(c->pid, NULL, 0);
    close(c->in_fd);
    close(c->out_fd);
    c->pid = 0;
}

/* Stops `c` (SIGSTOP) and waits until every thread of it has stopped:
 * kill() returns before that, and until the thread that takes the signal
 * runs, the others go on (under load, long enough to read and acknowledge
 * a thousand messages). False if it ended instead. */
static inline bool child_stop(child *c)
{
    int st;

    if (kill(c->pid, SIGSTOP) != 0)
        return false;
    while (waitpid(c->pid, &st, WUNTRACED) < 0)
        if (errno != EINTR)
            return false;
    return WIFSTOPPED(st);
}

static inline void child_kill(child *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGKILL);
    child_reap(c);
}

static inline void child_quit(child *c)
{
    if (c->pid <= 0)
        return;
    child_send(c, "quit");
    child_reap(c);
}

#endif
