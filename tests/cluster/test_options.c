/* tests/cluster/test_options.c: the cluster flags every binary accepts. */
#include "cluster/options.h"

#include <criterion/criterion.h>
#include <string.h>

/* Parses a NULL-terminated list of arguments (argv[0] included). */
static hm_err parse(const char **args, int *argc, char **argv,
                    hm_cluster_options *o)
{
    *argc = 0;
    while (args[*argc]) {
        argv[*argc] = (char *)args[*argc];
        (*argc)++;
    }
    argv[*argc] = NULL;
    return hm_cluster_options_parse(argc, argv, o);
}

Test(cluster_options, all_flags_are_read_and_removed_from_argv)
{
    const char *args[] = {"app", "-p", "1883", "--node", "n1",
                          "--cluster-listen", "127.0.0.1:7000",
                          "--join=10.0.0.2:7000,10.0.0.3:7000", "--join",
                          "[::1]:7001", "--cluster-secret-file", "/s",
                          "rest", NULL};
    char *argv[16];
    int argc;
    hm_cluster_options o;

    cr_assert_eq(parse(args, &argc, argv, &o), HM_OK, "%s", o.error);
    cr_assert(o.enabled);
    cr_assert_str_eq(o.node, "n1");
    cr_assert_str_eq(o.listen, "127.0.0.1:7000");
    cr_assert_str_eq(o.secret_file, "/s");
    cr_assert_eq(o.seed_count, 3);
    cr_assert_str_eq(o.seeds[1], "10.0.0.3:7000");
    cr_assert_str_eq(o.seeds[2], "[::1]:7001");
    cr_assert_eq(argc, 4);
    cr_assert_str_eq(argv[1], "-p");
    cr_assert_str_eq(argv[3], "rest");
    hm_cluster_options_fini(&o);
}

Test(cluster_options, no_cluster_flag_means_a_single_node)
{
    const char *args[] = {"app", "-v", NULL};
    char *argv[4];
    int argc;
    hm_cluster_options o;

    cr_assert_eq(parse(args, &argc, argv, &o), HM_OK);
    cr_assert_not(o.enabled);
    cr_assert_eq(argc, 2);
    hm_cluster_options_fini(&o);
}

Test(cluster_options, node_without_a_secret_file_is_an_error_naming_it)
{
    const char *args[] = {"app", "--node", "n1", "--cluster-listen",
                          "127.0.0.1:7000", NULL};
    char *argv[8];
    int argc;
    hm_cluster_options o;

    cr_assert_eq(parse(args, &argc, argv, &o), HM_EINVAL);
    cr_assert(strstr(o.error, "--cluster-secret-file"), "%s", o.error);
    hm_cluster_options_fini(&o);
}

Test(cluster_options, bad_seed_address_is_an_error_naming_it)
{
    const char *args[] = {"app", "--join", "10.0.0.2", NULL};
    char *argv[8];
    int argc;
    hm_cluster_options o;

    cr_assert_eq(parse(args, &argc, argv, &o), HM_EINVAL);
    cr_assert(strstr(o.error, "--join") && strstr(o.error, "10.0.0.2"), "%s",
              o.error);
    hm_cluster_options_fini(&o);
}

Test(cluster_options, missing_value_and_repeated_flag_are_errors)
{
    const char *missing[] = {"app", "--node", NULL};
    const char *twice[] = {"app", "--node", "a", "--node", "b", NULL};
    char *argv[8];
    int argc;
    hm_cluster_options o;

    cr_assert_eq(parse(missing, &argc, argv, &o), HM_EINVAL);
    cr_assert(strstr(o.error, "needs a value"), "%s", o.error);
    hm_cluster_options_fini(&o);
    cr_assert_eq(parse(twice, &argc, argv, &o), HM_EINVAL);
    cr_assert(strstr(o.error, "twice"), "%s", o.error);
    hm_cluster_options_fini(&o);
}

Test(cluster_options, invalid_node_name_is_refused)
{
    const char *args[] = {"app", "--node", "bad name", NULL};
    char *argv[8];
    int argc;
    hm_cluster_options o;

    cr_assert_eq(parse(args, &argc, argv, &o), HM_EINVAL);
    cr_assert(strstr(o.error, "--node"), "%s", o.error);
    hm_cluster_options_fini(&o);
}

Test(cluster_options, host_and_port_are_split_for_ipv4_names_and_ipv6)
{
    char host[64];
    int port;

    cr_assert_eq(hm_cluster_parse_hostport("10.1.2.3:80", host, sizeof host,
                                           &port), HM_OK);
    cr_assert_str_eq(host, "10.1.2.3");
    cr_assert_eq(port, 80);
    cr_assert_eq(hm_cluster_parse_hostport("[fe80::1]:7000", host,
                                           sizeof host, &port), HM_OK);
    cr_assert_str_eq(host, "fe80::1");
    cr_assert_eq(hm_cluster_parse_hostport("node-a.local:0", host,
                                           sizeof host, &port), HM_OK);
    cr_assert_eq(port, 0);
    cr_assert_eq(hm_cluster_parse_hostport("::1:80", host, sizeof host,
                                           &port), HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport("a:70000", host, sizeof host,
                                           &port), HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport(":80", host, sizeof host, &port),
                 HM_EINVAL);
    /* Found by fuzz/fuzz_cmdline.c: strtol took a sign and blanks. */
    cr_assert_eq(hm_cluster_parse_hostport("h:+80", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport("h: 80", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport("h:-0", host, sizeof host, &port),
                 HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport("h:000080", host, sizeof host,
                                           &port), HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport("[[1]:6", host, sizeof host,
                                           &port), HM_EINVAL);
    cr_assert_eq(hm_cluster_parse_hostport("a]:6", host, sizeof host, &port),
                 HM_EINVAL);
}
