/* tests/net/test_many.c: thousands of connections, and running out of
 * file descriptors, over loopback. */
#include "net_test.h"

#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define CONNS 2000

static hm_runtime *rt;
static hm_net *net;
static hm_addr *echo_addr;

static void setup(void)
{
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    cr_assert_eq(
        hm_net_create(&(hm_net_config){.rt = rt, .io_threads = 2}, &net),
        HM_OK);
    cr_assert_eq(
        hm_runtime_spawn(rt, "echo",
                         &(hm_receiver){.handler = echo_handle, .pinned = true},
                         &echo_addr),
        HM_OK);
}

static void teardown(void)
{
    hm_net_stop(net);
    hm_addr_release(echo_addr);
    hm_runtime_destroy(rt);
    hm_net_destroy(net);
}

TestSuite(many, .init = setup, .fini = teardown, .timeout = 60);

static hm_listener *listen_echo(void)
{
    hm_listener *l = NULL;

    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "127.0.0.1",
                                                   .backlog = 4096,
                                                   .accept = accept_to,
                                                   .accept_arg = echo_addr},
                               &l),
                 HM_OK);
    return l;
}

Test(many, two_thousand_concurrent_connections_each_get_their_echo)
{
    static int fds[CONNS];
    hm_listener *l = listen_echo();
    hm_net_stats st;
    char want[32], got[32];

    for (int i = 0; i < CONNS; i++)
        fds[i] = client_connect(hm_listener_port(l));
    for (int i = 0; i < CONNS; i++) { /* all open at once, then talk */
        snprintf(want, sizeof want, "conn %d\n", i);
        send_str(fds[i], want);
    }
    for (int i = 0; i < CONNS; i++) {
        snprintf(want, sizeof want, "conn %d", i);
        cr_assert(recv_line(fds[i], got, sizeof got), "conn %d", i);
        cr_assert_str_eq(got, want);
    }
    hm_net_stats_get(net, &st);
    cr_assert_eq(st.accepted, CONNS);
    cr_assert_eq(st.open, CONNS);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    hm_listener_close(l);
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    while (readdir(d))
        n++;
    closedir(d);
    return n - 2; /* "." and ".." */
}

/* The child: connects `count` clients, each says hi and reads its answer
 * (an echo, or the end of stream of a connection dropped for lack of
 * descriptors); closes them all and checks that a new client is served.
 * Exit status: 0 if some were echoed, some dropped, and the last served. */
static int child_clients(int port, int count)
{
    int fds[256], echoed = 0, dropped = 0;
    char line[16];

    for (int i = 0; i < count; i++) {
        fds[i] = client_connect(port);
        send_str(fds[i], "hi\n");
    }
    for (int i = 0; i < count; i++) {
        if (recv_line(fds[i], line, sizeof line))
            echoed++;
        else
            dropped++;
    }
    for (int i = 0; i < count; i++)
        close(fds[i]);
    fds[0] = client_connect(port);
    send_str(fds[0], "again\n");
    if (!recv_line(fds[0], line, sizeof line) || strcmp(line, "again"))
        return 3;
    fprintf(stderr, "echoed %d dropped %d\n", echoed, dropped);
    return echoed > 0 && dropped > 0 ? 0 : 2;
}

Test(many, out_of_descriptors_drops_connections_without_stopping_service)
{
    hm_listener *l = listen_echo();
    struct rlimit rl, normal;
    hm_net_stats st;
    int status = 0;
    pid_t pid;

    getrlimit(RLIMIT_NOFILE, &normal);
    rl = normal;
    rl.rlim_cur = (rlim_t)count_open_fds() + 20;
    /* Lower the limit before the clients exist: lowering it after the fork
     * raced the child, which could connect everyone first. */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* the child gets the normal limit back */
        if (setrlimit(RLIMIT_NOFILE, &normal) != 0)
            _exit(4);
        _exit(child_clients(hm_listener_port(l), 100));
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0);
    hm_net_stats_get(net, &st);
    cr_assert_geq(st.accept_dropped, 1);
    hm_listener_close(l);
}
