/* tests/runtime/test_store_redis.c: durable state and reminders over a real
 * redis-server that each test starts on a free loopback port (and stops):
 * saving and loading, state shared by two runtimes (two nodes), reminders
 * after a restart, a server that dies (saves fail, the activation stays,
 * and catches up when the server is back), and data kept by the server's
 * append-only file across a kill -9 of the server. */
#include "tests/runtime/durable_test.h"

#include "runtime/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];
static int port;
static pid_t server = -1;

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_eq(bind(fd, (struct sockaddr *)&a, len), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts redis-server in `dir` and waits for its "Ready" log line. */
static void start_server(bool appendonly)
{
    char portarg[16], line[512];
    int out[2];
    FILE *f;
    bool ready = false;

    snprintf(portarg, sizeof portarg, "%d", port);
    cr_assert_eq(pipe(out), 0);
    server = fork();
    cr_assert_neq(server, -1);
    if (server == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execlp("redis-server", "redis-server", "--port", portarg, "--bind",
               "127.0.0.1", "--dir", dir, "--save", "", "--appendonly",
               appendonly ? "yes" : "no", "--appendfsync", "always",
               (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    f = fdopen(out[0], "r");
    while (!ready && fgets(line, sizeof line, f))
        ready = strstr(line, "Ready to accept connections") != NULL;
    fclose(f); /* redis keeps logging to a closed pipe: it ignores SIGPIPE */
    cr_assert(ready, "redis-server did not start (is it installed?)");
}

static void stop_server(int sig)
{
    if (server <= 0)
        return;
    kill(server, sig);
    waitpid(server, NULL, 0);
    server = -1;
}

static void setup(void)
{
    memset(&DJ, 0, sizeof DJ);
    cr_assert_eq(system("sh mk/deps.sh redis-server"), 0);
    snprintf(dir, sizeof dir, "/tmp/hermes-redis-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    port = free_port();
    start_server(false);
}

static void teardown(void)
{
    char cmd[128];

    stop_server(SIGTERM);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(store_redis, .init = setup, .fini = teardown, .timeout = 30);

static hm_store *open_store(void)
{
    hm_store *s;

    cr_assert_eq(hm_store_open_redis(&(hm_store_redis_config){.port = port},
                                     &s),
                 HM_OK);
    return s;
}

static void quiet(void *arg, hm_log_level level, const char *id,
                  const char *line)
{
}

Test(store_redis, state_is_saved_on_deactivation_and_loaded_on_activation)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    deliver(rt, "c/a", &INC, 5);
    hm_runtime_advance(rt, 3000);
    cr_assert_eq(stored_count(s, "c/a"), 5);
    deliver(rt, "c/a", &INC, 1);
    cr_assert_eq(DJ.last_count, 6);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store_redis, a_receiver_moved_to_another_node_finds_its_state)
{
    hm_store *s1 = open_store(), *s2 = open_store();
    hm_runtime *node1 = durable_rt(s1), *node2 = durable_rt(s2);
    hm_addr *a;

    deliver(node1, "wt/a", &INC, 5);
    cr_assert_eq(hm_runtime_intern(node1, "wt/a", &a), HM_OK);
    cr_assert_eq(hm_runtime_deactivate(node1, a), HM_OK);
    hm_runtime_run_until_idle(node1);
    hm_addr_release(a);
    deliver(node2, "wt/a", &INC, 1);
    cr_assert_eq(DJ.last_count, 6);
    hm_runtime_destroy(node1);
    hm_runtime_destroy(node2);
    hm_store_destroy(s1);
    hm_store_destroy(s2);
}

Test(store_redis, a_reminder_fires_after_a_restart)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);

    cr_assert_eq(hm_runtime_remind(rt, "c/r", "wake", 2000, 0), HM_OK);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);

    s = open_store();
    rt = durable_rt(s);
    hm_runtime_advance(rt, 2000);
    cr_assert_eq(DJ.reminders, 1);
    cr_assert_str_eq(DJ.last_reminder, "wake");
    cr_assert_eq(stored_reminders(s), 0);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store_redis, a_failed_save_keeps_the_activation_until_a_save_succeeds)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    hm_runtime_stats st;

    deliver(rt, "c/a", &INC, 5);
    stop_server(SIGKILL);
    hm_log_set_sink(quiet, NULL);
    hm_runtime_advance(rt, 3000); /* idle: the save fails */
    hm_log_set_sink(NULL, NULL);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.live, 1, "the state was not dropped");
    cr_assert_geq(DJ.store_failures, 1);
    cr_assert_eq(DJ.last_failure, HM_ESTORE);

    start_server(false); /* an empty server on the same port */
    hm_runtime_advance(rt, 3000);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(stored_count(s, "c/a"), 5);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store_redis, a_failed_write_through_discards_the_activation)
{
    hm_store *s = open_store();
    hm_runtime *rt = durable_rt(s);
    hm_runtime_stats st;

    deliver(rt, "wt/a", &INC, 5);
    stop_server(SIGKILL);
    hm_log_set_sink(quiet, NULL);
    deliver(rt, "wt/a", &INC, 1);
    hm_log_set_sink(NULL, NULL);
    hm_runtime_stats_get(rt, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(st.handler_errors, 1);
    cr_assert_eq(DJ.last_failure, HM_ESTORE);
    hm_runtime_destroy(rt);
    hm_store_destroy(s);
}

Test(store_redis, a_server_gone_mid_write_is_an_error_not_a_sigpipe)
{
    hm_store *s = open_store();
    size_t len = 8u << 20; /* many writes: the later ones meet the reset */
    char *big = calloc(1, len);

    stop_server(SIGKILL);
    hm_log_set_sink(quiet, NULL);
    cr_assert_eq(hm_store_save(s, "big", big, len), HM_ESTORE);
    hm_log_set_sink(NULL, NULL);
    free(big);
    hm_store_destroy(s);
}

Test(store_redis, open_fails_without_a_server)
{
    hm_store *s;

    stop_server(SIGTERM);
    hm_log_set_sink(quiet, NULL);
    cr_assert_eq(hm_store_open_redis(&(hm_store_redis_config){.port = port},
                                     &s),
                 HM_ESTORE);
    hm_log_set_sink(NULL, NULL);
}

Test(store_redis, append_only_server_keeps_state_across_its_kill_9)
{
    hm_store *s, *s2;
    hm_runtime *rt;

    stop_server(SIGTERM);
    start_server(true);
    s = open_store();
    rt = durable_rt(s);
    deliver(rt, "wt/a", &INC, 9); /* acknowledged by the server: appended */
    stop_server(SIGKILL);
    start_server(true);
    s2 = open_store(); /* s's connection died with the server */
    cr_assert_eq(stored_count(s2, "wt/a"), 9);
    hm_store_destroy(s2);
    hm_log_set_sink(quiet, NULL);
    hm_runtime_destroy(rt);
    hm_log_set_sink(NULL, NULL);
    hm_store_destroy(s);
}
