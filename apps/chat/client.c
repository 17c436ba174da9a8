/* apps/chat/client.c: the terminal chat client's loop (see client.h).
 *
 * The loop: poll the keyboard and the socket, with a timeout that ends at
 * the next heartbeat. Keyboard bytes go to the line editor; a submitted line
 * becomes a command (command.c) encoded as a chat line (proto.c). Socket
 * bytes go through the line framer; each line is decoded (net/hp.h) and
 * printed above the input line: clear the line, print, redraw the prompt
 * and what the user has typed so far.
 *
 * Losing the server: the client closes the socket, tries the next server
 * given with --connect (each in turn, for about ten seconds), sends hello
 * and login again and, once logged in, joins its rooms again. A login
 * refused with name_taken right after a failover is retried: the dead
 * server's users stay registered until the cluster has declared it dead. */
#include "apps/chat/client.h"

#include "apps/chat/command.h"
#include "apps/chat/editor.h"
#include "apps/chat/server.h"
#include "net/frame.h"
#include "net/hp.h"
#include "net/line.h"
#include "runtime/alloc.h"
#include "runtime/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 3000
#define RECONNECT_TRIES 40 /* x 250 ms: about ten seconds of trying */
#define MAX_ROOMS 64

typedef struct client {
    const chat_client_config *cfg;
    int fd;        /* the socket; -1 while disconnected */
    size_t server; /* index in cfg->servers */
    hm_line_config line_cfg;
    hm_framer framer;
    hm_frame_reader *reader;
    chat_editor ed;
    bool tty;
    struct termios saved; /* the terminal's mode before raw mode */
    char room[CHAT_MAX_NAME + 1]; /* current room; "" if none */
    char rooms[MAX_ROOMS][CHAT_MAX_NAME + 1]; /* joined, for failover */
    size_t room_count;
    uint64_t next_id;
    uint64_t login_id; /* the pending login's id; 0: none */
    bool relogin;      /* logging in again after a failover */
    int login_tries;
    bool quit;
    int status;
    char pending[CHAT_EDITOR_MAX + 2]; /* piped input not yet a line */
    size_t pending_len;
    uint64_t next_ping_ms;
} client;

/* ------------------------------------------------------------ terminal */

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void redraw(client *c)
{
    char prompt[CHAT_MAX_NAME + 8];
    char line[CHAT_EDITOR_MAX + 64];
    size_t len;

    if (!c->tty)
        return;
    snprintf(prompt, sizeof prompt, "%s%s> ", c->room[0] ? "#" : "", c->room);
    len = chat_editor_render(&c->ed, prompt, line, sizeof line);
    write_all(c->cfg->out_fd, line, len);
}

/* Prints `text` on its own line above the input line. */
static void print_line(client *c, const char *text)
{
    if (c->tty)
        write_all(c->cfg->out_fd, "\r\x1b[K", 4);
    write_all(c->cfg->out_fd, text, strlen(text));
    write_all(c->cfg->out_fd, "\n", 1);
    redraw(c);
}

static void raw_mode(client *c)
{
    struct termios t;

    c->tty = isatty(c->cfg->in_fd) && tcgetattr(c->cfg->in_fd, &c->saved) == 0;
    if (!c->tty)
        return;
    t = c->saved;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
    t.c_iflag &= ~(tcflag_t)(IXON | ICRNL);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    tcsetattr(c->cfg->in_fd, TCSAFLUSH, &t);
}

static void restore_mode(client *c)
{
    if (!c->tty)
        return;
    write_all(c->cfg->out_fd, "\r\x1b[K", 4);
    tcsetattr(c->cfg->in_fd, TCSAFLUSH, &c->saved);
}

/* -------------------------------------------------------------- socket */

/* Connects to "HOST:PORT" (borrowed) within CONNECT_TIMEOUT_MS. Returns the
 * socket, or -1. */
