/* apps/mqtt/config.c: mosquitto-style configuration file and command line.
 *
 * Each line is split on blanks into a directive and its arguments, and one
 * table maps directive names to handlers, so the supported set is visible
 * in one place and an unknown name falls through to an error. Handlers get
 * the argument vector and return a message (static text) or NULL. */
#include "apps/mqtt/config.h"

#include "cluster/options.h"
#include "cluster/wire.h"
#include "runtime/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 8
#define DEFAULT_PORT 1883

void mqtt_config_init(mqtt_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_inflight_messages = 20;
    c->max_queued_messages = 1000;
    c->max_connections = -1;
    c->max_keepalive = 65535;
    c->retain_available = true;
    c->sys_interval_s = 10;
    c->anonymous_set = -1;
    c->durability = -1;
    c->autosave_interval_s = -1;
}

void mqtt_config_fini(mqtt_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->listener_count; i++)
        hm_free(c->listeners[i].bind_address);
    hm_free(c->listeners);
    hm_free(c->password_file);
    hm_free(c->acl_file);
    hm_free(c->config_file);
    hm_free(c->persistence_location);
    hm_free(c->persistence_redis);
    hm_free(c->node_name);
    hm_free(c->cluster_name);
    hm_free(c->cluster_listen);
    hm_free(c->cluster_secret_file);
    for (size_t i = 0; i < c->cluster_join_count; i++)
        hm_free(c->cluster_join[i]);
    hm_free(c->cluster_join);
    memset(c, 0, sizeof *c);
}

/* A whole decimal integer in [min, max]; false otherwise. */
static bool parse_int(const char *s, long long min, long long max,
                      long long *out)
{
    char *end;
    long long v;
    if (*s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0)
        *out = false;
    else
        return false;
    return true;
}

static bool has_listener_port(const mqtt_config *c, uint16_t port,
                              const char *addr)
{
    for (size_t i = 0; i < c->listener_count; i++) {
        const char *a = c->listeners[i].bind_address;
        if (c->listeners[i].port == port &&
            ((!a && !addr) || (a && addr && strcmp(a, addr) == 0)))
            return true;
    }
    return false;
}

static const char *add_listener(mqtt_config *c, long long port,
                                const char *addr)
{
    mqtt_listener_config *l;
    if (has_listener_port(c, (uint16_t)port, addr))
        return "duplicate listener";
    c->listeners = hm_realloc(c->listeners,
                              (c->listener_count + 1) * sizeof *c->listeners);
    l = &c->listeners[c->listener_count++];
    l->port = (uint16_t)port;
    l->bind_address = addr ? hm_strdup(addr) : NULL;
    l->protocol = MQTT_PROTO_MQTT;
    return NULL;
}

/* ------------------------------------------------------------- directives */

typedef const char *(*directive_fn)(mqtt_config *c, int argc, char **argv);

static const char *do_listener(mqtt_config *c, int argc, char **argv)
{
    long long port;
    if (argc < 2 || argc > 3)
        return "usage: listener PORT [BIND_ADDRESS]";
    if (!parse_int(argv[1], 1, 65535, &port))
        return "listener port must be 1..65535";
    return add_listener(c, port, argc == 3 ? argv[2] : NULL);
}

static const char *do_protocol(mqtt_config *c, int argc, char **argv)
{
    mqtt_listener_protocol p;
    if (argc != 2)
        return "usage: protocol mqtt|websockets";
    if (strcmp(argv[1], "mqtt") == 0)
        p = MQTT_PROTO_MQTT;
    else if (strcmp(argv[1], "websockets") == 0)
        p = MQTT_PROTO_WEBSOCKETS;
    else
        return "protocol must be mqtt or websockets";
    if (c->listener_count == 0)
        return "protocol must follow a listener line";
    c->listeners[c->listener_count - 1].protocol = p;
    return NULL;
}

static const char *do_allow_anonymous(mqtt_config *c, int argc, char **argv)
{
    bool v;
    if (argc != 2 || !parse_bool(argv[1], &v))
        return "allow_anonymous must be true or false";
    c->allow_anonymous = v;
    c->anonymous_set = v;
    return NULL;
}

