/* apps/mqtt/broker.h: the MQTT 3.1.1 broker, assembled on the runtime.
 *
 * A broker is a runtime (receivers on worker threads), a net (I/O threads)
 * and the state every receiver shares: the subscription tree and the
 * retained store. Each TCP connection gets a connection receiver
 * ("mqtt/conn/<id>", spawned pinned when it is accepted) that decodes its
 * packets and routes its publishes; each client id gets a session receiver
 * ("mqtt/session/<client id>", made by the factory on the first message)
 * that owns its subscriptions and its QoS 1/2 flow and outlives the
 * connection when the session is persistent. docs/mqtt.md is the guide and
 * docs/adr/0050 and 0051 the decisions. */
#ifndef HM_APPS_MQTT_BROKER_H
#define HM_APPS_MQTT_BROKER_H

#include "apps/mqtt/config.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mqtt_broker mqtt_broker;

/* Every field's zero value means its default (in parentheses). */
typedef struct mqtt_broker_config {
    /* Listeners (borrowed for the call), or none: then one MQTT listener
     * on `host` and `port`. */
    const mqtt_listener_config *listeners;
    size_t listener_count;
    const char *host;            /* address to listen on (NULL: all) */
    int port;                    /* (1883); -1: an ephemeral port */
    bool anonymous_denied;       /* no user name (or no way to check it) */
    const char *password_file;   /* mosquitto_passwd format (none) */
    const char *acl_file;        /* mosquitto ACL format (none: all allowed) */
    int threads;                 /* runtime workers (one per core) */
    int io_threads;              /* net I/O threads (1) */
    uint32_t max_inflight;       /* QoS 1/2 in flight per client (20) */
    uint32_t max_queued;         /* QoS 1/2 queued per client (1000) */
    bool unlimited_queue;        /* max_queued is ignored: no bound */
    size_t max_packet_len;       /* largest packet (protocol maximum) */
    uint16_t max_keepalive_s;    /* larger: CONNACK 0x02 (none) */
    uint32_t connect_timeout_ms; /* first packet must arrive by then (10 s) */
    uint32_t max_connections;    /* refused beyond it (no limit) */
    uint32_t sys_interval_s;     /* $SYS period (10); see sys_disabled */
    bool sys_disabled;           /* no $SYS topics */
    bool retain_unavailable;     /* RETAIN=1 publishes are not stored */
    uint8_t max_qos;             /* granted QoS ceiling (2); 3 means 0 */
    /* Persistence (docs/mqtt.md, docs/adr/0111): off unless a location
     * or a Redis server is given. */
    const char *persistence_location; /* directory of hermes-mqtt.db */
    const char *persistence_redis;    /* "HOST:PORT": Redis instead */
    bool persistence_interval; /* save every autosave_interval_ms instead
                                  of before every acknowledgement */
    uint32_t autosave_interval_ms; /* interval policy; 0: at exit only */
    /* Cluster mode (docs/mqtt.md "Cluster mode"): all borrowed for the
     * call. node_name NULL: a single broker, no cluster code runs. */
    const char *node_name;
    const char *cluster_name;   /* NULL: "hermes" */
    const char *cluster_listen; /* "HOST:PORT"; port 0: ephemeral */
    const char *const *cluster_join;
    size_t cluster_join_count;
    const char *cluster_secret_file;
    uint32_t cluster_buffer_limit; /* per-peer buffer (cluster default) */
} mqtt_broker_config;

/* Creates a broker and starts listening. Borrows `cfg` (strings are
 * copied). Returns owned on HM_OK. Errors: HM_EEXIST (port in use),
 * HM_EINVAL, HM_ESYS. */
hm_err mqtt_broker_create(const mqtt_broker_config *cfg, mqtt_broker **out);
/* The bound port. */
int mqtt_broker_port(const mqtt_broker *b);
/* In cluster mode, the cluster address as advertised (the real port when
 * the configured one was 0); "" for a single broker. Borrowed. */
const char *mqtt_broker_cluster_addr(const mqtt_broker *b);
/* Reads the password and ACL files again (SIGHUP). On an error the old
 * ones stay in force and the error is logged. Call from outside the
 * runtime. Errors: those of mqtt_passwd_load() and mqtt_acl_load(). */
hm_err mqtt_broker_reload(mqtt_broker *b);
/* Stops accepting and closes every client. Idempotent. */
void mqtt_broker_stop(mqtt_broker *b);
/* Stops if needed and frees everything. Accepts NULL. */
void mqtt_broker_destroy(mqtt_broker *b);

#endif
