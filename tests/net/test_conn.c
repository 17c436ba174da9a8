/* tests/net/test_conn.c: connections over real loopback sockets.
 *
 * The server side is Hermes (a runtime, a net with two I/O threads, and a
 * probe or echo receiver owning the connections); the other side is a
 * plain blocking socket, or Hermes again for outgoing connects. */
#include "net_test.h"

#include "net/line.h"
#include "runtime/log.h"

#include <fcntl.h>
#include <poll.h>

static hm_runtime *rt;
static hm_net *net;
static probe pr;
static hm_addr *probe_addr, *echo_addr;

static void setup(void)
{
    net_start(&rt, &net, &pr, &probe_addr);
    cr_assert_eq(
        hm_runtime_spawn(rt, "echo",
                         &(hm_receiver){.handler = echo_handle, .pinned = true},
                         &echo_addr),
        HM_OK);
}

static void teardown(void)
{
    hm_addr_release(echo_addr); /* a reference only: the runtime ends it */
    net_finish(rt, net, &pr, probe_addr);
}

static hm_listener *listen_with(hm_addr *owner, hm_conn_options opt)
{
    hm_listener *l = NULL;

    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "127.0.0.1",
                                                   .accept = accept_to,
                                                   .accept_arg = owner,
                                                   .conn = opt},
                               &l),
                 HM_OK);
    return l;
}

TestSuite(conn, .init = setup, .fini = teardown, .timeout = 30);

Test(conn, echo_returns_each_line)
{
    hm_listener *l = listen_with(echo_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    char line[64];

    send_str(fd, "hello\n");
    cr_assert(recv_line(fd, line, sizeof line));
    cr_assert_str_eq(line, "hello");
    close(fd);
    hm_listener_close(l);
}

Test(conn, many_lines_in_one_write_arrive_as_frames_in_order)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));

    probe_skip(&pr, &hm_net_opened_type);
    send_str(fd, "a\nbb\r\n\nccc\n");
    const char *want[] = {"a", "bb", "", "ccc"};
    for (int i = 0; i < 4; i++) {
        probe_event e = probe_expect(&pr, &hm_net_frame_type);

        cr_assert_str_eq(e.data, want[i]);
        free(e.data);
    }
    close(fd);
    hm_listener_close(l);
}

Test(conn, line_sent_one_byte_per_write_is_one_frame)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    const char *msg = "{\"v\":1,\"type\":\"ping\"}\n";
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    for (size_t i = 0; msg[i]; i++)
        send_all(fd, msg + i, 1);
    e = probe_expect(&pr, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "{\"v\":1,\"type\":\"ping\"}");
    free(e.data);
    close(fd);
    hm_listener_close(l);
}

Test(conn, opened_message_carries_a_handle_with_the_peer_address)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    hm_conn *c;

    probe_skip(&pr, &hm_net_opened_type);
    c = probe_conn(&pr);
    cr_assert(hm_conn_is_open(c));
    cr_assert_eq(strncmp(hm_conn_peer(c), "127.0.0.1:", 10), 0);
    hm_conn_release(c);
    close(fd);
    hm_listener_close(l);
}

Test(conn, peer_close_delivers_closed_with_ok)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    close(fd);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_OK);
    free(e.data);
    hm_listener_close(l);
}

Test(conn, peer_reset_delivers_closed_with_connreset)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ECONNRESET, "got %s", hm_err_name(e.err));
    free(e.data);
    hm_listener_close(l);
}

Test(conn, write_to_a_closed_connection_fails_with_eclosed)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    hm_conn *c;

    probe_skip(&pr, &hm_net_opened_type);
    c = probe_conn(&pr);
    close(fd);
    probe_skip(&pr, &hm_net_closed_type);
    cr_assert_not(hm_conn_is_open(c));
    cr_assert_eq(hm_conn_write(c, "x\n", 2), HM_ECLOSED);
    hm_conn_close(c); /* idempotent, harmless */
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(conn, connect_to_a_closed_port_delivers_closed_with_connrefused)
{
    uint64_t id = 0;
    probe_event e;

    cr_assert_eq(hm_net_connect(net,
                                &(hm_connect_config){.host = "127.0.0.1",
                                                     .port = closed_port(),
                                                     .owner = probe_addr},
                                &id),
                 HM_OK);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ECONNREFUSED, "got %s", hm_err_name(e.err));
    cr_assert_eq(e.conn_id, id);
    free(e.data);
}

Test(conn, connect_to_an_unknown_host_fails_synchronously)
{
    cr_assert_eq(hm_net_connect(net,
                                &(hm_connect_config){.host = "no.such.host.",
                                                     .port = 1,
                                                     .owner = probe_addr},
                                NULL),
                 HM_ENOTFOUND);
}

Test(conn, outgoing_connection_talks_to_a_hermes_listener)
{
    hm_listener *l = listen_with(echo_addr, (hm_conn_options){0});
    hm_conn *c;
    probe_event e;

    cr_assert_eq(
        hm_net_connect(net,
                       &(hm_connect_config){.host = "127.0.0.1",
                                            .port = hm_listener_port(l),
                                            .owner = probe_addr},
                       NULL),
        HM_OK);
    probe_skip(&pr, &hm_net_opened_type);
    c = probe_conn(&pr);
    cr_assert_eq(hm_conn_write(c, "round trip\n", 11), HM_OK);
    e = probe_expect(&pr, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "round trip");
    free(e.data);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(conn, ipv6_loopback_listener_echoes)
{
    hm_listener *l = NULL;
    char line[16];
    int fd;

    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "::1",
                                                   .accept = accept_to,
                                                   .accept_arg = echo_addr},
                               &l),
                 HM_OK);
    fd = client_connect_host("::1", hm_listener_port(l));
    send_str(fd, "six\n");
    cr_assert(recv_line(fd, line, sizeof line));
    cr_assert_str_eq(line, "six");
    close(fd);
    hm_listener_close(l);
}