static const char *set_path(char **field, int argc, char **argv)
{
    if (argc != 2)
        return "expects exactly one path";
    hm_free(*field);
    *field = hm_strdup(argv[1]);
    return NULL;
}

static const char *do_password_file(mqtt_config *c, int argc, char **argv)
{
    return set_path(&c->password_file, argc, argv);
}

static const char *do_acl_file(mqtt_config *c, int argc, char **argv)
{
    return set_path(&c->acl_file, argc, argv);
}

/* The unsigned options: name, field offset, range. */
#define U32_OPTION(fn, field, lo, hi, what)                                    \
    static const char *fn(mqtt_config *c, int argc, char **argv)               \
    {                                                                          \
        long long v;                                                           \
        if (argc != 2 || !parse_int(argv[1], (lo), (hi), &v))                  \
            return what;                                                       \
        c->field = (uint32_t)v;                                                \
        return NULL;                                                           \
    }

U32_OPTION(do_max_inflight, max_inflight_messages, 0, 65535,
           "max_inflight_messages must be 0..65535")
U32_OPTION(do_max_queued, max_queued_messages, 0, 0x7FFFFFFF,
           "max_queued_messages must be a count >= 0")
U32_OPTION(do_sys_interval, sys_interval_s, 0, 0x7FFFFFFF,
           "sys_interval must be seconds >= 0")

static const char *do_max_packet_size(mqtt_config *c, int argc, char **argv)
{
    long long v;
    if (argc != 2 || !parse_int(argv[1], 0, 268435460, &v) || (v > 0 && v < 20))
        return "max_packet_size must be 0 or 20..268435460 bytes";
    c->max_packet_size = (uint32_t)v;
    return NULL;
}

static const char *do_max_connections(mqtt_config *c, int argc, char **argv)
{
    long long v;
    if (argc != 2 || !parse_int(argv[1], -1, 0x7FFFFFFF, &v))
        return "max_connections must be -1 or a count";
    c->max_connections = v;
    return NULL;
}

static const char *do_max_keepalive(mqtt_config *c, int argc, char **argv)
{
    long long v;
    if (argc != 2 || !parse_int(argv[1], 0, 65535, &v))
        return "max_keepalive must be 0..65535 seconds";
    c->max_keepalive = (uint16_t)v;
    return NULL;
}

static const char *do_retain_available(mqtt_config *c, int argc, char **argv)
{
    if (argc != 2 || !parse_bool(argv[1], &c->retain_available))
        return "retain_available must be true or false";
    return NULL;
}

static const char *do_persistence(mqtt_config *c, int argc, char **argv)
{
    if (argc != 2 || !parse_bool(argv[1], &c->persistence))
        return "persistence must be true or false";
    return NULL;
}

static const char *do_persistence_location(mqtt_config *c, int argc,
                                           char **argv)
{
    if (c->persistence_redis)
        return "conflicts with persistence_redis: choose one store";
    return set_path(&c->persistence_location, argc, argv);
}

static const char *do_persistence_redis(mqtt_config *c, int argc, char **argv)
{
    const char *colon = argc == 2 ? strrchr(argv[1], ':') : NULL;
    long long port;

    if (!colon || colon == argv[1] || !parse_int(colon + 1, 1, 65535, &port))
        return "usage: persistence_redis HOST:PORT";
    if (c->persistence_location)
        return "conflicts with persistence_location: choose one store";
    return set_path(&c->persistence_redis, argc, argv);
}

static const char *do_autosave_interval(mqtt_config *c, int argc, char **argv)
{
    long long v;

    if (argc != 2 || !parse_int(argv[1], 0, 0x7FFFFFFF / 1000, &v))
        return "autosave_interval must be seconds >= 0";
    if (c->durability == MQTT_DURABILITY_ALWAYS)
        return "conflicts with persistence_durability always (which saves "
               "before every acknowledgement)";
    c->autosave_interval_s = v;
    return NULL;
}

static const char *do_persistence_durability(mqtt_config *c, int argc,
                                             char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "always") != 0 &&
                      strcmp(argv[1], "interval") != 0))
        return "persistence_durability must be always or interval";
    if (strcmp(argv[1], "always") == 0) {
        if (c->autosave_interval_s >= 0)
            return "always conflicts with autosave_interval (which "
                   "chooses interval)";
        c->durability = MQTT_DURABILITY_ALWAYS;
    } else {
        c->durability = MQTT_DURABILITY_INTERVAL;
    }
    return NULL;
}

