/* tests/apps/mqtt/test_config.c: the mosquitto-style configuration file and
 * command line. */
#include "apps/mqtt/config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mqtt_config c;
static mqtt_config_error err;

static void setup(void)
{
    mqtt_config_init(&c);
    memset(&err, 0, sizeof err);
}

static void teardown(void)
{
    mqtt_config_fini(&c);
}

static hm_err parse(const char *text)
{
    return mqtt_config_parse_string(&c, "test.conf", text, &err);
}

TestSuite(mqtt_config, .init = setup, .fini = teardown);

Test(mqtt_config, defaults_match_mosquitto)
{
    cr_assert_eq(c.max_inflight_messages, 20);
    cr_assert_eq(c.max_queued_messages, 1000);
    cr_assert_eq(c.max_connections, -1);
    cr_assert_eq(c.max_keepalive, 65535);
    cr_assert(c.retain_available);
    cr_assert_eq(c.sys_interval_s, 10);
    cr_assert_eq(c.max_packet_size, 0);
}

Test(mqtt_config, every_supported_option_is_applied)
{
    cr_assert_eq(parse("# a comment\n"
                       "\n"
                       "   # indented comment\n"
                       "listener 1883\n"
                       "listener 8080 127.0.0.1\n"
                       "protocol websockets\n"
                       "allow_anonymous false\n"
                       "password_file /etc/hermes/passwd\n"
                       "acl_file /etc/hermes/acl\n"
                       "max_inflight_messages 5\n"
                       "max_queued_messages 0\n"
                       "max_packet_size 1024\n"
                       "max_connections 100\n"
                       "max_keepalive 120\n"
                       "retain_available false\n"
                       "sys_interval 0\n"
                       "persistence false\r\n"),
                 HM_OK, "%s", err.text);
    cr_assert_eq(c.listener_count, 2);
    cr_assert_eq(c.listeners[0].port, 1883);
    cr_assert_null(c.listeners[0].bind_address);
    cr_assert_eq(c.listeners[0].protocol, MQTT_PROTO_MQTT);
    cr_assert_eq(c.listeners[1].port, 8080);
    cr_assert_str_eq(c.listeners[1].bind_address, "127.0.0.1");
    cr_assert_eq(c.listeners[1].protocol, MQTT_PROTO_WEBSOCKETS);
    cr_assert_not(c.allow_anonymous);
    cr_assert_str_eq(c.password_file, "/etc/hermes/passwd");
    cr_assert_str_eq(c.acl_file, "/etc/hermes/acl");
    cr_assert_eq(c.max_inflight_messages, 5);
    cr_assert_eq(c.max_queued_messages, 0);
    cr_assert_eq(c.max_packet_size, 1024);
    cr_assert_eq(c.max_connections, 100);
    cr_assert_eq(c.max_keepalive, 120);
    cr_assert_not(c.retain_available);
    cr_assert_eq(c.sys_interval_s, 0);
}

Test(mqtt_config, unknown_option_is_an_error_with_file_and_line)
{
    cr_assert_eq(parse("listener 1883\n\nlog_type all\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:3:"), "%s", err.text);
    cr_assert(strstr(err.text, "log_type"), "%s", err.text);
}

Test(mqtt_config, bad_values_are_errors)
{
    cr_assert_eq(parse("listener 0\n"), HM_EINVAL);
    cr_assert_eq(parse("listener 70000\n"), HM_EINVAL);
    cr_assert_eq(parse("listener 18x3\n"), HM_EINVAL);
    cr_assert_eq(parse("allow_anonymous yes\n"), HM_EINVAL);
    cr_assert_eq(parse("max_keepalive 65536\n"), HM_EINVAL);
    cr_assert_eq(parse("max_packet_size 10\n"), HM_EINVAL);
    cr_assert_eq(parse("max_connections -2\n"), HM_EINVAL);
    cr_assert_eq(parse("max_inflight_messages\n"), HM_EINVAL);
    cr_assert_eq(parse("sys_interval 10 20\n"), HM_EINVAL);
}

Test(mqtt_config, protocol_without_a_listener_is_an_error)
{
    cr_assert_eq(parse("protocol websockets\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:1:"));
}

Test(mqtt_config, unknown_protocol_is_an_error)
{
    cr_assert_eq(parse("listener 1\nprotocol http\n"), HM_EINVAL);
}

Test(mqtt_config, duplicate_listener_is_an_error)
{
    cr_assert_eq(parse("listener 1883\nlistener 1883\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:2:"));
}

