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
static void text_free(void *p)
{
    hm_free(p);
}

static json_t *text_to_json(const void *p)
{
    return json_string(p ? p : "");
}

static hm_err text_from_json(const json_t *j, void **out)
{
    if (!json_is_string(j))
        return HM_EPROTO;
    *out = hm_strdup(json_string_value(j));
    return HM_OK;
}

static const hm_type TEXT = {.name = "test.text", .free = text_free,
                             .to_json = text_to_json,
                             .from_json = text_from_json};

static hm_msg *text_msg(const char *s)
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

static hm_err echo_handle(hm_ctx *ctx, void *state, hm_msg *msg)
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

/* The application factory: "test/echo/..." names are echo receivers. */
static hm_err echo_factory(void *arg, const char *name, hm_receiver *out)
{
    if (strncmp(name, "test/echo/", 10) != 0)
        return HM_ENOTFOUND;
    *out = (hm_receiver){.handler = echo_handle, .state = arg};
    return HM_OK;
}

/* Names under this prefix are placed receivers (rendezvous hashing). */
#define PLACED_PREFIX "test/echo/p/"

static bool placed_names(void *arg, const char *name)
{
    (void)arg;
    return strncmp(name, PLACED_PREFIX, sizeof PLACED_PREFIX - 1) == 0;
}

/* ------------------------------------------------------------- child */

static void child_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void child_say(const char *fmt, ...)
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

static void child_seen(void *arg, const char *addr, const char *text)
{
    (void)arg;
    child_say("got %s %s", addr, text);
}

static void child_event(void *arg, const char *name, uint64_t inc,
                        hm_member_event ev)
{
    (void)arg;
    child_say("event %s %llu %s", name, (unsigned long long)inc,
              hm_member_event_name(ev));
}

static void child_commands(hm_runtime *rt, hm_node *node)
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

static int child_main(int argc, char **argv)
{
    hm_cluster_options opt;
    hm_node_config cfg = {.factory = echo_factory, .on_event = child_event,
                          .placed = placed_names};
    echo_env env = {.seen = child_seen};
    hm_runtime *rt = NULL;
    hm_net *net = NULL;
    hm_node *node = NULL;

    hm_log_set_level(HM_LOG_LEVEL_WARN);
    if (hm_cluster_options_parse(&argc, argv, &opt) != HM_OK || !opt.enabled) {
        fprintf(stderr, "child: %s\n", opt.error);
        return 2;
    }
    hm_cluster_options_apply(&opt, &cfg);
    cfg.factory_arg = &env;
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

#endif
