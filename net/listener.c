/* net/listener.c: listening sockets and the accept path.
 *
 * bind() and listen() run on the caller's thread, so "address in use" is a
 * synchronous error; the socket is then handed to an I/O thread. Accepted
 * connections are spread round-robin over all I/O threads: the accepting
 * thread creates the connection, asks the accept function for its owner,
 * and schedules it on its loop, which registers it and says "net.opened".
 *
 * Out of descriptors (EMFILE/ENFILE) must not spin a level-triggered loop:
 * the pending connection would stay readable forever. Each loop keeps one
 * spare descriptor; on EMFILE it closes the spare, accepts and closes the
 * connection (the peer sees a close instead of waiting in the backlog),
 * and reopens the spare. If even that fails the listener leaves epoll for
 * ACCEPT_PAUSE_MS and tries again. */
#include "net/net_impl.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define ACCEPTS_PER_WAKE 64
#define ACCEPT_PAUSE_MS 100

void hm_conn_format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
}

static void listener_release(hm_listener *l)
{
    /* acq_rel: the last release sees all other uses (see hm_conn_release). */
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        hm_free(l);
}

static void listener_schedule(hm_listener *l)
{
    /* acq_rel: only the thread that sets it pushes (see hm_conn_schedule). */
    if (atomic_exchange_explicit(&l->scheduled, true, memory_order_acq_rel))
        return;
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
    hm_loop_schedule(l->loop, &l->task);
}

/* Binds `host`:`port` and listens; the socket in *fd_out on HM_OK. */
static hm_err bind_and_listen(const hm_listen_config *cfg, int *fd_out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    char port[16];
    const char *host = cfg->host ? cfg->host : "::";
    int fd, one = 1, zero = 0, rc;

    snprintf(port, sizeof port, "%d", cfg->port);
    if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
        HM_LOG_WARN("NET-RESOLVE-FAIL", "%s: %s", host, gai_strerror(rc));
        return HM_EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) /* "::" also takes IPv4 (mapped) */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        listen(fd, cfg->backlog ? cfg->backlog : 511) < 0)
        goto fail;
    freeaddrinfo(ai);
    *fd_out = fd;
    return HM_OK;

fail:
    rc = errno;
    HM_LOG_WARN("NET-LISTEN-FAIL", "%s:%d: %s", host, cfg->port, strerror(rc));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc == EADDRINUSE ? HM_EEXIST : HM_ESYS;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

hm_err hm_net_listen(hm_net *net, const hm_listen_config *cfg,
                     hm_listener **out)
{
    hm_listener *l;
    hm_err err;
    int fd;

    if (!cfg->accept || cfg->port < 0 || cfg->port > 65535)
        return HM_EINVAL;
    /* acquire: pairs with the exchange in hm_net_stop(). */
    if (atomic_load_explicit(&net->stopped, memory_order_acquire))
        return HM_ECLOSED;
    if ((err = bind_and_listen(cfg, &fd)) != HM_OK)
        return err;
    l = hm_calloc(1, sizeof *l);
    l->task.kind = TASK_LISTENER;
    l->loop = hm_net_pick_loop(net);
    atomic_init(&l->refs, 2); /* the handle's and the loop's */
    l->fd = fd;
    l->port = bound_port(fd);
    l->accept = cfg->accept;
    l->accept_arg = cfg->accept_arg;
    l->opt = cfg->conn;
    listener_schedule(l);
    *out = l;
    return HM_OK;
}

int hm_listener_port(const hm_listener *l)
{
    return l->port;
}

void hm_listener_close(hm_listener *l)
{
    if (!l)
        return;
    /* relaxed: the schedule's release push publishes it. */
    atomic_store_explicit(&l->close_req, true, memory_order_relaxed);
    listener_schedule(l);
    listener_release(l); /* the handle's reference */
}

void hm_listener_stop(hm_listener *l)
{
    hm_listener **p = &l->loop->listeners;

    if (l->stopped)
        return;
    l->stopped = true;
    hm_loop_epoll_set(l->loop, l->fd, &l->task, &l->events, 0);
    close(l->fd);
    l->fd = -1;
    if (l->registered) {
        while (*p && *p != l)
            p = &(*p)->next;
        if (*p)
            *p = l->next;
        l->registered = false;
    }
    listener_release(l); /* the loop's reference */
}