static int dial(const char *hostport)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    struct pollfd p;
    char host[256], port_s[16];
    int port, fd, err = 0;
    socklen_t len = sizeof err;

    if (chat_parse_hostport(hostport, host, sizeof host, &port) != HM_OK)
        return -1;
    snprintf(port_s, sizeof port_s, "%d", port);
    if (getaddrinfo(host, port_s, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return -1;
    p = (struct pollfd){.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, CONNECT_TIMEOUT_MS) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

static void send_line(client *c, char *line, size_t len)
{
    if (c->fd >= 0)
        write_all(c->fd, line, len);
    hm_free(line);
}

/* Sends command `cmd` (its id is assigned here) and returns the id. */
static uint64_t send_cmd(client *c, chat_cmd *cmd)
{
    char *line;
    size_t len;

    cmd->id = ++c->next_id;
    if (chat_encode(chat_cmd_name(cmd->kind), cmd->id, chat_cmd_data(cmd),
                    &line, &len) == HM_OK)
        send_line(c, line, len);
    return cmd->id;
}

static void send_hello_and_login(client *c)
{
    json_t *body = hm_hp_hello_body(HM_HP_VERSION_MIN, HM_HP_VERSION_MAX,
                                    "hermes-chat-client/1");
    chat_cmd login = {.kind = CHAT_CMD_LOGIN};
    char *line;
    size_t len;

    if (hm_hp_encode(&(hm_hp_envelope){.type = "hello", .id = ++c->next_id,
                                       .body = body},
                     0, &line, &len) == HM_OK)
        send_line(c, line, len);
    json_decref(body);
    snprintf(login.name, sizeof login.name, "%s", c->cfg->user);
    c->login_id = send_cmd(c, &login);
}

static void send_ping(client *c)
{
    char *line;
    size_t len;

    if (hm_hp_encode(&(hm_hp_envelope){.type = "ping", .id = ++c->next_id},
                     0, &line, &len) == HM_OK)
        send_line(c, line, len);
}

static void disconnect(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    hm_frame_reader_destroy(c->reader);
    c->reader = NULL;
}

/* Connects to the current server or, failing that, the next ones, for
 * about ten seconds. False if none answered. */
static bool connect_any(client *c)
{
    char note[300];

    for (int t = 0; t < RECONNECT_TRIES && !c->quit; t++) {
        const char *srv = c->cfg->servers[c->server];
        if ((c->fd = dial(srv)) >= 0) {
            c->reader = hm_frame_reader_create(&c->framer);
            snprintf(note, sizeof note, "* connected to %s", srv);
            print_line(c, note);
            send_hello_and_login(c);
            return true;
        }
        c->server = (c->server + 1) % c->cfg->server_count;
        nanosleep(&(struct timespec){.tv_nsec = 250 * 1000 * 1000}, NULL);
    }
    return false;
}

/* --------------------------------------------------------------- rooms */

static void remember_room(client *c, const char *room)
{
    for (size_t i = 0; i < c->room_count; i++)
        if (strcmp(c->rooms[i], room) == 0)
            return;
    if (c->room_count < MAX_ROOMS)
        strcpy(c->rooms[c->room_count++], room);
}

static void forget_room(client *c, const char *room)
{
    for (size_t i = 0; i < c->room_count; i++) {
        if (strcmp(c->rooms[i], room) != 0)
            continue;
        memmove(c->rooms[i], c->rooms[i + 1],
                (--c->room_count - i) * sizeof c->rooms[0]);
        break;
    }
    if (strcmp(c->room, room) == 0)
        strcpy(c->room, c->room_count ? c->rooms[c->room_count - 1] : "");
}

/* Logged in again after a failover: join the rooms we were in. */
static void rejoin_rooms(client *c)
{
    for (size_t i = 0; i < c->room_count; i++) {
        chat_cmd join = {.kind = CHAT_CMD_JOIN};
        strcpy(join.room, c->rooms[i]);
        send_cmd(c, &join);
    }
}

/* ---------------------------------------------------------- from server */

/* The answer to our login. */
static void on_login_answer(client *c, const char *type, const json_t *data)
{
    const char *code = json_string_value(json_object_get(data, "code"));

    c->login_id = 0;
    if (strcmp(type, "chat.ok") == 0) {
        c->login_tries = 0;
        if (c->relogin)
            rejoin_rooms(c);
        c->relogin = false;
        return;
    }
    if (c->relogin && code && strcmp(code, "name_taken") == 0 &&
        ++c->login_tries < RECONNECT_TRIES) {
        chat_cmd login = {.kind = CHAT_CMD_LOGIN};
        nanosleep(&(struct timespec){.tv_nsec = 250 * 1000 * 1000}, NULL);
        snprintf(login.name, sizeof login.name, "%s", c->cfg->user);
        c->login_id = send_cmd(c, &login);
        return;
    }
    c->quit = true; /* we cannot log in: say why (below) and exit */
    c->status = 1;
}

static void on_server_line(client *c, const uint8_t *line, size_t len)
{
    hm_hp_msg m;
    hm_hp_fail fail;
    char text[CHAT_MAX_TEXT + 200];

    if (hm_hp_is_blank(line, len) || hm_hp_decode(line, len, &m, &fail) !=
                                         HM_OK)
        return;
    if (m.kind == HM_HP_ERROR) {
        snprintf(text, sizeof text, "! protocol error %s: %s",
                 m.u.error.code_name, m.u.error.reason);
        print_line(c, text);
    } else if (m.kind == HM_HP_MSG) {
        bool login = m.id && m.id == c->login_id;
        if (login)
            on_login_answer(c, m.u.msg.type, m.u.msg.data);
        if ((!login || !c->login_id) &&
            chat_format_line(m.u.msg.type, m.u.msg.data, text, sizeof text))
            print_line(c, text);
    }
    hm_hp_msg_fini(&m);
}

/* Reads what the socket has. False when the connection is gone. */
static bool read_socket(client *c)
{
    size_t avail, len;
    uint8_t *space = hm_frame_reader_space(c->reader, &avail);
    ssize_t n = read(c->fd, space, avail);
    const uint8_t *frame;
    hm_err err;

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    hm_frame_reader_commit(c->reader, (size_t)n);
    while ((err = hm_frame_reader_next(c->reader, &frame, &len)) == HM_OK)
        on_server_line(c, frame, len);
    return err == HM_EAGAIN;
}

/* ------------------------------------------------------------ keyboard */

static void on_typed_line(client *c, const char *line)
{
    chat_input in;
    char echo[CHAT_MAX_TEXT + 80];

    chat_input_parse(line, c->room, &in);
    switch (in.kind) {
    case CHAT_INPUT_NONE:
        break;
    case CHAT_INPUT_QUIT:
        c->quit = true;
        break;
    case CHAT_INPUT_HELP:
    case CHAT_INPUT_ERROR:
        print_line(c, in.note);
        break;
    case CHAT_INPUT_SEND:
        if (in.cmd.kind == CHAT_CMD_MSG) {
            snprintf(echo, sizeof echo, "you -> %s: %s", in.cmd.name,
                     in.cmd.text);
            print_line(c, echo);
        } else if (in.cmd.kind == CHAT_CMD_JOIN) {
            remember_room(c, in.cmd.room);
            strcpy(c->room, in.cmd.room);
        } else if (in.cmd.kind == CHAT_CMD_LEAVE) {
            forget_room(c, in.cmd.room);
        }
        send_cmd(c, &in.cmd);
        redraw(c);
        break;
    }
}

/* Piped input: split it into lines. */
static void on_piped_bytes(client *c, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            c->pending[c->pending_len] = '\0';
            c->pending_len = 0;
            on_typed_line(c, c->pending);
        } else if (c->pending_len < sizeof c->pending - 1 && buf[i] != '\r') {
            c->pending[c->pending_len++] = buf[i];
        }
    }
}

