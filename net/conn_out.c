/* net/conn_out.c: a connection's output queue, on its I/O thread only.
 *
 * Handles push writes on a lock-free stack (conn.c); this file moves them
 * onto the output queue in order, sends the queue many writes per
 * sendmsg, and frees what the socket took. The queue keeps one shape,
 * [a half-sent head] [non-bulk writes] [bulk writes], so a control write
 * overtakes bulk data that has not begun. The key decision is who may
 * touch the socket's output side: one holder at a time, the bit W_SENDING
 * in conn->wflags, taken by this thread or by a handle sending directly
 * (ADR 0151); this thread never waits for it except to close the socket
 * for good. */
#include "net/net_impl.h"

#include "runtime/alloc.h"

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define IOV_BATCH 64 /* iovecs per sendmsg */

/* The writes pushed by handles, oldest first, parted in two lists that
 * each keep their order: the others (in *pfifo, last node *plast) and the
 * bulk ones (*bfifo, *blast); NULL when empty. The rest of a direct send
 * (conn.c, ADR 0151) is in neither: it is returned in *front. */
static void take_stack(hm_conn *c, wnode **pfifo, wnode **plast,
                       wnode **bfifo, wnode **blast, wnode **front)
{
    /* acquire: pairs with the release CAS in conn.c's push_write(). */
    wnode *n = atomic_exchange_explicit(&c->wstack, NULL, memory_order_acquire);

    *pfifo = *plast = *bfifo = *blast = *front = NULL;
    while (n) { /* the stack is newest first: reverse it */
        wnode *next = n->next;

        if (n->front) { /* the rest of a direct send: see take_writes */
            *front = n;
        } else if (n->bulk) {
            if (!*blast)
                *blast = n;
            n->next = *bfifo;
            *bfifo = n;
        } else {
            if (!*plast)
                *plast = n;
            n->next = *pfifo;
            *pfifo = n;
        }
        n = next;
    }
}

/* Where the next non-bulk writes go: after the node returned (NULL: at
 * the head). The queue is always [a half-sent head] [non-bulk writes]
 * [bulk writes], so with no bulk node queued (the tail is not bulk) that
 * is the tail, and otherwise the walk passes only the few non-bulk nodes
 * ahead of the bulk ones. */
static wnode *priority_end(hm_conn *c)
{
    wnode *at = NULL, *n = c->out_head;

    if (!c->out_tail || !c->out_tail->bulk)
        return c->out_tail;
    if (n && c->out_off > 0) { /* begun: it stays first, whatever it is */
        at = n;
        n = n->next;
    }
    while (n && !n->bulk) {
        at = n;
        n = n->next;
    }
    return at;
}

/* Moves the writes pushed by handles onto the output queue, oldest first:
 * the others ahead of every bulk node not begun, bulk ones at the end. */
void hm_conn_take_writes(hm_conn *c)
{
    wnode *pfifo, *plast, *bfifo, *blast, *front;

    take_stack(c, &pfifo, &plast, &bfifo, &blast, &front);
    if (pfifo) {
        wnode *at = priority_end(c);

        if (!at) {
            plast->next = c->out_head;
            c->out_head = pfifo;
        } else {
            plast->next = at->next;
            at->next = pfifo;
        }
        if (c->out_tail == at)
            c->out_tail = plast;
    }
    if (bfifo) {
        if (c->out_tail)
            c->out_tail->next = bfifo;
        else
            c->out_head = bfifo;
        c->out_tail = blast;
    }
    if (front) {
        /* It was reserved when nothing was queued, and sent while we
         * did not hold the output side, so whatever is queued came after
         * it and none of it was sent (ADR 0151): it goes first. */
        HM_ASSERT(c->out_off == 0);
        front->front = false;
        front->next = c->out_head;
        c->out_head = front;
        if (!c->out_tail)
            c->out_tail = front;
    }
}

/* ------------------------------------------------- the output side
 *
 * The socket's output side (send, shutdown, close) has one holder at a
 * time, W_SENDING in conn->wflags: a handle sending directly (conn.c) or
 * this thread. This thread never waits for a handle, except to close the
 * socket for good: if a handle holds it, W_IO_WANTS asks the handle to
 * schedule the connection when it lets go (ADR 0151). */

/* Takes the output side now, or returns false and leaves W_IO_WANTS. */
bool hm_conn_io_acquire(hm_conn *c)
{
    /* relaxed: the CAS below decides. */
    uint8_t v = atomic_load_explicit(&c->wflags, memory_order_relaxed);

    if (c->io_sending)
        return true;
    for (;;) {
        if (!(v & W_SENDING)) {
            /* acquire: pairs with conn.c's give_output(): the handle's
             * send is complete before ours. */
            if (atomic_compare_exchange_weak_explicit(
                    &c->wflags, &v,
                    (uint8_t)((v | W_SENDING) & ~W_IO_WANTS),
                    memory_order_acquire, memory_order_relaxed))
                break;
        } else if (atomic_compare_exchange_weak_explicit(
                       &c->wflags, &v, (uint8_t)(v | W_IO_WANTS),
                       memory_order_relaxed, memory_order_relaxed)) {
            return false; /* the holder's give_output() schedules us */
        }
    }
    c->io_sending = true;
    return true;
}

