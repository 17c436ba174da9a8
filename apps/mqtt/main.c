/* apps/mqtt/main.c: hermes-mqtt, the MQTT 3.1.1 broker program.
 *
 * It takes mosquitto's command line (-p, -c, -v, -h) so it drops in where
 * mosquitto ran, starts a broker (broker.h), and waits for a signal.
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait(), so no handler runs in an arbitrary thread: SIGINT and SIGTERM
 * stop accepting, close every client and exit (well within a second). */
#include "apps/mqtt/broker.h"

#include "runtime/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *to)
{
    fprintf(to,
            "usage: hermes-mqtt [-c FILE] [-p PORT] [-v] [-h]\n"
            "  -c FILE  read the configuration from FILE (mosquitto syntax)\n"
            "  -p PORT  listen on PORT (default 1883) on all addresses\n"
            "  -v       verbose: log every connection and packet fault\n"
            "  -h       this help\n");
}

typedef struct options {
    mqtt_broker_config cfg;
    const char *config_file;
    bool verbose;
} options;

/* Returns 0 to run, 1 on a usage error, 2 after -h. */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 2;
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = true;
        } else if ((strcmp(a, "-p") == 0 || strcmp(a, "--port") == 0) &&
                   has_value) {
            char *end;
            long port = strtol(argv[++i], &end, 10);

            if (*end || port < 1 || port > 65535) {
                fprintf(stderr, "hermes-mqtt: bad port '%s'\n", argv[i]);
                return 1;
            }
            o->cfg.port = (int)port;
        } else if ((strcmp(a, "-c") == 0 ||
                    strcmp(a, "--config-file") == 0) && has_value) {
            o->config_file = argv[++i];
        } else {
            fprintf(stderr, "hermes-mqtt: unknown or incomplete option "
                            "'%s'\n", a);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o = {0};
    mqtt_broker *b = NULL;
    sigset_t set;
    int rc, sig = 0;

    if ((rc = parse_args(argc, argv, &o)) != 0) {
        usage(rc == 2 ? stdout : stderr);
        return rc == 2 ? 0 : 1;
    }
    if (o.config_file) {
        /* TODO(#5): mosquitto configuration files (apps/mqtt/config.c). */
        fprintf(stderr, "hermes-mqtt: -c: configuration files are not "
                        "supported yet\n");
        return 1;
    }
    hm_log_set_level(o.verbose ? HM_LOG_LEVEL_DEBUG : HM_LOG_LEVEL_INFO);
    /* Blocked before any thread starts, so every thread inherits it. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (mqtt_broker_create(&o.cfg, &b) != HM_OK)
        return 1;
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        /* TODO(#5): reload the password and ACL files. */
        HM_LOG_INFO("MQTT-SIGHUP", "SIGHUP: nothing to reload yet");
    }
    HM_LOG_INFO("MQTT-STOP", "signal %d: stopping", sig);
    mqtt_broker_destroy(b);
    return 0;
}
