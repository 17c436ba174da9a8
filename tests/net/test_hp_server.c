/* tests/net/test_hp_server.c: the HP echo service (net/hp_echo.h) over
 * loopback.
 *
 * Each accepted connection gets its own pinned receiver ("hp/<id>") that
 * runs an hm_hp_session and echoes "msg" envelopes back. The client is a
 * plain socket speaking HP lines, and every bad input of docs/protocol.md
 * is sent to check the error code and whether the connection survives. */
#include "net_test.h"

#include "net/hp.h"
#include "net/hp_echo.h"
#include "net/hp_session.h"
#include "net/line.h"

#include <jansson.h>
#include <stdio.h>

static hm_runtime *rt;
static hm_hp_echo_config echo = {.agent = "hermes-test", .prefix = "hp"};
static hm_net *net;
static hm_listener *lis;
static hm_line_config line_cfg = {.max_line_len = 1024};
static hm_framer framer;

static void setup(void)
{
    cr_assert_eq(hm_runtime_create(&(hm_runtime_config){.threads = 2}, &rt),
                 HM_OK);
    echo.rt = rt;
    cr_assert_eq(
        hm_net_create(&(hm_net_config){.rt = rt, .io_threads = 2}, &net),
        HM_OK);
    hm_line_framer_init(&framer, &line_cfg);
    cr_assert_eq(hm_net_listen(net,
                               &(hm_listen_config){.host = "127.0.0.1",
                                                   .accept = hm_hp_echo_accept,
                                                   .accept_arg = &echo,
                                                   .conn = {.framer = &framer}},
                               &lis),
                 HM_OK);
}

static void teardown(void)
{
    hm_listener_close(lis);
    hm_net_stop(net);
    hm_runtime_destroy(rt);
    hm_net_destroy(net);
}

TestSuite(hp_server, .init = setup, .fini = teardown, .timeout = 30);

/* Reads one HP line and decodes it; the caller finis the message. */
static hm_hp_msg read_msg(int fd)
{
    char line[4096];
    hm_hp_msg m;
    hm_hp_fail f;

    cr_assert(recv_line(fd, line, sizeof line), "no line from the server");
    cr_assert_eq(hm_hp_decode((uint8_t *)line, strlen(line), &m, &f), HM_OK,
                 "server sent a bad line: %s (%s)", line, f.reason);
    return m;
}

static void expect_error(int fd, hm_hp_code code)
{
    hm_hp_msg m = read_msg(fd);

    cr_assert_eq(m.kind, HM_HP_ERROR);
    cr_assert_eq(m.u.error.code, code, "got %s: %s", m.u.error.code_name,
                 m.u.error.reason);
    cr_assert_gt(strlen(m.u.error.reason), 0);
    hm_hp_msg_fini(&m);
}

static void expect_closed(int fd)
{
    char buf[64];

    cr_assert_eq(recv(fd, buf, sizeof buf, 0), 0, "connection still open");
}

static void expect_pong(int fd, uint64_t id)
{
    hm_hp_msg m = read_msg(fd);

    cr_assert_eq(m.kind, HM_HP_PONG);
    cr_assert_eq(m.id, id);
    hm_hp_msg_fini(&m);
}

/* Connects and completes the hello/welcome exchange. */
static int hp_client(void)
{
    int fd = client_connect(hm_listener_port(lis));
    hm_hp_msg m;

    send_str(fd, "{\"v\":1,\"type\":\"hello\",\"id\":1,"
                 "\"body\":{\"min\":1,\"max\":1}}\n");
    m = read_msg(fd);
    cr_assert_eq(m.kind, HM_HP_WELCOME);
    hm_hp_msg_fini(&m);
    return fd;
}

Test(hp_server, hello_gets_welcome_with_the_chosen_version)
{
    int fd = client_connect(hm_listener_port(lis));
    hm_hp_msg m;

    send_str(fd, "{\"v\":1,\"type\":\"hello\",\"id\":1,\"body\":{\"min\":1,"
                 "\"max\":4,\"agent\":\"test\"}}\n");
    m = read_msg(fd);
    cr_assert_eq(m.kind, HM_HP_WELCOME);
    cr_assert_eq(m.id, 1);
    cr_assert_eq(m.u.welcome.version, 1);
    cr_assert_str_eq(m.u.welcome.agent, "hermes-test");
    hm_hp_msg_fini(&m);
    close(fd);
}

