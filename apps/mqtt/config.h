/* apps/mqtt/config.h: the broker's configuration, read from a
 * mosquitto-style file and mosquitto's command line.
 *
 * Operators come from mosquitto, so the options this broker supports are
 * spelled and mean what they mean in mosquitto.conf(5); the key decision is
 * strictness: an option we do not support, a bad value, or a directive in
 * the wrong place is an error naming the file and line, never silently
 * ignored, because a broker that quietly drops `acl_file` from a copied
 * mosquitto.conf runs open. Supported:
 *
 *   # comment (a line whose first non-blank character is '#')
 *   listener PORT [BIND_ADDRESS]      several allowed
 *   protocol mqtt|websockets          for the last listener
 *   allow_anonymous true|false
 *   password_file PATH                mosquitto_passwd format
 *   acl_file PATH                     mosquitto ACL format
 *   max_inflight_messages N           0 = unlimited; default 20
 *   max_queued_messages N             0 = unlimited; default 1000
 *   max_packet_size BYTES             0 = protocol maximum; else >= 20
 *   max_connections N                 -1 = unlimited (default)
 *   max_keepalive SECONDS             0..65535; default 65535
 *   retain_available true|false       default true
 *   sys_interval SECONDS              0 = no $SYS updates; default 10
 *   persistence true|false            default false (mosquitto)
 *   persistence_location DIR          hermes-mqtt.db goes there; default
 *                                     the current directory (mosquitto)
 *   autosave_interval SECONDS         mosquitto's: save every SECONDS
 *                                     (0 = only at exit); implies
 *                                     persistence_durability interval
 *   persistence_durability always|interval
 *                                     Hermes: `always` (the default)
 *                                     acknowledges a QoS 1/2 message only
 *                                     once it is committed; `interval`
 *                                     saves every autosave_interval
 *                                     (default 1800 s, as mosquitto)
 *   persistence_redis HOST:PORT       Hermes: keep the state in Redis
 *                                     (a cluster's shared store) instead
 *   node_name NAME                    cluster mode: this node's name
 *   cluster_listen HOST:PORT          cluster mode: the cluster address
 *   cluster_join HOST:PORT[,...]      seeds; repeatable (appends)
 *   cluster_secret_file PATH          the shared secret (mode 0600)
 *   cluster_name NAME                 default "hermes"
 *   cluster_buffer_limit N            messages buffered per member while
 *                                     its link is slow or down; past it
 *                                     sends to it get HM_EFULL; 1..10^7,
 *                                     default 10000 (cluster/node.h)
 *
 * The cluster settings are also flags (--node, --cluster-listen, --join,
 * --cluster-secret-file, --cluster-name, each also as --flag=VALUE), the
 * same as every Hermes binary's (cluster/options.h), and
 * --cluster-buffer-limit (this broker's only); a flag overrides the
 * file's line (--join adds seeds). Any cluster setting needs node_name,
 * cluster_listen and cluster_secret_file; without any, no cluster runs.
 *
 * Defaults follow mosquitto 2: with no listener configured the broker
 * listens on 127.0.0.1:1883 only and allow_anonymous defaults to true
 * ("local only mode"); once listeners are configured, allow_anonymous
 * defaults to false. Command line: -c FILE, -p PORT (repeatable; adds a
 * listener, on 127.0.0.1 when no file configured any), -v, -h. */
#ifndef HM_APPS_MQTT_CONFIG_H
#define HM_APPS_MQTT_CONFIG_H

#include "apps/mqtt/file_error.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MQTT_PROTO_MQTT,
    MQTT_PROTO_WEBSOCKETS,
} mqtt_listener_protocol;

typedef struct mqtt_listener_config {
    uint16_t port;
    char *bind_address; /* owned; NULL = all addresses */
    mqtt_listener_protocol protocol;
} mqtt_listener_config;

typedef enum {
    MQTT_DURABILITY_ALWAYS,   /* no acknowledged QoS 1/2 message is lost */
    MQTT_DURABILITY_INTERVAL, /* saved every autosave_interval */
} mqtt_durability;

/* mosquitto's default autosave_interval. */
#define MQTT_DEFAULT_AUTOSAVE_S 1800

typedef struct mqtt_config {
    mqtt_listener_config *listeners; /* owned array */
    size_t listener_count;
    bool allow_anonymous;
    char *password_file; /* owned, or NULL */
    char *acl_file;      /* owned, or NULL */
    uint32_t max_inflight_messages;
    uint32_t max_queued_messages;
    uint32_t max_packet_size;
    int64_t max_connections;
    uint16_t max_keepalive;
    bool retain_available;
    uint32_t sys_interval_s;
    bool persistence;
    char *persistence_location; /* owned, or NULL */
    char *persistence_redis;    /* owned "HOST:PORT", or NULL */
    int durability;             /* -1 unset, else mqtt_durability */
    int64_t autosave_interval_s; /* -1 unset */
    /* Cluster mode (all owned, or NULL / 0: a single broker). */
    char *node_name;
    char *cluster_name;
    char *cluster_listen;
    char **cluster_join; /* owned array of owned "HOST:PORT" */
    size_t cluster_join_count;
    char *cluster_secret_file;
    uint32_t cluster_buffer_limit; /* 0: the cluster's default */
    bool verbose;      /* -v */
    bool help;         /* -h: print mqtt_config_usage() and exit 0 */
    char *config_file; /* owned: -c FILE, or NULL */
    int anonymous_set; /* private: -1 unset, else the file's value */
} mqtt_config;

/* A parse error: "FILE:LINE: message", or a command-line message. */
typedef mqtt_file_error mqtt_config_error;

/* Fill `c` (storage provided by the caller) with the defaults, and no
 * listener yet. */
void mqtt_config_init(mqtt_config *c);
/* Free what `c` owns. Accepts NULL. */
void mqtt_config_fini(mqtt_config *c);

/* Apply the configuration text `text` (borrowed, NUL-terminated) on top of
 * `c`; `name` (borrowed) is the file name used in messages. Errors:
 * HM_EINVAL with `err->text` set; `c` may then be partly updated (fini it).
 */
hm_err mqtt_config_parse_string(mqtt_config *c, const char *name,
                                const char *text, mqtt_config_error *err);

/* Read the file at `path` (borrowed) and apply it as above. Errors:
 * HM_ESYS if it cannot be read, HM_EINVAL for its contents. */
hm_err mqtt_config_parse_file(mqtt_config *c, const char *path,
                              mqtt_config_error *err);

/* The whole start-up: `c` must be freshly initialised. Reads argv (-c, -p,
 * -v, -h and the cluster flags; borrowed), the -c file if any, then applies the -p listeners and
 * the defaults that depend on what was configured (see above). Errors:
 * HM_EINVAL (bad option or file content) or HM_ESYS (unreadable file) with
 * `err->text` set. With -h, returns HM_OK with `c->help` set at once. */
hm_err mqtt_config_load(mqtt_config *c, int argc, char *const argv[],
                        mqtt_config_error *err);

/* The usage text for -h. Returns borrowed static storage. */
const char *mqtt_config_usage(void);

#endif
