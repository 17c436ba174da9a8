/* cluster/options.h: the cluster flags every Hermes binary accepts.
 *
 *   --node NAME                  this node's name ([A-Za-z0-9._-]{1,64})
 *   --cluster-listen HOST:PORT   the cluster listen address
 *   --join HOST:PORT[,...]       seeds (repeatable)
 *   --cluster-secret-file FILE   the shared secret (mode 0600)
 *   --cluster-name NAME          optional; default "hermes"
 *
 * Each flag also takes the "--flag=value" form. The parser removes the flags
 * it knows from argv and leaves the rest, in order, for the application's
 * own parser, so every binary gets the same flags with the same errors.
 * Pure: no I/O (the secret file is read by hm_node_create()). */
#ifndef HM_CLUSTER_OPTIONS_H
#define HM_CLUSTER_OPTIONS_H

#include "cluster/node.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>

#define HM_CLUSTER_OPTIONS_MAX_SEEDS 64
#define HM_CLUSTER_OPTIONS_ERR_LEN 160

typedef struct hm_cluster_options {
    bool enabled; /* --node was given: run as a cluster node */
    const char *node;        /* borrowed from argv */
    const char *listen;      /* borrowed from argv */
    const char *cluster;     /* borrowed from argv; NULL: default */
    const char *secret_file; /* borrowed from argv */
    char *seeds[HM_CLUSTER_OPTIONS_MAX_SEEDS]; /* owned copies */
    size_t seed_count;
    char error[HM_CLUSTER_OPTIONS_ERR_LEN]; /* why parsing failed */
} hm_cluster_options;

/* Parses and removes the cluster flags from argv[1..*argc) (argv borrowed;
 * entries are moved, never freed), updating *argc. On error, `out->error`
 * says what is wrong in one sentence naming the flag. With no cluster flag
 * at all, out->enabled is false and the node runs alone. Call
 * hm_cluster_options_fini() on every path.
 * Errors: HM_EINVAL (a missing value, a bad name or address, a flag given
 * twice, or some cluster flags without --node, --cluster-listen and
 * --cluster-secret-file). */
hm_err hm_cluster_options_parse(int *argc, char **argv,
                                hm_cluster_options *out);

/* Frees the seed copies. Accepts a zeroed struct. */
void hm_cluster_options_fini(hm_cluster_options *o);

/* Fills the identity fields of `cfg` (name, cluster, listen, seeds,
 * secret_file) from `o`; both borrowed, and `cfg` borrows from `o`. */
void hm_cluster_options_apply(const hm_cluster_options *o,
                              hm_node_config *cfg);

/* Splits "HOST:PORT" or "[V6]:PORT" (borrowed) into `host` (`host_len`
 * bytes, borrowed) and `*port` (0..65535). Errors: HM_EINVAL. Pure. */
hm_err hm_cluster_parse_hostport(const char *s, char *host, size_t host_len,
                                 int *port);

/* The usage lines of the flags above, for a binary's --help. Returns
 * borrowed static storage. */
const char *hm_cluster_options_usage(void);

#endif