/* Lets go of the output side. Handles may send directly again only if
 * the connection is open and nothing is queued or half sent here. */
void hm_conn_io_release(hm_conn *c)
{
    uint8_t direct = c->state == CONN_OPEN && !c->out_head &&
                             !c->shut_wr_pending
                         ? W_DIRECT
                         : 0;
    /* relaxed: a first guess; the CAS below decides. */
    uint8_t v = atomic_load_explicit(&c->wflags, memory_order_relaxed);

    /* release: pairs with the acquire in conn.c's take_output(). */
    while (!atomic_compare_exchange_weak_explicit(
        &c->wflags, &v,
        (uint8_t)((v & ~(W_SENDING | W_DIRECT)) | direct),
        memory_order_release, memory_order_relaxed))
        ;
    c->io_sending = false;
}

/* Takes the output side for good, before the socket closes: waits for a
 * handle's send in progress (one non-blocking system call). */
void hm_conn_io_acquire_for_good(hm_conn *c)
{
    if (!c->io_sending) {
        /* relaxed: a first guess; the CAS below decides. */
        uint8_t v = atomic_load_explicit(&c->wflags, memory_order_relaxed);

        for (;;) {
            /* acquire: as in hm_conn_io_acquire(). */
            if (!(v & W_SENDING) &&
                atomic_compare_exchange_weak_explicit(
                    &c->wflags, &v, (uint8_t)W_SENDING, memory_order_acquire,
                    memory_order_relaxed))
                break;
            if (v & W_SENDING) {
                sched_yield();
                v = atomic_load_explicit(&c->wflags, memory_order_relaxed);
            }
        }
        c->io_sending = true;
    }
    /* relaxed: we hold it; this only stops new direct sends. */
    atomic_store_explicit(&c->wflags, (uint8_t)W_SENDING,
                          memory_order_relaxed);
}

void hm_conn_drop_output(hm_conn *c)
{
    hm_conn_take_writes(c);
    while (c->out_head) {
        wnode *n = c->out_head;

        c->out_head = n->next;
        if (n->owned_data)
            hm_free(n->data);
        hm_free(n);
    }
    c->out_tail = NULL;
    c->out_off = 0;
    /* relaxed: a gauge (hm_conn_queued_len()). */
    atomic_store_explicit(&c->queued_len, 0, memory_order_relaxed);
}

static void consume_output(hm_conn *c, size_t sent)
{
    /* relaxed: a byte budget, see conn.c's reserve(). */
    atomic_fetch_sub_explicit(&c->queued_len, sent, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->loop->bytes_out, sent, memory_order_relaxed);
    while (sent > 0) {
        wnode *n = c->out_head;
        size_t left = n->len - c->out_off;

        if (sent < left) {
            c->out_off += (uint32_t)sent; /* < one write, < max_queue */
            return;
        }
        sent -= left;
        c->out_off = 0;
        c->out_head = n->next;
        if (!c->out_head)
            c->out_tail = NULL;
        if (n->owned_data)
            hm_free(n->data);
        hm_free(n);
    }
}

/* Sends as much of the output queue as the socket takes, many writes per
 * system call. MSG_NOSIGNAL: a reset peer is an error, not a SIGPIPE. */
hm_err hm_conn_flush_output(hm_conn *c)
{
    for (bool first = true; c->out_head; first = false) {
        struct iovec iov[IOV_BATCH];
        struct msghdr mh = {.msg_iov = iov};
        size_t off = c->out_off;
        ssize_t n;

        /* A write pushed while this loop sends (a peer that reads as fast
         * as we write keeps it here) takes its place now, ahead of the bulk
         * not begun, instead of after the whole queue. No rest of a direct
         * send can be among them: this thread holds the output side.
         * relaxed: a hint; hm_conn_take_writes() takes the stack with the
         * acquire exchange. */
        if (!first && atomic_load_explicit(&c->wstack, memory_order_relaxed))
            hm_conn_take_writes(c);

        for (wnode *w = c->out_head; w && mh.msg_iovlen < IOV_BATCH;
             w = w->next) {
            iov[mh.msg_iovlen].iov_base = w->data + off;
            iov[mh.msg_iovlen++].iov_len = w->len - off;
            off = 0;
        }
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return HM_OK;
            return hm_conn_errno(errno);
        }
        consume_output(c, (size_t)n);
    }
    return HM_OK;
}