/* ------------------------------------------------------- cluster mode */

static const char *set_name(char **field, int argc, char **argv)
{
    if (argc != 2 || !hm_wire_name_is_valid(argv[1]))
        return "expects one name of 1 to 64 characters [A-Za-z0-9._-]";
    hm_free(*field);
    *field = hm_strdup(argv[1]);
    return NULL;
}

static bool is_hostport(const char *s)
{
    char host[HM_NODE_ADDR_MAX + 1];
    int port;

    return hm_cluster_parse_hostport(s, host, sizeof host, &port) == HM_OK;
}

static const char *do_node_name(mqtt_config *c, int argc, char **argv)
{
    return set_name(&c->node_name, argc, argv);
}

static const char *do_cluster_name(mqtt_config *c, int argc, char **argv)
{
    return set_name(&c->cluster_name, argc, argv);
}

static const char *do_cluster_listen(mqtt_config *c, int argc, char **argv)
{
    if (argc != 2 || !is_hostport(argv[1]))
        return "expects HOST:PORT";
    hm_free(c->cluster_listen);
    c->cluster_listen = hm_strdup(argv[1]);
    return NULL;
}

static const char *do_cluster_join(mqtt_config *c, int argc, char **argv)
{
    const char *p;

    if (argc != 2)
        return "expects HOST:PORT[,HOST:PORT...]";
    for (p = argv[1];;) { /* validate all before adding any */
        const char *comma = strchr(p, ',');
        char *one = hm_strndup(p, comma ? (size_t)(comma - p) : strlen(p));
        bool ok = is_hostport(one);

        hm_free(one);
        if (!ok)
            return "expects HOST:PORT[,HOST:PORT...]";
        if (!comma)
            break;
        p = comma + 1;
    }
    for (p = argv[1];;) {
        const char *comma = strchr(p, ',');

        if (c->cluster_join_count == HM_CLUSTER_OPTIONS_MAX_SEEDS)
            return "too many seeds";
        c->cluster_join = hm_realloc(c->cluster_join,
                                     (c->cluster_join_count + 1) *
                                         sizeof *c->cluster_join);
        c->cluster_join[c->cluster_join_count++] =
            hm_strndup(p, comma ? (size_t)(comma - p) : strlen(p));
        if (!comma)
            return NULL;
        p = comma + 1;
    }
}

static const char *do_cluster_secret_file(mqtt_config *c, int argc,
                                          char **argv)
{
    return set_path(&c->cluster_secret_file, argc, argv);
}

/* The cluster's per-peer buffer (hm_node_config.buffer_limit). */
U32_OPTION(do_cluster_buffer_limit, cluster_buffer_limit, 1, 10000000,
           "cluster_buffer_limit must be a count of messages, 1..10000000")

static const struct directive {
    const char *name;
    directive_fn fn;
} DIRECTIVES[] = {
    {"listener", do_listener},
    {"protocol", do_protocol},
    {"allow_anonymous", do_allow_anonymous},
    {"password_file", do_password_file},
    {"acl_file", do_acl_file},
    {"max_inflight_messages", do_max_inflight},
    {"max_queued_messages", do_max_queued},
    {"max_packet_size", do_max_packet_size},
    {"max_connections", do_max_connections},
    {"max_keepalive", do_max_keepalive},
    {"retain_available", do_retain_available},
    {"sys_interval", do_sys_interval},
    {"persistence", do_persistence},
    {"persistence_location", do_persistence_location},
    {"persistence_redis", do_persistence_redis},
    {"persistence_durability", do_persistence_durability},
    {"autosave_interval", do_autosave_interval},
    {"node_name", do_node_name},
    {"cluster_name", do_cluster_name},
    {"cluster_listen", do_cluster_listen},
    {"cluster_join", do_cluster_join},
    {"cluster_secret_file", do_cluster_secret_file},
    {"cluster_buffer_limit", do_cluster_buffer_limit},
};