Test(mqtt_config, persistence_takes_mosquittos_options)
{
    cr_assert_eq(parse("persistence true\n"
                       "persistence_location /var/lib/mosquitto/\n"),
                 HM_OK, "%s", err.text);
    cr_assert(c.persistence);
    cr_assert_str_eq(c.persistence_location, "/var/lib/mosquitto/");
    cr_assert_eq(parse("persistence maybe\n"), HM_EINVAL);
    cr_assert_eq(parse("persistence_location\n"), HM_EINVAL);
}

Test(mqtt_config, durability_defaults_to_always_and_autosave_to_1800)
{
    char *argv[] = {"hermes-mqtt", NULL};

    cr_assert_eq(mqtt_config_load(&c, 1, argv, &err), HM_OK);
    cr_assert_not(c.persistence);
    cr_assert_eq(c.durability, MQTT_DURABILITY_ALWAYS);
    cr_assert_eq(c.autosave_interval_s, 1800);
}

Test(mqtt_config, autosave_interval_alone_chooses_the_interval_policy)
{
    char path[] = "/tmp/hermes-persist-conf-XXXXXX";
    char *argv[] = {"hermes-mqtt", "-c", path, NULL};
    int fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "persistence true\nautosave_interval 5\n", 37),
                 37);
    close(fd);
    cr_assert_eq(mqtt_config_load(&c, 3, argv, &err), HM_OK, "%s", err.text);
    unlink(path);
    cr_assert_eq(c.durability, MQTT_DURABILITY_INTERVAL);
    cr_assert_eq(c.autosave_interval_s, 5);
}

Test(mqtt_config, durability_always_and_autosave_interval_conflict)
{
    cr_assert_eq(parse("persistence_durability always\n"
                       "autosave_interval 10\n"),
                 HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:2: autosave_interval:"), "%s",
              err.text);
    mqtt_config_fini(&c);
    mqtt_config_init(&c);
    cr_assert_eq(parse("autosave_interval 10\n"
                       "persistence_durability always\n"),
                 HM_EINVAL);
    cr_assert_eq(parse("persistence_durability sometimes\n"), HM_EINVAL);
}

Test(mqtt_config, interval_durability_keeps_its_interval)
{
    cr_assert_eq(parse("persistence_durability interval\n"
                       "autosave_interval 0\n"),
                 HM_OK, "%s", err.text);
    cr_assert_eq(c.durability, MQTT_DURABILITY_INTERVAL);
    cr_assert_eq(c.autosave_interval_s, 0);
    cr_assert_eq(parse("autosave_interval -1\n"), HM_EINVAL);
}