Test(hp_server, hello_without_a_common_version_is_refused_and_closed)
{
    int fd = client_connect(hm_listener_port(lis));

    send_str(fd, "{\"v\":2,\"type\":\"hello\",\"body\":{\"min\":2,"
                 "\"max\":3}}\n");
    expect_error(fd, HM_HP_NO_COMMON_VERSION);
    expect_closed(fd);
    close(fd);
}

Test(hp_server, ping_before_hello_gets_hello_required_and_continues)
{
    int fd = client_connect(hm_listener_port(lis));

    send_str(fd, "{\"v\":1,\"type\":\"ping\",\"id\":3}\n");
    expect_error(fd, HM_HP_HELLO_REQUIRED);
    send_str(fd, "{\"v\":1,\"type\":\"hello\",\"body\":{\"min\":1,"
                 "\"max\":1}}\n");
    hm_hp_msg m = read_msg(fd);
    cr_assert_eq(m.kind, HM_HP_WELCOME);
    hm_hp_msg_fini(&m);
    close(fd);
}

Test(hp_server, ping_gets_pong_with_the_same_id_and_body)
{
    int fd = hp_client();
    hm_hp_msg m;

    send_str(fd, "{\"v\":1,\"type\":\"ping\",\"id\":77,\"body\":{\"t\":5}}\n");
    m = read_msg(fd);
    cr_assert_eq(m.kind, HM_HP_PONG);
    cr_assert_eq(m.id, 77);
    cr_assert_eq(json_integer_value(json_object_get(m.body, "t")), 5);
    hm_hp_msg_fini(&m);
    close(fd);
}

Test(hp_server, msg_is_echoed_with_from_and_to_swapped)
{
    int fd = hp_client();
    hm_hp_msg m;

    send_str(fd, "{\"v\":1,\"type\":\"msg\",\"id\":9,\"from\":\"me\","
                 "\"to\":\"echo\",\"body\":{\"type\":\"t.note\","
                 "\"data\":\"h\xc3\xa9\"}}\n");
    m = read_msg(fd);
    cr_assert_eq(m.kind, HM_HP_MSG);
    cr_assert_eq(m.id, 9);
    cr_assert_str_eq(m.from, "echo");
    cr_assert_str_eq(m.to, "me");
    cr_assert_str_eq(json_string_value(m.u.msg.data), "h\xc3\xa9");
    hm_hp_msg_fini(&m);
    close(fd);
}

Test(hp_server, blank_lines_are_ignored)
{
    int fd = hp_client();

    send_str(fd, "\n  \r\n{\"v\":1,\"type\":\"ping\",\"id\":2}\n");
    expect_pong(fd, 2);
    close(fd);
}

/* A bad line that gets an error and leaves the connection usable. */
static void bad_line_continues(const char *line, hm_hp_code code)
{
    int fd = hp_client();

    send_str(fd, line);
    expect_error(fd, code);
    send_str(fd, "{\"v\":1,\"type\":\"ping\",\"id\":5}\n");
    expect_pong(fd, 5);
    close(fd);
}

/* A bad line that gets an error and then the connection closes. */
static void bad_line_closes(const char *line, hm_hp_code code)
{
    int fd = hp_client();

    send_str(fd, line);
    expect_error(fd, code);
    expect_closed(fd);
    close(fd);
}

Test(hp_server, invalid_utf8_gets_an_error_and_continues)
{
    bad_line_continues("{\"v\":1,\"type\":\"ping\",\"x\":\"\xff\"}\n",
                       HM_HP_INVALID_UTF8);
}

Test(hp_server, invalid_json_gets_an_error_and_continues)
{
    bad_line_continues("{\"v\":1,\"type\":\n", HM_HP_INVALID_JSON);
}

Test(hp_server, non_object_gets_an_error_and_continues)
{
    bad_line_continues("[\"ping\"]\n", HM_HP_NOT_OBJECT);
}

Test(hp_server, missing_version_gets_an_error_and_continues)
{
    bad_line_continues("{\"type\":\"ping\"}\n", HM_HP_MISSING_VERSION);
}