/* The cluster flags and the directive each one sets. */
static const struct {
    const char *flag;
    directive_fn fn;
    const char *directive;
} CLUSTER_FLAGS[] = {
    {"--node", do_node_name, "node_name"},
    {"--cluster-name", do_cluster_name, "cluster_name"},
    {"--cluster-listen", do_cluster_listen, "cluster_listen"},
    {"--join", do_cluster_join, "cluster_join"},
    {"--cluster-secret-file", do_cluster_secret_file, "cluster_secret_file"},
    {"--cluster-buffer-limit", do_cluster_buffer_limit,
     "cluster_buffer_limit"},
};
#define CLUSTER_FLAG_COUNT (sizeof CLUSTER_FLAGS / sizeof *CLUSTER_FLAGS)

/* Split `line` in place on blanks; returns the number of words, or -1 if
 * there are more than MAX_ARGS. */
static int split(char *line, char **argv)
{
    int argc = 0;
    char *save = NULL;
    for (char *w = strtok_r(line, " \t\r", &save); w;
         w = strtok_r(NULL, " \t\r", &save)) {
        if (argc == MAX_ARGS)
            return -1;
        argv[argc++] = w;
    }
    return argc;
}

static const char *apply_line(mqtt_config *c, char *line, const char **what)
{
    char *argv[MAX_ARGS];
    int argc = split(line, argv);
    *what = NULL;
    if (argc < 0)
        return "too many words on the line";
    if (argc == 0 || argv[0][0] == '#')
        return NULL; /* blank or comment */
    *what = argv[0];
    for (size_t i = 0; i < sizeof DIRECTIVES / sizeof *DIRECTIVES; i++)
        if (strcmp(argv[0], DIRECTIVES[i].name) == 0)
            return DIRECTIVES[i].fn(c, argc, argv);
    return "unknown or unsupported option";
}