Test(conn, dual_stack_listener_takes_ipv4_and_ipv6)
{
    hm_listener *l = NULL;
    char line[16];
    int fd4, fd6;

    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.accept = accept_to,
                                                   .accept_arg = echo_addr},
                               &l),
                 HM_OK);
    fd4 = client_connect_host("127.0.0.1", hm_listener_port(l));
    fd6 = client_connect_host("::1", hm_listener_port(l));
    send_str(fd4, "four\n");
    send_str(fd6, "six\n");
    cr_assert(recv_line(fd4, line, sizeof line));
    cr_assert_str_eq(line, "four");
    cr_assert(recv_line(fd6, line, sizeof line));
    cr_assert_str_eq(line, "six");
    close(fd4);
    close(fd6);
    hm_listener_close(l);
}

Test(conn, listening_on_a_busy_port_fails_with_eexist)
{
    hm_listener *l = listen_with(echo_addr, (hm_conn_options){0});
    hm_listener *l2 = NULL;

    hm_log_set_level(HM_LOG_LEVEL_ERROR); /* the WARN is expected */
    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "127.0.0.1",
                                                   .port = hm_listener_port(l),
                                                   .accept = accept_to,
                                                   .accept_arg = echo_addr},
                               &l2),
                 HM_EEXIST);
    hm_listener_close(l);
}

Test(conn, over_long_line_delivers_error_too_big)
{
    static hm_line_config cfg = {.max_line_len = 16};
    static hm_framer fr;
    hm_listener *l;
    int fd;
    probe_event e;

    hm_line_framer_init(&fr, &cfg);
    l = listen_with(probe_addr, (hm_conn_options){.framer = &fr});
    fd = client_connect(hm_listener_port(l));
    probe_skip(&pr, &hm_net_opened_type);
    send_str(fd, "short\n0123456789abcdefghij\n");
    e = probe_expect(&pr, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "short");
    free(e.data);
    e = probe_expect(&pr, &hm_net_error_type);
    cr_assert_eq(e.err, HM_ETOOBIG);
    free(e.data);
    close(fd);
    hm_listener_close(l);
}

/* A listener whose accept queue is full: further SYNs are dropped, so a
 * connect to it stays in progress until our deadline. */
static int full_backlog_listener(int *port, int *fillers, int nfill)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    socklen_t len = sizeof in;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    cr_assert_eq(listen(fd, 0), 0);
    getsockname(fd, (struct sockaddr *)&in, &len);
    *port = ntohs(in.sin_port);
    for (int i = 0; i < nfill; i++) { /* fill the queue; never accepted */
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&in, sizeof in);
    }
    return fd;
}

Test(conn, connect_that_never_completes_times_out)
{
    int fillers[4], port;
    int lfd = full_backlog_listener(&port, fillers, 4);
    probe_event e;

    cr_assert_eq(hm_net_connect(net,
                                &(hm_connect_config){.host = "127.0.0.1",
                                                     .port = port,
                                                     .owner = probe_addr,
                                                     .timeout_ms = 200},
                                NULL),
                 HM_OK);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ETIMEDOUT, "got %s", hm_err_name(e.err));
    free(e.data);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

Test(conn, owner_that_ignores_a_framing_error_is_closed_after_the_linger)
{
    static hm_line_config cfg = {.max_line_len = 8};
    static hm_framer fr;
    hm_listener *l;
    char buf[16];
    int fd;
    probe_event e;

    hm_line_framer_init(&fr, &cfg);
    l = listen_with(probe_addr,
                    (hm_conn_options){.framer = &fr, .linger_ms = 100});
    fd = client_connect(hm_listener_port(l));
    probe_skip(&pr, &hm_net_opened_type);
    send_str(fd, "far too long for eight bytes\n");
    probe_skip(&pr, &hm_net_error_type);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_OK);
    free(e.data);
    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 0);
    close(fd);
    hm_listener_close(l);
}

static hm_err refuse_all(void *arg, uint64_t id, const char *peer,
                         hm_addr **owner_out)
{
    (void)arg;
    (void)id;
    (void)peer;
    (void)owner_out;
    return HM_EDENIED;
}

Test(conn, connection_the_accept_function_refuses_is_closed)
{
    hm_listener *l = NULL;
    char buf[8];
    int fd;

    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "127.0.0.1",
                                                   .accept = refuse_all},
                               &l),
                 HM_OK);
    fd = client_connect(hm_listener_port(l));
    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 0);
    close(fd);
    hm_listener_close(l);
}

Test(conn, stopping_the_net_tells_every_owner_closed_with_eclosed)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));
    hm_conn *c;
    probe_event e;

    probe_skip(&pr, &hm_net_opened_type);
    c = probe_conn(&pr);
    hm_listener_close(l);
    hm_net_stop(net);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_ECLOSED);
    free(e.data);
    cr_assert_eq(hm_conn_write(c, "x", 1), HM_ECLOSED);
    hm_conn_release(c);
    close(fd);
}

Test(conn, closed_comes_after_every_frame)
{
    hm_listener *l = listen_with(probe_addr, (hm_conn_options){0});
    int fd = client_connect(hm_listener_port(l));

    probe_skip(&pr, &hm_net_opened_type);
    for (int i = 0; i < 100; i++)
        send_str(fd, "frame\n");
    close(fd);
    for (int i = 0; i < 100; i++)
        probe_skip(&pr, &hm_net_frame_type);
    probe_skip(&pr, &hm_net_closed_type);
    hm_listener_close(l);
}