static void on_key(client *c, unsigned char b)
{
    char line[CHAT_EDITOR_MAX + 1];

    switch (chat_editor_key(&c->ed, b)) {
    case CHAT_EDIT_NONE:
        break;
    case CHAT_EDIT_REDRAW:
        redraw(c);
        break;
    case CHAT_EDIT_SUBMIT:
        chat_editor_take(&c->ed, line, sizeof line);
        redraw(c);
        on_typed_line(c, line);
        break;
    case CHAT_EDIT_EOF:
    case CHAT_EDIT_INTERRUPT:
        c->quit = true;
        break;
    }
}

static void read_keyboard(client *c)
{
    char buf[512];
    ssize_t n = read(c->cfg->in_fd, buf, sizeof buf);

    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) {
        c->quit = true; /* end of input */
        return;
    }
    if (!c->tty) {
        on_piped_bytes(c, buf, (size_t)n);
        return;
    }
    for (ssize_t i = 0; i < n && !c->quit; i++)
        on_key(c, (unsigned char)buf[i]);
}

/* ---------------------------------------------------------------- loop */

/* The server is gone: fail over, or give up. */
static void on_lost(client *c)
{
    char note[300];

    snprintf(note, sizeof note, "! connection to %s lost",
             c->cfg->servers[c->server]);
    print_line(c, note);
    disconnect(c);
    if (c->cfg->server_count < 2) {
        c->quit = true;
        c->status = 1;
        return;
    }
    c->server = (c->server + 1) % c->cfg->server_count;
    c->relogin = true;
    c->login_tries = 0;
    if (!connect_any(c)) {
        print_line(c, "! no server answers");
        c->quit = true;
        c->status = 1;
    }
}

static void loop_once(client *c)
{
    struct pollfd p[2] = {{.fd = c->cfg->in_fd, .events = POLLIN},
                          {.fd = c->fd, .events = POLLIN}};
    uint64_t now = hm_clock_now_ms();
    int wait = c->next_ping_ms > now ? (int)(c->next_ping_ms - now) : 0;

    if (poll(p, 2, wait) < 0 && errno != EINTR) {
        c->quit = true;
        return;
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR) && !read_socket(c)) {
        on_lost(c);
        return;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
        read_keyboard(c);
    if ((now = hm_clock_now_ms()) >= c->next_ping_ms) {
        send_ping(c);
        c->next_ping_ms = now + c->cfg->ping_ms;
    }
}

int chat_client_run(const chat_client_config *cfg_in)
{
    chat_client_config cfg = *cfg_in;
    client c = {.cfg = &cfg, .fd = -1};

    if (!cfg.ping_ms)
        cfg.ping_ms = 10000;
    c.line_cfg.max_line_len = CHAT_MAX_LINE;
    hm_line_framer_init(&c.framer, &c.line_cfg);
    chat_editor_init(&c.ed);
    raw_mode(&c);
    c.next_ping_ms = hm_clock_now_ms() + cfg.ping_ms;
    if (!connect_any(&c)) {
        print_line(&c, "! no server answers");
        c.status = 1;
    }
    while (c.fd >= 0 && !c.quit)
        loop_once(&c);
    if (c.fd >= 0 && c.status == 0) {
        chat_cmd logout = {.kind = CHAT_CMD_LOGOUT};
        send_cmd(&c, &logout);
    }
    disconnect(&c);
    restore_mode(&c);
    return c.status;
}
