/* fuzz/fuzz_cmdline.c: libFuzzer target for what the binaries read from
 * their command line: the cluster flags (cluster/options.h), the MQTT
 * broker's options (mqtt_config_load), HOST:PORT addresses
 * (hm_cluster_parse_hostport, chat_parse_hostport) and log level names.
 *
 * The input, split at NUL bytes, is an argv (at most 32 arguments after
 * the program name); byte 0 picks the parser. Checked: no sanitizer report
 * or leak, and
 * - cluster flags: the arguments left are the others, in order; an error
 *   says which flag; an enabled node has its name, address and secret file;
 *   every seed is an address hm_cluster_parse_hostport takes;
 * - broker options (never "-c", so no file is read): an error has text;
 * - each argument as an address: a port taken is 0..65535 and was written
 *   in plain decimal, a host has no blank or control byte, the address
 *   written back ("[host]:port" when the host has a colon) parses to the
 *   same host and port, and the chat client's parser agrees exactly;
 * - each argument as a log level: -1 or a level whose name it is. */
#include "apps/chat/server.h"
#include "apps/mqtt/config.h"
#include "cluster/node.h"
#include "cluster/options.h"
#include "runtime/log.h"

#include "fuzz/fuzz_common.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 32

static void check_address(const char *s)
{
    char host[HM_NODE_ADDR_MAX + 1], host2[HM_NODE_ADDR_MAX + 1];
    char again[HM_NODE_ADDR_MAX + 16];
    int port, port2;
    const char *digits;

    if (hm_cluster_parse_hostport(s, host, sizeof host, &port) != HM_OK) {
        check(chat_parse_hostport(s, host2, sizeof host2, &port2) != HM_OK);
        return;
    }
    check(chat_parse_hostport(s, host2, sizeof host2, &port2) == HM_OK &&
          strcmp(host, host2) == 0 && port == port2);
    check(port >= 0 && port <= 65535 && host[0] != '\0');
    for (const char *h = host; *h; h++)
        check((unsigned char)*h > ' ' && (unsigned char)*h < 0x7f);
    digits = strrchr(s, ':') + 1;
    check(digits[0] != '\0' && strspn(digits, "0123456789") == strlen(digits));
    snprintf(again, sizeof again, strchr(host, ':') ? "[%s]:%d" : "%s:%d",
             host, port);
    check(hm_cluster_parse_hostport(again, host2, sizeof host2, &port2) ==
              HM_OK &&
          strcmp(host, host2) == 0 && port == port2);
}

/* True if `arg` is one of the cluster flags ("--node", "--node=x"). */
static bool ours(const char *arg)
{
    static const char *const flags[] = {"--node", "--cluster-listen", "--join",
                                        "--cluster-secret-file",
                                        "--cluster-name"};

    for (size_t f = 0; f < sizeof flags / sizeof *flags; f++) {
        size_t len = strlen(flags[f]);
        if (strncmp(arg, flags[f], len) == 0 &&
            (arg[len] == '\0' || arg[len] == '='))
            return true;
    }
    return false;
}

static void cluster_flags(int argc, char **argv)
{
    char *before[MAX_ARGS + 1];
    hm_cluster_options o;
    int n = argc, j = 1;

    memcpy(before, argv, (size_t)argc * sizeof *argv);
    if (hm_cluster_options_parse(&n, argv, &o) != HM_OK) {
        check(strstr(o.error, "--") != NULL || strstr(o.error, "cluster"));
    } else {
        /* argv[1..n) is the arguments that are not ours, in order. */
        for (int i = 1; i < n; i++) {
            while (j < argc && before[j] != argv[i])
                j++;
            check(j < argc && !ours(argv[i]));
            j++;
        }
        check(!o.enabled || (o.node && o.listen && o.secret_file));
        for (size_t i = 0; i < o.seed_count; i++)
            check_address(o.seeds[i]);
    }
    hm_cluster_options_fini(&o);
}

static void broker_options(int argc, char **argv)
{
    mqtt_config c;
    mqtt_config_error err;

    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "-c", 2) == 0)
            return; /* reads a file: fuzz_mqtt_config covers the text */
    mqtt_config_init(&c);
    if (mqtt_config_load(&c, argc, argv, &err) != HM_OK)
        check(err.text[0] != '\0');
    mqtt_config_fini(&c);
}

static void levels(int argc, char **argv)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 1; i < argc; i++) {
        int l = hm_log_level_parse(argv[i]);

        check(l == -1 || (l >= 0 && l < 4 && strcasecmp(argv[i], names[l]) == 0));
        check_address(argv[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *argv[MAX_ARGS + 2];
    int argc = 0;
    size_t at = 1;

    if (size < 1)
        return 0;
    text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    argv[argc++] = "hermes";
    while (at <= size && argc <= MAX_ARGS) {
        argv[argc++] = text + at;
        at += strlen(text + at) + 1;
    }
    argv[argc] = NULL;
    switch (data[0] % 3) {
    case 0:
        cluster_flags(argc, argv);
        break;
    case 1:
        broker_options(argc, argv);
        break;
    default:
        levels(argc, argv);
        break;
    }
    free(text);
    return 0;
}
