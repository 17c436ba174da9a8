/* apps/chat/main.c: `hermes-chat server ...` and `hermes-chat client ...`.
 *
 *   hermes-chat server --listen HOST:PORT [--idle-timeout-ms N]
 *                      [--threads N] [--log-level LEVEL] [cluster flags]
 *   hermes-chat client --connect HOST:PORT [--connect HOST:PORT]
 *                      --user NAME [--ping-ms N]
 *
 * The server prints one line to stdout once it serves,
 *   "hermes-chat: node NAME port PORT cluster ADDR" (ADDR "-" when alone),
 * so that scripts (tests, `make demo-chat`) can wait for it, then runs
 * until SIGINT or SIGTERM. The signals are blocked before any thread starts
 * and taken with sigwait(), so no signal handler ever runs. */
#include "apps/chat/client.h"
#include "apps/chat/server.h"
#include "runtime/log.h"

#include "cluster/options.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SERVERS 8

static int usage(void)
{
    fprintf(stderr,
            "usage: hermes-chat server --listen HOST:PORT "
            "[--idle-timeout-ms N] [--threads N] [--log-level LEVEL]\n"
            "                          [cluster flags:]\n%s"
            "       hermes-chat client --connect HOST:PORT "
            "[--connect HOST:PORT] --user NAME [--ping-ms N]\n",
            hm_cluster_options_usage());
    return 2;
}

/* Reads a flag's value: argv[*i + 1]. NULL (and an error) if missing. */
static const char *value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "hermes-chat: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static bool number(const char *s, long *out)
{
    char *end;

    *out = s ? strtol(s, &end, 10) : -1;
    return s && *s && !*end && *out >= 0 && *out <= 0x7fffffff;
}

static int serve(chat_server_config *cfg)
{
    sigset_t stop;
    chat_server *srv;
    int sig;

    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (chat_server_start(cfg, &srv) != HM_OK)
        return 1;
    printf("hermes-chat: node %s port %d cluster %s\n",
           chat_server_node(srv), chat_server_port(srv),
           *chat_server_cluster_addr(srv) ? chat_server_cluster_addr(srv)
                                          : "-");
    fflush(stdout);
    sigwait(&stop, &sig);
    chat_server_stop(srv);
    return 0;
}

static int server_main(int argc, char **argv)
{
    chat_server_config cfg = {0};
    long n;
    int level;

    hm_cluster_options opts = {0};
    int rc;

    if (hm_cluster_options_parse(&argc, argv, &opts) != HM_OK) {
        fprintf(stderr, "hermes-chat: %s\n", opts.error);
        hm_cluster_options_fini(&opts);
        return 2;
    }
    cfg.cluster = opts.enabled ? &opts : NULL;
    hm_log_set_level(HM_LOG_LEVEL_WARN);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--listen") == 0 && (cfg.listen = value(argc, argv, &i)))
            continue;
        if (strcmp(a, "--idle-timeout-ms") == 0 &&
            number(value(argc, argv, &i), &n) && n > 0) {
            cfg.idle_timeout_ms = (uint32_t)n;
            continue;
        }
        if (strcmp(a, "--threads") == 0 && number(value(argc, argv, &i), &n)) {
            cfg.threads = (int)n;
            continue;
        }
        if (strcmp(a, "--log-level") == 0 && i + 1 < argc &&
            (level = hm_log_level_parse(argv[++i])) >= 0) {
            hm_log_set_level((hm_log_level)level);
            continue;
        }
        fprintf(stderr, "hermes-chat: bad option %s\n", a);
        return usage();
    }
    if (!cfg.listen)
        return usage();
    rc = serve(&cfg);
    hm_cluster_options_fini(&opts);
    return rc;
}

static int client_main(int argc, char **argv)
{
    const char *servers[MAX_SERVERS];
    chat_client_config cfg = {.servers = servers, .in_fd = 0, .out_fd = 1};
    long n;

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--connect") == 0 && cfg.server_count < MAX_SERVERS &&
            (servers[cfg.server_count] = value(argc, argv, &i))) {
            cfg.server_count++;
            continue;
        }
        if (strcmp(a, "--user") == 0 && (cfg.user = value(argc, argv, &i)))
            continue;
        if (strcmp(a, "--ping-ms") == 0 && number(value(argc, argv, &i), &n) &&
            n > 0) {
            cfg.ping_ms = (uint32_t)n;
            continue;
        }
        fprintf(stderr, "hermes-chat: bad option %s\n", a);
        return usage();
    }
    if (cfg.server_count == 0 || !cfg.user)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    return chat_client_run(&cfg);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "server") == 0)
        return server_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "client") == 0)
        return client_main(argc, argv);
    return usage();
}