hm_err mqtt_config_parse_string(mqtt_config *c, const char *name,
                                const char *text, mqtt_config_error *err)
{
    char *copy = hm_strdup(text), *line = copy;
    hm_err result = HM_OK;

    for (int lineno = 1; line; lineno++) {
        char *nl = strchr(line, '\n');
        const char *what, *msg;
        if (nl)
            *nl = '\0';
        if ((msg = apply_line(c, line, &what))) {
            mqtt_file_error_set(err, "%s:%d: %s%s%s", name, lineno, what ? what : "",
                      what ? ": " : "", msg);
            result = HM_EINVAL;
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    hm_free(copy);
    return result;
}

hm_err mqtt_config_parse_file(mqtt_config *c, const char *path,
                              mqtt_config_error *err)
{
    char *text;
    hm_err result;

    if ((result = mqtt_file_read(path, &text, err)) != HM_OK)
        return result;
    result = mqtt_config_parse_string(c, path, text, err);
    hm_free(text);
    return result;
}

/* ----------------------------------------------------------- command line */

const char *mqtt_config_usage(void)
{
    return "usage: hermes-mqtt [-c config_file] [-p port] [-v] [-h] "
           "[cluster flags]\n"
           " -c : read the configuration from a file (mosquitto syntax)\n"
           " -p : listen on this port (may be repeated); without -c, on\n"
           "      127.0.0.1 only\n"
           " -v : verbose logging\n"
           " -h : this help\n"
           " cluster flags (or node_name, cluster_listen, cluster_join,\n"
           " cluster_secret_file, cluster_name, cluster_buffer_limit in\n"
           " the file):\n"
           "  --node NAME                 this node's name\n"
           "  --cluster-listen HOST:PORT  cluster listen address\n"
           "  --join HOST:PORT[,...]      seed nodes (repeatable)\n"
           "  --cluster-secret-file FILE  shared cluster secret (chmod 600)\n"
           "  --cluster-name NAME         cluster name (default: hermes)\n"
           "  --cluster-buffer-limit N    messages buffered per member\n"
           "                              (default: 10000)\n";
}

/* Apply the defaults that depend on what was configured. Returns an error
 * message or NULL. */
static const char *finish(mqtt_config *c, const long long *ports,
                          size_t nports)
{
    bool local_only = c->listener_count == 0;
    for (size_t i = 0; i < nports; i++)
        if (!has_listener_port(c, (uint16_t)ports[i],
                               local_only ? "127.0.0.1" : NULL))
            add_listener(c, ports[i], local_only ? "127.0.0.1" : NULL);
    if (c->listener_count == 0)
        add_listener(c, DEFAULT_PORT, "127.0.0.1");
    if (c->anonymous_set < 0)
        c->allow_anonymous = local_only;
    /* autosave_interval alone means mosquitto's periodic saving. */
    if (c->durability < 0)
        c->durability = c->autosave_interval_s >= 0 ? MQTT_DURABILITY_INTERVAL
                                                    : MQTT_DURABILITY_ALWAYS;
    if (c->autosave_interval_s < 0)
        c->autosave_interval_s = MQTT_DEFAULT_AUTOSAVE_S;
    if (!c->node_name && !c->cluster_name && !c->cluster_listen &&
        !c->cluster_join_count && !c->cluster_secret_file &&
        !c->cluster_buffer_limit)
        return NULL;
    if (!c->node_name || !c->cluster_listen || !c->cluster_secret_file)
        return "cluster mode needs node_name (--node), cluster_listen "
               "(--cluster-listen) and cluster_secret_file "
               "(--cluster-secret-file)";
    return NULL;
}

/* The cluster flag at argv[*i], if it is one: applied after the file, so
 * it is kept in `flags` (argv borrowed) as (index, value). Returns 1 if
 * taken, 0 if not a cluster flag, -1 on a missing value. */
static int cluster_flag(int argc, char *const argv[], int *i,
                        int *flag_out, const char **value_out)
{
    for (size_t f = 0; f < CLUSTER_FLAG_COUNT; f++) {
        size_t len = strlen(CLUSTER_FLAGS[f].flag);

        if (strncmp(argv[*i], CLUSTER_FLAGS[f].flag, len) != 0)
            continue;
        if (argv[*i][len] == '=') {
            *value_out = argv[*i] + len + 1;
        } else if (argv[*i][len] == '\0') {
            if (*i + 1 >= argc)
                return -1;
            *value_out = argv[++*i];
        } else {
            continue;
        }
        *flag_out = (int)f;
        return 1;
    }
    return 0;
}

hm_err mqtt_config_load(mqtt_config *c, int argc, char *const argv[],
                        mqtt_config_error *err)
{
    long long ports[16];
    size_t nports = 0;
    struct {
        int f;
        const char *v;
    } flags[64];
    size_t nflags = 0;
    const char *msg;
    hm_err e;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int f, taken;
        const char *v;

        if ((taken = cluster_flag(argc, argv, &i, &f, &v)) != 0) {
            if (taken < 0 || nflags == sizeof flags / sizeof *flags) {
                mqtt_file_error_set(err, "%s: missing value (or too many "
                                    "cluster flags)", a);
                return HM_EINVAL;
            }
            flags[nflags].f = f;
            flags[nflags++].v = v;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            c->help = true;
            return HM_OK;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            c->verbose = true;
        } else if (strcmp(a, "-c") == 0 && i + 1 < argc) {
            hm_free(c->config_file);
            c->config_file = hm_strdup(argv[++i]);
        } else if (strcmp(a, "-p") == 0 && i + 1 < argc) {
            if (nports == sizeof ports / sizeof *ports ||
                !parse_int(argv[++i], 1, 65535, &ports[nports])) {
                mqtt_file_error_set(err, "-p: bad or too many ports: %s", argv[i]);
                return HM_EINVAL;
            }
            nports++;
        } else {
            mqtt_file_error_set(err, "unknown option or missing argument: %s\n%s", a,
                      mqtt_config_usage());
            return HM_EINVAL;
        }
    }
    if (c->config_file &&
        (e = mqtt_config_parse_file(c, c->config_file, err)) != HM_OK)
        return e;
    for (size_t i = 0; i < nflags; i++) {
        char *fargv[2] = {(char *)CLUSTER_FLAGS[flags[i].f].directive,
                          (char *)flags[i].v};

        if ((msg = CLUSTER_FLAGS[flags[i].f].fn(c, 2, fargv))) {
            mqtt_file_error_set(err, "%s %s: %s", CLUSTER_FLAGS[flags[i].f].flag,
                                flags[i].v, msg);
            return HM_EINVAL;
        }
    }
    if ((msg = finish(c, ports, nports))) {
        mqtt_file_error_set(err, "%s", msg);
        return HM_EINVAL;
    }
    return HM_OK;
}