Test(mqtt_config, persistence_redis_wants_host_port_and_excludes_a_location)
{
    cr_assert_eq(parse("persistence_redis 127.0.0.1:6379\n"), HM_OK);
    cr_assert_str_eq(c.persistence_redis, "127.0.0.1:6379");
    cr_assert_eq(parse("persistence_location /tmp\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "choose one"), "%s", err.text);
    cr_assert_eq(parse("persistence_redis localhost\n"), HM_EINVAL);
    cr_assert_eq(parse("persistence_redis :6379\n"), HM_EINVAL);
    cr_assert_eq(parse("persistence_redis h:99999\n"), HM_EINVAL);
}

/* -------------------------------------------------------- command line */

static hm_err load(int argc, char **argv)
{
    return mqtt_config_load(&c, argc, argv, &err);
}

Test(mqtt_config, no_arguments_listen_on_loopback_1883_anonymously)
{
    char *argv[] = {"hermes-mqtt", NULL};
    cr_assert_eq(load(1, argv), HM_OK);
    cr_assert_eq(c.listener_count, 1);
    cr_assert_eq(c.listeners[0].port, 1883);
    cr_assert_str_eq(c.listeners[0].bind_address, "127.0.0.1");
    cr_assert(c.allow_anonymous);
}

Test(mqtt_config, dash_p_replaces_the_default_port_and_v_is_verbose)
{
    char *argv[] = {"hermes-mqtt", "-p", "1884", "-p", "1885", "-v", NULL};
    cr_assert_eq(load(6, argv), HM_OK);
    cr_assert_eq(c.listener_count, 2);
    cr_assert_eq(c.listeners[1].port, 1885);
    cr_assert(c.verbose);
}

Test(mqtt_config, dash_h_asks_for_help)
{
    char *argv[] = {"hermes-mqtt", "-h", NULL};
    cr_assert_eq(load(2, argv), HM_OK);
    cr_assert(c.help);
    cr_assert(strstr(mqtt_config_usage(), "-c"));
}

Test(mqtt_config, unknown_flag_or_bad_port_is_an_error)
{
    char *bad_flag[] = {"hermes-mqtt", "-d", NULL};
    char *bad_port[] = {"hermes-mqtt", "-p", "x", NULL};
    char *no_arg[] = {"hermes-mqtt", "-c", NULL};
    cr_assert_eq(load(2, bad_flag), HM_EINVAL);
    cr_assert_eq(load(3, bad_port), HM_EINVAL);
    cr_assert_eq(load(2, no_arg), HM_EINVAL);
}

Test(mqtt_config, dash_c_reads_the_file_and_listeners_end_anonymity)
{
    char path[] = "/tmp/hermes-mqtt-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "listener 2883\n";
    char *argv[] = {"hermes-mqtt", "-c", path, NULL};
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(load(3, argv), HM_OK, "%s", err.text);
    unlink(path);
    cr_assert_eq(c.listener_count, 1);
    cr_assert_eq(c.listeners[0].port, 2883);
    cr_assert_null(c.listeners[0].bind_address);
    cr_assert_not(c.allow_anonymous); /* mosquitto 2's default */
}

Test(mqtt_config, unreadable_file_is_a_system_error_naming_it)
{
    char *argv[] = {"hermes-mqtt", "-c", "/nonexistent/hermes.conf", NULL};
    cr_assert_eq(load(3, argv), HM_ESYS);
    cr_assert(strstr(err.text, "/nonexistent/hermes.conf"));
}

Test(mqtt_config, error_in_the_file_names_the_file_and_line)
{
    char path[] = "/tmp/hermes-mqtt-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "listener 2883\nbogus 1\n";
    char *argv[] = {"hermes-mqtt", "-c", path, NULL};
    char want[64];
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(load(3, argv), HM_EINVAL);
    unlink(path);
    snprintf(want, sizeof want, "%s:2:", path);
    cr_assert(strstr(err.text, want), "%s", err.text);
}

/* -------------------------------------------------------- cluster mode */

Test(mqtt_config, cluster_lines_are_applied)
{
    cr_assert_eq(parse("node_name n1\n"
                       "cluster_name prod\n"
                       "cluster_listen 127.0.0.1:7000\n"
                       "cluster_join 10.0.0.2:7000,10.0.0.3:7000\n"
                       "cluster_join [::1]:7001\n"
                       "cluster_secret_file /etc/hermes/secret\n"),
                 HM_OK, "%s", err.text);
    cr_assert_str_eq(c.node_name, "n1");
    cr_assert_str_eq(c.cluster_name, "prod");
    cr_assert_str_eq(c.cluster_listen, "127.0.0.1:7000");
    cr_assert_eq(c.cluster_join_count, 3);
    cr_assert_str_eq(c.cluster_join[0], "10.0.0.2:7000");
    cr_assert_str_eq(c.cluster_join[1], "10.0.0.3:7000");
    cr_assert_str_eq(c.cluster_join[2], "[::1]:7001");
    cr_assert_str_eq(c.cluster_secret_file, "/etc/hermes/secret");
}

Test(mqtt_config, bad_cluster_values_name_the_line)
{
    cr_assert_eq(parse("listener 1883\nnode_name bad/name\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:2: node_name"), "%s", err.text);
    cr_assert_eq(parse("cluster_listen nohostport\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:1: cluster_listen"), "%s",
              err.text);
    cr_assert_eq(parse("cluster_join 1.2.3.4:7000,oops\n"), HM_EINVAL);
    cr_assert_eq(c.cluster_join_count, 0); /* nothing half-applied */
    cr_assert_eq(parse("cluster_listen 1.2.3.4:99999\n"), HM_EINVAL);
    cr_assert_eq(parse("cluster_secret_file\n"), HM_EINVAL);
    cr_assert_eq(parse("node_name a b\n"), HM_EINVAL);
}

Test(mqtt_config, cluster_flags_set_cluster_mode)
{
    char *argv[] = {"hermes-mqtt", "-p", "1884", "--node", "n2",
                    "--cluster-listen=127.0.0.1:0", "--join",
                    "127.0.0.1:7000,127.0.0.1:7001", "--join", "h:1",
                    "--cluster-secret-file", "/s", NULL};
    cr_assert_eq(load(12, argv), HM_OK, "%s", err.text);
    cr_assert_str_eq(c.node_name, "n2");
    cr_assert_str_eq(c.cluster_listen, "127.0.0.1:0");
    cr_assert_eq(c.cluster_join_count, 3);
    cr_assert_str_eq(c.cluster_join[2], "h:1");
    cr_assert_str_eq(c.cluster_secret_file, "/s");
    cr_assert_eq(c.listener_count, 1);
}

Test(mqtt_config, a_flag_overrides_the_file)
{
    char path[] = "/tmp/hermes-mqtt-conf-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "node_name fromfile\ncluster_listen 1.2.3.4:7\n"
                       "cluster_secret_file /f\n";
    char *argv[] = {"hermes-mqtt", "-c", path, "--node", "fromflag", NULL};
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(load(5, argv), HM_OK, "%s", err.text);
    unlink(path);
    cr_assert_str_eq(c.node_name, "fromflag");
    cr_assert_str_eq(c.cluster_listen, "1.2.3.4:7");
}

Test(mqtt_config, incomplete_or_bad_cluster_flags_are_errors)
{
    char *no_listen[] = {"hermes-mqtt", "--node", "n", "--cluster-secret-file",
                         "/s", NULL};
    char *no_node[] = {"hermes-mqtt", "--join", "h:1", NULL};
    char *bad_name[] = {"hermes-mqtt", "--node", "a b", NULL};
    char *no_value[] = {"hermes-mqtt", "--node", NULL};
    char *bad_join[] = {"hermes-mqtt", "--join=x", NULL};
    cr_assert_eq(load(5, no_listen), HM_EINVAL);
    cr_assert(strstr(err.text, "cluster_listen"), "%s", err.text);
    mqtt_config_fini(&c);
    mqtt_config_init(&c);
    cr_assert_eq(load(3, no_node), HM_EINVAL);
    cr_assert(strstr(err.text, "node_name"), "%s", err.text);
    mqtt_config_fini(&c);
    mqtt_config_init(&c);
    cr_assert_eq(load(3, bad_name), HM_EINVAL);
    cr_assert(strstr(err.text, "--node"), "%s", err.text);
    cr_assert_eq(load(2, no_value), HM_EINVAL);
    cr_assert_eq(load(2, bad_join), HM_EINVAL);
}

Test(mqtt_config, cluster_buffer_limit_line_and_flag)
{
    char *argv[] = {"hermes-mqtt", "--node", "n", "--cluster-listen",
                    "127.0.0.1:0", "--cluster-secret-file", "/s",
                    "--cluster-buffer-limit=64", NULL};
    char *bad[] = {"hermes-mqtt", "--node", "n", "--cluster-listen",
                   "127.0.0.1:0", "--cluster-secret-file", "/s",
                   "--cluster-buffer-limit", "0", NULL};
    char *alone[] = {"hermes-mqtt", "--cluster-buffer-limit", "5", NULL};

    cr_assert_eq(parse("node_name n\ncluster_listen 127.0.0.1:0\n"
                       "cluster_secret_file /s\ncluster_buffer_limit 100\n"),
                 HM_OK, "%s", err.text);
    cr_assert_eq(c.cluster_buffer_limit, 100);
    cr_assert_eq(parse("listener 1883\ncluster_buffer_limit 0\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "test.conf:2: cluster_buffer_limit"), "%s",
              err.text);
    cr_assert_eq(parse("cluster_buffer_limit 10000001\n"), HM_EINVAL);
    cr_assert_eq(parse("cluster_buffer_limit 12x\n"), HM_EINVAL);
    cr_assert_eq(parse("cluster_buffer_limit\n"), HM_EINVAL);
    mqtt_config_fini(&c);
    mqtt_config_init(&c);
    cr_assert_eq(load(8, argv), HM_OK, "%s", err.text);
    cr_assert_eq(c.cluster_buffer_limit, 64);
    mqtt_config_fini(&c);
    mqtt_config_init(&c);
    cr_assert_eq(load(9, bad), HM_EINVAL);
    cr_assert(strstr(err.text, "--cluster-buffer-limit 0"), "%s", err.text);
    mqtt_config_fini(&c);
    mqtt_config_init(&c);
    /* A cluster setting without the cluster's identity is an error. */
    cr_assert_eq(load(3, alone), HM_EINVAL);
    cr_assert(strstr(err.text, "node_name"), "%s", err.text);
}

Test(mqtt_config, no_cluster_setting_means_no_cluster)
{
    char *argv[] = {"hermes-mqtt", "-p", "1884", NULL};
    cr_assert_eq(load(3, argv), HM_OK);
    cr_assert_null(c.node_name);
    cr_assert_eq(c.cluster_join_count, 0);
}
