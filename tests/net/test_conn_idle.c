/* tests/net/test_conn_idle.c: idle timeouts and the deadline wheel
 * (net/timed.c, ADR 0150), over real loopback sockets.
 *
 * A connection that delivers no frame for its idle timeout is aborted with
 * HM_ETIMEDOUT; frames restart the clock; the owner can set, change and
 * clear the timeout; many connections due in the same tick all expire. The
 * tests check outcomes and their order, never how long anything took. */
#include "net_test.h"

static hm_runtime *rt;
static hm_net *net;
static probe pr;
static hm_addr *probe_addr;

static void setup(void)
{
    net_start(&rt, &net, &pr, &probe_addr);
}

static void teardown(void)
{
    net_finish(rt, net, &pr, probe_addr);
}

static hm_listener *listen_idle(uint32_t idle_ms)
{
    hm_listener *l = NULL;

    cr_assert_eq(
        hm_net_listen(net,
                      &(hm_listen_config){
                          .host = "127.0.0.1",
                          .accept = accept_to,
                          .accept_arg = probe_addr,
                          .conn = {.idle_timeout_ms = idle_ms}},
                      &l),
        HM_OK);
    return l;
}

/* True once the peer sees end of stream or a reset on `fd`. */
static bool peer_sees_close(int fd)
{
    char buf[64];
    ssize_t n;

    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        ;
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

TestSuite(conn_idle, .init = setup, .fini = teardown, .timeout = 30);

Test(conn_idle, silent_connection_is_aborted_with_etimedout)
{
    hm_listener *l = listen_idle(50);
    int fd = client_connect(hm_listener_port(l));
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ETIMEDOUT, "got %s", hm_err_name(e.err));
    free(e.data);
    cr_assert(peer_sees_close(fd));
    close(fd);
    hm_listener_close(l);
}

Test(conn_idle, frames_restart_the_idle_clock)
{
    /* 20 lines 50 ms apart span 1 s, twice the timeout; each gap is a
     * tenth of it. */
    hm_listener *l = listen_idle(500);
    int fd = client_connect(hm_listener_port(l));
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    for (int i = 0; i < 20; i++) {
        send_all(fd, "tick\n", 5);
        e = probe_expect(&pr, &hm_net_frame_type);
        cr_assert_str_eq(e.data, "tick");
        free(e.data);
        usleep(50 * 1000);
    }
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ETIMEDOUT, "got %s", hm_err_name(e.err));
    free(e.data);
    close(fd);
    hm_listener_close(l);
}

Test(conn_idle, owner_sets_a_timeout_on_a_connection_that_had_none)
{
    hm_listener *l = listen_idle(0);
    int fd = client_connect(hm_listener_port(l));
    hm_conn *c;
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    send_all(fd, "one\n", 4);
    probe_skip(&pr, &hm_net_frame_type);
    c = probe_conn(&pr);
    hm_conn_set_idle_timeout(c, 30);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ETIMEDOUT, "got %s", hm_err_name(e.err));
    free(e.data);
    cr_assert_not(hm_conn_is_open(c));
    hm_conn_release(c);
    close(fd);
    hm_listener_close(l);
}

Test(conn_idle, clearing_the_timeout_keeps_the_connection)
{
    hm_listener *l = listen_idle(300);
    int fd = client_connect(hm_listener_port(l));
    hm_conn *c;
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    c = probe_conn(&pr);
    hm_conn_set_idle_timeout(c, 0);
    usleep(600 * 1000); /* twice the timeout it had */
    /* Still open: a line goes through, and only our close ends it. */
    send_all(fd, "still\n", 6);
    e = probe_expect(&pr, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "still");
    free(e.data);
    close(fd);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_OK, "got %s", hm_err_name(e.err));
    free(e.data);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(conn_idle, hundreds_of_connections_due_together_all_expire)
{
    enum { N = 300 };
    hm_listener *l = listen_idle(40);
    int fds[N], opened = 0, timed_out = 0;
    probe_event e = {0};

    for (int i = 0; i < N; i++)
        fds[i] = client_connect(hm_listener_port(l));
    while (timed_out < N) {
        cr_assert(probe_next(&pr, &e), "%d opened, %d timed out", opened,
                  timed_out);
        if (e.type == &hm_net_opened_type)
            opened++;
        else if (e.type == &hm_net_closed_type && e.err == HM_ETIMEDOUT)
            timed_out++;
        else
            cr_assert_fail("unexpected %s (%s)", e.type->name,
                           hm_err_name(e.err));
        free(e.data);
    }
    cr_assert_eq(opened, N);
    for (int i = 0; i < N; i++) {
        cr_assert(peer_sees_close(fds[i]));
        close(fds[i]);
    }
    hm_listener_close(l);
}
