/* net/conn.h: a connection's handle, and the messages its owner receives.
 *
 * The handle is reference counted: any number of threads may hold it, and a
 * handle to a closed connection stays valid memory whose operations fail
 * with HM_ECLOSED, never a use-after-free. Every operation on a handle is
 * thread-safe and non-blocking: it queues the work for the connection's I/O
 * thread and wakes it (eventfd), so a receiver never touches the socket.
 *
 * The owner receives, in this order: "net.opened" once, then "net.frame"
 * for each frame, "net.eof" (half-open connections only) or "net.error" (a
 * framing error: reading stops and the owner should reply if it wishes and
 * close; if it does not, the connection closes itself after the linger
 * time), and "net.closed" exactly once, last. A failed outgoing connect
 * sends only "net.closed". Every one of them carries the connection's id as
 * hm_msg_arg() and a handle readable with hm_net_msg_conn(). */
#ifndef HM_NET_CONN_H
#define HM_NET_CONN_H

#include "net/net.h"

extern const hm_type hm_net_opened_type; /* "net.opened" */
extern const hm_type hm_net_frame_type;  /* "net.frame" */
extern const hm_type hm_net_eof_type;    /* "net.eof" */
extern const hm_type hm_net_error_type;  /* "net.error": err is the cause */
extern const hm_type hm_net_closed_type; /* "net.closed": err is the cause */

/* True if `m` (borrowed) is one of the five messages above. */
bool hm_net_msg_is_net(const hm_msg *m);
/* The connection a net message is about. Returns borrowed: valid while `m`
 * lives; take a reference with hm_conn_ref() to keep it. */
hm_conn *hm_net_msg_conn(const hm_msg *m);
/* The cause carried by "net.error" and "net.closed": HM_OK for a close the
 * owner asked for or a clean end of stream, else HM_ECONNRESET,
 * HM_ECONNREFUSED, HM_ETIMEDOUT, HM_EFULL, HM_ETOOBIG, HM_EPROTO,
 * HM_ECLOSED (net stopped) or HM_ESYS. HM_OK for the other types. */
hm_err hm_net_msg_err(const hm_msg *m);
/* A "net.frame"'s payload bytes. Returns borrowed: valid while `m` lives.
 * NULL with *len 0 for other types. */
const uint8_t *hm_net_msg_data(const hm_msg *m, size_t *len);

/* Takes another reference. Returns `c`. */
hm_conn *hm_conn_ref(hm_conn *c);
/* Drops a reference. Accepts NULL. */
void hm_conn_release(hm_conn *c);

/* The connection's id, unique within its net (never 0); the same value as
 * hm_msg_arg() of its net messages. `c` is borrowed. */
uint64_t hm_conn_id(const hm_conn *c);
/* "127.0.0.1:5000" or "[::1]:5000". Returns borrowed: valid while a
 * reference is held. */
const char *hm_conn_peer(const hm_conn *c);
/* False once the connection is closed or closing, or its write side was
 * shut: writes would fail. */
bool hm_conn_is_open(const hm_conn *c);

/* Bytes written through handles and not yet handed to the socket: never
 * more than the write-queue bound. */
size_t hm_conn_queued_len(const hm_conn *c);

/* Queues a copy of buf[0, len) (borrowed) for sending (or, when nothing is
 * queued and the I/O thread sleeps, sends it at once from this thread with
 * one non-blocking system call: ADR 0151). Bytes from one thread go out in
 * call order (bulk writes aside: hm_conn_write_bulk()); writes from several
 * threads are never interleaved inside one call. Errors: HM_ECLOSED,
 * HM_EFULL (the write-queue bound; see
 * hm_net_full_policy), HM_ETOOBIG (len alone is over the bound). */
hm_err hm_conn_write(hm_conn *c, const void *buf, size_t len);
/* The same without a copy: takes `buf` (allocated with hm_alloc) on HM_OK;
 * on error the caller still owns it. */
hm_err hm_conn_write_take(hm_conn *c, void *buf, size_t len);

/* Like hm_conn_write_take(), for bulk data that may wait: every other
 * write (hm_conn_write(), hm_conn_write_take()), even a later one, goes out
 * before the bulk bytes that have not started to be sent, so control
 * messages (a heartbeat) never wait behind a long bulk queue. Bulk writes
 * keep their order among themselves, and the others among themselves.
 * Bulk may fill the write-queue bound but for its last 64 KiB, which stay
 * for the others. Errors: as hm_conn_write_take(). */
hm_err hm_conn_write_bulk(hm_conn *c, void *buf, size_t len);

/* Graceful close: no more writes are accepted and no more frames are
 * delivered; what is queued is flushed, the write side is shut, the input
 * is drained until the peer closes (so our last bytes are not lost to a
 * reset), then the socket closes and "net.closed" (HM_OK) follows. Bounded
 * by the linger time, after which the close turns abortive. Idempotent. */
void hm_conn_close(hm_conn *c);
/* Abortive close: queued bytes are dropped and the peer gets a reset.
 * "net.closed" (HM_OK) follows. Idempotent. */
void hm_conn_abort(hm_conn *c);
/* Half-close: after the queued bytes are sent, shuts the write side (the
 * peer reads end of stream); frames keep arriving. Writes fail afterwards
 * with HM_ECLOSED. */
void hm_conn_shutdown_write(hm_conn *c);
/* Sets the idle timeout (see hm_conn_options.idle_timeout_ms; 0 turns it
 * off); its clock restarts when the I/O thread applies it. Thread-safe;
 * a later call wins. */
void hm_conn_set_idle_timeout(hm_conn *c, uint32_t timeout_ms);
/* Hands the connection to a new owner (borrowed; the connection takes a
 * reference). Frames read from the moment the I/O thread sees the change go
 * to `owner`; earlier messages stay with the old owner. */
void hm_conn_set_owner(hm_conn *c, hm_addr *owner);

#endif
