/* apps/mqtt/main.c: hermes-mqtt, the MQTT 3.1.1 broker program.
 *
 * It takes mosquitto's command line (-c FILE, -p PORT, -v, -h) and
 * configuration syntax (config.h), so it drops in where mosquitto ran,
 * starts a broker (broker.h), and waits for a signal. Signals are blocked
 * in every thread and taken synchronously here with sigwait(), so no
 * handler runs on an arbitrary thread: SIGINT and SIGTERM stop accepting,
 * close every client and exit (well within a second); SIGHUP reloads the
 * password and ACL files. */
#include "apps/mqtt/broker.h"
#include "apps/mqtt/config.h"

#include "runtime/log.h"

#include <signal.h>
#include <stdio.h>

#define MAX_INFLIGHT_UNLIMITED 65535u

/* The broker's settings from the parsed configuration (borrowed: the
 * result borrows `c`'s strings and listeners). */
static mqtt_broker_config broker_config(const mqtt_config *c)
{
    return (mqtt_broker_config){
        .listeners = c->listeners,
        .listener_count = c->listener_count,
        .anonymous_denied = !c->allow_anonymous,
        .password_file = c->password_file,
        .acl_file = c->acl_file,
        .max_inflight = c->max_inflight_messages ? c->max_inflight_messages
                                                 : MAX_INFLIGHT_UNLIMITED,
        .max_queued = c->max_queued_messages,
        .unlimited_queue = c->max_queued_messages == 0,
        .max_packet_len = c->max_packet_size, /* 0: protocol maximum */
        .max_keepalive_s = c->max_keepalive,
        .max_connections =
            c->max_connections < 0 ? 0 : (uint32_t)c->max_connections,
        .sys_interval_s = c->sys_interval_s,
        .sys_disabled = c->sys_interval_s == 0,
        .retain_unavailable = !c->retain_available,
        /* mosquitto: without persistence_location, the current directory */
        .persistence_location =
            c->persistence && !c->persistence_redis
                ? (c->persistence_location ? c->persistence_location : ".")
                : NULL,
        .persistence_redis = c->persistence ? c->persistence_redis : NULL,
        .persistence_interval = c->durability == MQTT_DURABILITY_INTERVAL,
        .autosave_interval_ms = (uint32_t)c->autosave_interval_s * 1000u,
        .node_name = c->node_name,
        .cluster_name = c->cluster_name,
        .cluster_listen = c->cluster_listen,
        .cluster_join = (const char *const *)c->cluster_join,
        .cluster_join_count = c->cluster_join_count,
        .cluster_secret_file = c->cluster_secret_file,
        .cluster_buffer_limit = c->cluster_buffer_limit,
    };
}

static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    /* Before any thread starts, so every thread inherits the mask. */
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Waits for SIGINT or SIGTERM; SIGHUP reloads on the way. */
static int wait_for_stop(mqtt_broker *b, const sigset_t *set)
{
    int sig = 0;

    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        HM_LOG_INFO("MQTT-SIGHUP", "SIGHUP: reloading");
        mqtt_broker_reload(b);
    }
}

int main(int argc, char **argv)
{
    mqtt_config_error err = {{0}};
    mqtt_broker_config bc;
    mqtt_broker *b = NULL;
    mqtt_config c;
    sigset_t set;
    int sig;

    mqtt_config_init(&c);
    if (mqtt_config_load(&c, argc, argv, &err) != HM_OK) {
        fprintf(stderr, "hermes-mqtt: %s\n%s", err.text, mqtt_config_usage());
        mqtt_config_fini(&c);
        return 1;
    }
    if (c.help) {
        fputs(mqtt_config_usage(), stdout);
        mqtt_config_fini(&c);
        return 0;
    }
    hm_log_set_level(c.verbose ? HM_LOG_LEVEL_DEBUG : HM_LOG_LEVEL_INFO);
    block_signals(&set);
    bc = broker_config(&c);
    if (mqtt_broker_create(&bc, &b) != HM_OK) {
        mqtt_config_fini(&c);
        return 1;
    }
    sig = wait_for_stop(b, &set);
    HM_LOG_INFO("MQTT-STOP", "signal %d: stopping", sig);
    mqtt_broker_destroy(b);
    mqtt_config_fini(&c);
    return 0;
}