void hm_listener_run_task(hm_listener *l)
{
    /* acq_rel: pairs with the exchange in listener_schedule(); cleared
     * first, so a close asked for after this schedules the task again. */
    atomic_exchange_explicit(&l->scheduled, false, memory_order_acq_rel);
    if (!l->stopped && !l->registered) {
        l->registered = true;
        l->next = l->loop->listeners;
        l->loop->listeners = l;
        /* acquire: pairs with the release store in hm_net_stop(). */
        if (!atomic_load_explicit(&l->loop->stopping, memory_order_acquire))
            hm_loop_epoll_set(l->loop, l->fd, &l->task, &l->events, EPOLLIN);
    }
    /* relaxed: the schedule's push published close_req; acquire:
     * stopping, as above. */
    if (!l->stopped &&
        (atomic_load_explicit(&l->close_req, memory_order_relaxed) ||
         atomic_load_explicit(&l->loop->stopping, memory_order_acquire)))
        hm_listener_stop(l);
    listener_release(l); /* the task's reference */
}

/* Out of descriptors: drop one pending connection through the spare
 * descriptor, or pause accepting if there is no spare. */
static void on_out_of_fds(hm_listener *l)
{
    hm_loop *loop = l->loop;
    int fd;

    if (loop->reserve_fd >= 0) {
        int e;

        close(loop->reserve_fd);
        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        e = errno;
        if (fd >= 0) {
            close(fd);
            /* relaxed: a counter. */
            atomic_fetch_add_explicit(&loop->accept_dropped, 1,
                                      memory_order_relaxed);
        }
        loop->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        /* Paused only if the spare is gone or another thread took the
         * descriptor it freed (EMFILE again). */
        if (loop->reserve_fd >= 0 && (fd >= 0 || (e != EMFILE && e != ENFILE)))
            return;
    }
    HM_LOG_WARN("NET-ACCEPT-PAUSE",
                "port %d: out of descriptors, pausing "
                "accept for %d ms",
                l->port, ACCEPT_PAUSE_MS);
    hm_loop_epoll_set(loop, l->fd, &l->task, &l->events, 0);
    l->resume_ms = hm_loop_now_ms() + ACCEPT_PAUSE_MS;
}

static void take_connection(hm_listener *l, int fd,
                            const struct sockaddr_storage *ss)
{
    hm_net *net = l->loop->net;
    hm_conn *c = hm_conn_create(net, hm_net_pick_loop(net), &l->opt);
    hm_addr *owner = NULL;
    char peer[HM_CONN_PEER_LEN];
    hm_err err;

    c->fd = fd;
    c->state = CONN_NEW_ACCEPTED;
    if (l->opt.send_buffer_len) {
        int len = (int)l->opt.send_buffer_len;

        /* A failure leaves the default buffer: nothing to recover. */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &len, sizeof len);
    }
    hm_conn_set_user_timeout(fd, l->opt.user_timeout_ms);
    if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
        memcpy(&c->remote, ss, sizeof c->remote);
    hm_conn_format_peer((const struct sockaddr *)ss, peer, sizeof peer);
    /* relaxed: a counter. */
    atomic_fetch_add_explicit(&l->loop->accepted, 1, memory_order_relaxed);
    err = l->accept(l->accept_arg, c->id, peer, &owner);
    if (err != HM_OK || !owner) {
        HM_LOG_DEBUG("NET-ACCEPT-REFUSED", "%s: %s", peer, hm_err_name(err));
        close(fd);
        c->fd = -1;
        c->state = CONN_CLOSED;
        hm_conn_release(c);
        return;
    }
    c->owner = owner;
    hm_conn_schedule(c); /* its loop registers it and says net.opened */
}

void hm_listener_on_event(hm_listener *l, uint32_t events)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE && !l->stopped; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            take_connection(l, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE) {
            on_out_of_fds(l);
            if (l->resume_ms)
                return;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            HM_LOG_WARN("NET-ACCEPT-FAIL", "port %d: %s", l->port,
                        strerror(errno));
        return;
    }
}

void hm_listener_on_deadline(hm_loop *loop, uint64_t now_ms, uint64_t *next_ms)
{
    for (hm_listener *l = loop->listeners; l; l = l->next) {
        if (!l->resume_ms)
            continue;
        if (l->resume_ms > now_ms) {
            if (l->resume_ms < *next_ms)
                *next_ms = l->resume_ms;
            continue;
        }
        l->resume_ms = 0;
        if (loop->reserve_fd < 0)
            loop->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        hm_loop_epoll_set(loop, l->fd, &l->task, &l->events, EPOLLIN);
    }
}