Test(hp_server, unknown_type_gets_an_error_and_continues)
{
    bad_line_continues("{\"v\":1,\"type\":\"warp\"}\n", HM_HP_UNKNOWN_TYPE);
}

Test(hp_server, bad_field_gets_an_error_and_continues)
{
    bad_line_continues("{\"v\":1,\"type\":\"ping\",\"id\":\"x\"}\n",
                       HM_HP_BAD_FIELD);
}

Test(hp_server, unsupported_version_gets_an_error_and_is_closed)
{
    bad_line_closes("{\"v\":7,\"type\":\"ping\"}\n", HM_HP_UNSUPPORTED_VERSION);
}

Test(hp_server, over_long_line_gets_an_error_and_is_closed)
{
    char big[2100];

    memset(big, 'x', sizeof big - 2);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    bad_line_closes(big, HM_HP_LINE_TOO_LONG);
}

Test(hp_server, bad_input_on_one_connection_leaves_others_alone)
{
    int good = hp_client();
    int bad = hp_client();

    send_str(bad, "{\"v\":9,\"type\":\"ping\"}\n");
    expect_error(bad, HM_HP_UNSUPPORTED_VERSION);
    expect_closed(bad);
    send_str(good, "{\"v\":1,\"type\":\"ping\",\"id\":8}\n");
    expect_pong(good, 8);
    close(bad);
    close(good);
}

/* A Hermes HP client: says hello, pings once welcomed, and reports the
 * pong by writing its id to a pipe the test reads. */
typedef struct hp_client {
    hm_hp_session session;
    hm_conn *conn; /* owned reference */
    int report_fd; /* the pipe's write end */
} hermes_client;

static void hp_client_frame(hermes_client *cl, hm_msg *msg)
{
    size_t len;
    const uint8_t *line = hm_net_msg_data(msg, &len);
    hm_hp_msg m;
    bool have;

    if (hm_hp_session_on_frame(&cl->session, cl->conn, line, len, &m, &have) !=
            HM_OK ||
        !have)
        return;
    if (m.kind == HM_HP_WELCOME) {
        hm_hp_envelope ping = {.type = "ping", .id = 2};

        hm_hp_session_send(cl->conn, &ping);
    } else if (m.kind == HM_HP_PONG) {
        uint8_t id = (uint8_t)m.id;

        if (write(cl->report_fd, &id, 1) != 1)
            abort(); /* not cr_assert: this is a runtime worker thread */
    }
    hm_hp_msg_fini(&m);
}

static hm_err hp_client_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hermes_client *cl = state;

    (void)ctx;
    if (hm_msg_type(msg) == &hm_net_opened_type) {
        cl->conn = hm_conn_ref(hm_net_msg_conn(msg));
        hm_hp_session_start(&cl->session, cl->conn, 1);
    } else if (hm_msg_type(msg) == &hm_net_frame_type) {
        hp_client_frame(cl, msg);
    }
    return HM_OK;
}

Test(hp_server, hermes_client_is_welcomed_and_gets_its_pong)
{
    static hermes_client cl; /* outlives the test: the runtime holds it */
    int report[2];
    hm_addr *a = NULL;
    uint8_t id = 0;

    cr_assert_eq(pipe(report), 0);
    cl.report_fd = report[1];
    hm_hp_session_init(&cl.session, HM_HP_CLIENT, "test-client");
    cr_assert_eq(hm_runtime_spawn(rt, "client",
                                  &(hm_receiver){.handler = hp_client_handle,
                                                 .state = &cl,
                                                 .pinned = true},
                                  &a),
                 HM_OK);
    cr_assert_eq(
        hm_net_connect(net,
                       &(hm_connect_config){.host = "127.0.0.1",
                                            .port = hm_listener_port(lis),
                                            .owner = a},
                       NULL),
        HM_OK);
    cr_assert_eq(read(report[0], &id, 1), 1);
    cr_assert_eq(id, 2);
    cr_assert(cl.session.greeted);
    cr_assert_eq(cl.session.version, 1);
    hm_addr_release(a);
    hm_net_stop(net);
    hm_conn_release(cl.conn);
}
