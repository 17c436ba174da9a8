/* tests/net/test_conn_flow.c: flow control and closing, over loopback.
 *
 * The owner's side of each test is driven from the test thread through the
 * connection handle (handles are thread-safe), with a probe receiver
 * recording what the owner is told. */
#include "net_test.h"

#include <poll.h>

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

TestSuite(flow, .init = setup, .fini = teardown, .timeout = 30);

/* Listens with `opt`, connects a client, waits for net.opened. Returns the
 * client socket and the server-side handle (owned) in *c. */
static int open_pair(hm_conn_options opt, hm_listener **l, hm_conn **c)
{
    int fd;

    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "127.0.0.1",
                                                   .accept = accept_to,
                                                   .accept_arg = probe_addr,
                                                   .conn = opt},
                               l),
                 HM_OK);
    fd = client_connect(hm_listener_port(*l));
    probe_skip(&pr, &hm_net_opened_type);
    *c = probe_conn(&pr);
    return fd;
}

/* Writes 64 KiB chunks until the handle refuses one; returns that error. */
static hm_err write_until_refused(hm_conn *c)
{
    static char chunk[65536];
    hm_err err = HM_OK;

    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 100000 && err == HM_OK; i++) {
        err = hm_conn_write(c, chunk, sizeof chunk);
        cr_assert_leq(hm_conn_queued_len(c), 256 * 1024);
    }
    return err;
}

Test(flow, slow_reader_gets_efull_and_the_queue_stays_bounded)
{
    hm_listener *l;
    hm_conn *c;
    int fd =
        open_pair((hm_conn_options){.max_write_queue_len = 256 * 1024}, &l, &c);
    hm_net_stats st;

    cr_assert_eq(write_until_refused(c), HM_EFULL);
    cr_assert(hm_conn_is_open(c), "HM_NET_FULL_ERROR keeps it open");
    hm_net_stats_get(net, &st);
    cr_assert_geq(st.write_full, 1);
    hm_conn_release(c);
    close(fd);
    hm_listener_close(l);
}

Test(flow, full_close_policy_aborts_the_connection_with_efull)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){.max_write_queue_len = 256 * 1024,
                                         .on_full = HM_NET_FULL_CLOSE},
                       &l, &c);
    probe_event e;

    cr_assert_eq(write_until_refused(c), HM_EFULL);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_EFULL);
    free(e.data);
    cr_assert_eq(hm_conn_write(c, "x", 1), HM_ECLOSED);
    hm_conn_release(c);
    close(fd);
    hm_listener_close(l);
}

Test(flow, write_larger_than_the_bound_is_too_big)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){.max_write_queue_len = 1024}, &l, &c);
    char big[2048] = {0};

    cr_assert_eq(hm_conn_write(c, big, sizeof big), HM_ETOOBIG);
    hm_conn_release(c);
    close(fd);
    hm_listener_close(l);
}

