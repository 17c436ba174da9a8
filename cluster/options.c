/* cluster/options.c: the cluster command-line flags.
 *
 * A small hand-written scanner rather than getopt_long: getopt permutes and
 * keeps global state, and every app binary must be able to run this first
 * and hand what is left to its own parser unchanged. */
#include "cluster/options.h"

#include "cluster/wire.h"
#include "runtime/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "  --node NAME                 this node's name ([A-Za-z0-9._-], 1-64)\n"
    "  --cluster-listen HOST:PORT  cluster listen address (port 0: any)\n"
    "  --join HOST:PORT[,...]      seed nodes to join (repeatable)\n"
    "  --cluster-secret-file FILE  shared cluster secret (chmod 600)\n"
    "  --cluster-name NAME         cluster name (default: hermes)\n";

const char *hm_cluster_options_usage(void)
{
    return USAGE;
}

hm_err hm_cluster_parse_hostport(const char *s, char *host, size_t host_len,
                                 int *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    char *end;
    long p;

    if (!s || !*s || strlen(s) > HM_NODE_ADDR_MAX)
        return HM_EINVAL;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return HM_EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon)
            return HM_EINVAL;
        hlen = (size_t)(colon - s);
    }
    /* The port is 1 to 5 decimal digits: strtol alone would also take a
     * sign and leading blanks ("h:+80", "h: 80"; found by
     * fuzz/fuzz_cmdline.c). */
    if (hlen == 0 || hlen >= host_len || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) > 5)
        return HM_EINVAL;
    p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return HM_EINVAL;
    /* Printable ASCII without blanks or brackets in the host ("[[1]:6"
     * gave host "[1", which no address written back parses to). Bytes
     * from 0x80 were refused only where char is signed; now everywhere. */
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)h[i] <= ' ' || (unsigned char)h[i] >= 0x7f ||
            h[i] == '[' || h[i] == ']')
            return HM_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return HM_OK;
}

static hm_err fail(hm_cluster_options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static hm_err fail(hm_cluster_options *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(o->error, sizeof o->error, fmt, ap);
    va_end(ap);
    return HM_EINVAL;
}

static bool valid_addr(const char *s)
{
    char host[HM_NODE_ADDR_MAX + 1];
    int port;

    return hm_cluster_parse_hostport(s, host, sizeof host, &port) == HM_OK;
}

static hm_err add_seeds(hm_cluster_options *o, const char *list)
{
    const char *p = list;

    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char *seed = hm_strndup(p, len);

        if (!valid_addr(seed) ||
            o->seed_count == HM_CLUSTER_OPTIONS_MAX_SEEDS) {
            hm_err err = fail(o, "--join: \"%s\" is not HOST:PORT%s", seed,
                              valid_addr(seed) ? " (too many seeds)" : "");
            hm_free(seed);
            return err;
        }
        o->seeds[o->seed_count++] = seed;
        if (!comma)
            return HM_OK;
        p = comma + 1;
    }
}

/* The flag at argv[*i] if it is one of ours: its value in *value (from
 * "--flag=value" or the next argument). Returns the flag index or -1. */
static const char *const FLAGS[] = {"--node", "--cluster-listen", "--join",
                                    "--cluster-secret-file",
                                    "--cluster-name"};
#define FLAG_COUNT (sizeof FLAGS / sizeof FLAGS[0])

static int match(const char *arg, const char **inline_value)
{
    for (size_t f = 0; f < FLAG_COUNT; f++) {
        size_t len = strlen(FLAGS[f]);

        if (strncmp(arg, FLAGS[f], len) != 0)
            continue;
        if (arg[len] == '\0') {
            *inline_value = NULL;
            return (int)f;
        }
        if (arg[len] == '=') {
            *inline_value = arg + len + 1;
            return (int)f;
        }
    }
    return -1;
}

static hm_err take(hm_cluster_options *o, int f, const char *v,
                   const char **seen)
{
    if (f != 2 && seen[f])
        return fail(o, "%s given twice", FLAGS[f]);
    seen[f] = v;
    switch (f) {
    case 0:
        if (!hm_wire_name_is_valid(v))
            return fail(o, "--node: \"%s\" is not a valid node name "
                           "([A-Za-z0-9._-], 1 to 64)", v);
        o->node = v;
        return HM_OK;
    case 1:
        if (!valid_addr(v))
            return fail(o, "--cluster-listen: \"%s\" is not HOST:PORT", v);
        o->listen = v;
        return HM_OK;
    case 2:
        return add_seeds(o, v);
    case 3:
        if (!*v)
            return fail(o, "--cluster-secret-file: empty file name");
        o->secret_file = v;
        return HM_OK;
    default:
        if (!hm_wire_name_is_valid(v))
            return fail(o, "--cluster-name: \"%s\" is not a valid name", v);
        o->cluster = v;
        return HM_OK;
    }
}

static hm_err check_complete(hm_cluster_options *o, const char **seen)
{
    bool any = false;

    for (size_t f = 0; f < FLAG_COUNT; f++)
        any |= seen[f] != NULL;
    if (!any)
        return HM_OK;
    if (!o->node)
        return fail(o, "cluster flags given without --node");
    if (!o->listen)
        return fail(o, "--node needs --cluster-listen HOST:PORT");
    if (!o->secret_file)
        return fail(o, "--node needs --cluster-secret-file FILE");
    o->enabled = true;
    return HM_OK;
}

hm_err hm_cluster_options_parse(int *argc, char **argv,
                                hm_cluster_options *out)
{
    const char *seen[FLAG_COUNT] = {0};
    int kept = 1;
    hm_err err;

    memset(out, 0, sizeof *out);
    for (int i = 1; i < *argc; i++) {
        const char *v;
        int f = match(argv[i], &v);

        if (f < 0) {
            argv[kept++] = argv[i];
            continue;
        }
        if (!v) {
            if (i + 1 >= *argc)
                return fail(out, "%s needs a value", FLAGS[f]);
            v = argv[++i];
        }
        if ((err = take(out, f, v, seen)) != HM_OK)
            return err;
    }
    if ((err = check_complete(out, seen)) != HM_OK)
        return err;
    for (int i = kept; i < *argc; i++)
        argv[i] = NULL;
    *argc = kept;
    return HM_OK;
}

void hm_cluster_options_fini(hm_cluster_options *o)
{
    for (size_t i = 0; i < o->seed_count; i++)
        hm_free(o->seeds[i]);
    o->seed_count = 0;
}

void hm_cluster_options_apply(const hm_cluster_options *o,
                              hm_node_config *cfg)
{
    cfg->name = o->node;
    cfg->cluster = o->cluster;
    cfg->listen = o->listen;
    cfg->seeds = (const char *const *)o->seeds;
    cfg->seed_count = o->seed_count;
    cfg->secret_file = o->secret_file;
}