Test(flow, graceful_close_flushes_everything_queued)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){0}, &l, &c);
    static char chunk[65536], got[65536];
    size_t total = 0;
    ssize_t n;
    probe_event e;

    for (int i = 0; i < 32; i++) {
        memset(chunk, 'a' + i % 26, sizeof chunk);
        cr_assert_eq(hm_conn_write(c, chunk, sizeof chunk), HM_OK);
    }
    hm_conn_close(c);
    cr_assert_eq(hm_conn_write(c, "late", 4), HM_ECLOSED);
    while ((n = recv(fd, got, sizeof got, 0)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            cr_assert_eq(got[i], 'a' + (int)((total + i) / 65536) % 26);
        total += (size_t)n;
    }
    cr_assert_eq(n, 0, "clean end of stream");
    cr_assert_eq(total, 32 * 65536);
    close(fd);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_OK);
    free(e.data);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(flow, abort_resets_the_peer)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){0}, &l, &c);
    char buf[4096];
    ssize_t n;

    hm_conn_abort(c);
    probe_skip(&pr, &hm_net_closed_type);
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        ;
    cr_assert_eq(n, -1);
    cr_assert_eq(errno, ECONNRESET);
    close(fd);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(flow, half_open_owner_gets_eof_and_can_still_write)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){.allow_half_open = true}, &l, &c);
    char line[32];
    probe_event e;

    send_str(fd, "last words\n");
    shutdown(fd, SHUT_WR);
    e = probe_expect(&pr, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "last words");
    free(e.data);
    probe_skip(&pr, &hm_net_eof_type);
    cr_assert_eq(hm_conn_write(c, "reply\n", 6), HM_OK);
    cr_assert(recv_line(fd, line, sizeof line));
    cr_assert_str_eq(line, "reply");
    hm_conn_close(c);
    cr_assert_eq(recv(fd, line, sizeof line, 0), 0);
    probe_skip(&pr, &hm_net_closed_type);
    close(fd);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(flow, without_half_open_peer_eof_closes_the_connection)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){0}, &l, &c);
    char buf[16];
    probe_event e;

    shutdown(fd, SHUT_WR);
    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 0);
    e = probe_expect(&pr, &hm_net_closed_type);
    cr_assert_eq(e.err, HM_OK);
    free(e.data);
    close(fd);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(flow, shutdown_write_ends_our_stream_and_frames_keep_coming)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){0}, &l, &c);
    char buf[16];
    probe_event e;

    cr_assert_eq(hm_conn_write(c, "bye\n", 4), HM_OK);
    hm_conn_shutdown_write(c);
    cr_assert(recv_line(fd, buf, sizeof buf));
    cr_assert_str_eq(buf, "bye");
    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 0);
    cr_assert_eq(hm_conn_write(c, "x", 1), HM_ECLOSED);
    send_str(fd, "still here\n");
    e = probe_expect(&pr, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "still here");
    free(e.data);
    close(fd);
    hm_conn_release(c);
    hm_listener_close(l);
}

/* Waits (polling, bounded) until the net has paused a read. There is no
 * event for "a read paused": this is observation of a gauge, not timing. */
static bool wait_read_pause(void)
{
    hm_net_stats st;

    for (int i = 0; i < 10000; i++) {
        hm_net_stats_get(net, &st);
        if (st.read_pauses > 0)
            return true;
        poll(NULL, 0, 1);
    }
    return false;
}

Test(flow, reading_pauses_while_the_owner_holds_too_many_frames)
{
    hm_listener *l;
    hm_conn *c;
    int fd;
    char line[101];
    int kept;

    pr.keep_payloads = true;
    fd = open_pair((hm_conn_options){.max_inflight_len = 4096}, &l, &c);
    memset(line, 'q', 100);
    line[100] = '\n';
    for (int i = 0; i < 200; i++)
        send_all(fd, line, sizeof line);
    cr_assert(wait_read_pause());
    cr_assert_eq(hm_runtime_wait_idle(rt, 10000), HM_OK);
    pthread_mutex_lock(&pr.lock);
    kept = pr.nkept;
    pr.keep_payloads = false;
    pthread_mutex_unlock(&pr.lock);
    cr_assert_lt(kept, 200);
    cr_assert_leq(kept * (100 + 64), 4096 + 164, "kept %d", kept);
    pthread_mutex_lock(&pr.lock);
    for (int i = 0; i < pr.nkept; i++) /* the owner catches up */
        hm_net_frame_type.free(pr.kept[i]);
    pr.nkept = 0;
    pthread_mutex_unlock(&pr.lock);
    for (int i = 0; i < 200; i++)
        probe_skip(&pr, &hm_net_frame_type);
    close(fd);
    hm_conn_release(c);
    hm_listener_close(l);
}

Test(flow, set_owner_moves_later_frames_to_the_new_owner)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){0}, &l, &c);
    probe pr2;
    hm_addr *a2 = probe_spawn(rt, "probe2", &pr2);
    char buf[16];
    probe_event e;

    hm_conn_set_owner(c, a2);
    /* The marker is queued after the request: once it arrives, the I/O
     * thread has applied the new owner. */
    cr_assert_eq(hm_conn_write(c, "marker\n", 7), HM_OK);
    cr_assert(recv_line(fd, buf, sizeof buf));
    send_str(fd, "to two\n");
    e = probe_expect(&pr2, &hm_net_frame_type);
    cr_assert_str_eq(e.data, "to two");
    free(e.data);
    close(fd);
    probe_skip(&pr2, &hm_net_closed_type);
    hm_conn_release(c);
    hm_listener_close(l);
    hm_addr_release(a2);
    hm_net_stop(net);
    probe_fini(&pr2);
}

Test(flow, writes_overtake_queued_bulk_and_pass_a_full_bulk_queue)
{
    hm_listener *l;
    hm_conn *c;
    int fd = open_pair((hm_conn_options){.max_write_queue_len = 256 * 1024,
                                         .send_buffer_len = 16 * 1024},
                       &l, &c);
    int rcvbuf = 16 * 1024;
    static char buf[65536], seen[14];
    size_t bulk = 0, total = 0, got = 0, at[14] = {0};
    ssize_t n;

    /* Small fixed kernel buffers (no autotuning): the kernel then holds at
     * most about one chunk while the reader sleeps, so bulk not begun is
     * left when the lines are written. With the defaults a socket that said
     * EAGAIN could grow its send buffer a moment later and take all the
     * queued bulk and URGENT in one sendmsg before SECOND was written; SECOND
     * then had nothing to overtake and came last (5 of 20 runs at load 15). */
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf),
                 0);
    /* The reader sleeps: the socket buffers fill, then the bulk queue. A
     * full queue alone does not show that the socket is full (the writer
     * can outrun the I/O thread, which then hands it all to the kernel and
     * the lines would simply come last), so fill, let the I/O thread run,
     * and stop only when it could not drain the queue. */
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 10000; i++) {
            char *chunk = hm_alloc(65536);

            memset(chunk, 'x', 65536);
            if (hm_conn_write_bulk(c, chunk, 65536) != HM_OK) {
                hm_free(chunk);
                break;
            }
            bulk += 65536;
        }
        usleep(20 * 1000);
        if (hm_conn_queued_len(c) >= 2 * 65536)
            break; /* stuck: the socket is full */
    }
    cr_assert_geq(hm_conn_queued_len(c), 2 * 65536, "the socket never filled");
    /* The bulk queue is full; the others still have room. */
    cr_assert_eq(hm_conn_write(c, "URGENT\n", 7), HM_OK);
    cr_assert_eq(hm_conn_write(c, "SECOND\n", 7), HM_OK);
    /* Everything arrives; the two lines, in their order, each before the
     * end of the bulk (ahead of what was queued and not begun). The I/O
     * thread may begin a bulk chunk between the two writes; that chunk is
     * then finished before SECOND, so the lines need not be adjacent. */
    while (total < bulk + 14 && (n = recv(fd, buf, sizeof buf, 0)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != 'x' && got < sizeof seen) {
                at[got] = total + (size_t)i;
                seen[got++] = buf[i];
            }
        total += (size_t)n;
    }
    cr_assert_eq(total, bulk + 14);
    cr_assert_eq(got, sizeof seen, "the lines never came");
    cr_assert_eq(memcmp(seen, "URGENT\nSECOND\n", 14), 0);
    cr_assert_eq(at[6] - at[0], 6, "URGENT was split");
    cr_assert_eq(at[13] - at[7], 6, "SECOND was split");
    /* Bulk bytes still came after each line: neither waited for all of it. */
    cr_assert_lt(at[0], bulk, "URGENT waited behind the bulk");
    cr_assert_lt(at[7], bulk + 7, "SECOND waited behind the bulk");
    hm_conn_close(c);
    hm_conn_release(c);
    hm_listener_close(l);
    close(fd);
}
