/* cluster/outbox.h: the per-peer queue of routed messages, and the
 * receiver's duplicate filter.
 *
 * Every message routed to another node goes through that node's outbox. It
 * numbers the messages 1, 2, 3... (`seq`) and keeps each one until the peer
 * acknowledges it, so the delivery guarantees of docs/cluster.md §7 hold:
 *
 *   - in order: the driver writes messages in seq order on one link;
 *   - link down, peer not dead: messages wait, within `max_count` and
 *     `max_bytes` (then pushes fail with HM_EFULL); when a link to the same
 *     incarnation returns, hm_outbox_rewind() makes the written but
 *     unacknowledged ones go again, in order;
 *   - no duplicates: the receiver's hm_inbox drops a seq it has delivered;
 *   - peer dead, left or replaced: hm_outbox_discard() hands every held
 *     message to a callback (count it undeliverable, fail the request).
 *
 * Key decision: acknowledgement is cumulative and lazy (hm_inbox_ack_due:
 * every `HM_INBOX_ACK_EVERY` messages or `HM_INBOX_ACK_MS`), so it costs one
 * small line per batch, and replay after a reconnection is bounded by the
 * outbox bounds. Pure: no I/O, no clock; not thread-safe (one owner). */
#ifndef HM_CLUSTER_OUTBOX_H
#define HM_CLUSTER_OUTBOX_H

#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_INBOX_ACK_EVERY 64 /* acknowledge after so many messages */
#define HM_INBOX_ACK_MS 100   /* or after so long */

typedef struct hm_outbox hm_outbox;

typedef struct hm_outbox_config {
    size_t max_count; /* messages held, sent or not [10000] */
    size_t max_bytes; /* bytes held [8 MiB] */
} hm_outbox_config;

/* Called by hm_outbox_discard for each message still held. `line` is
 * borrowed for the call. */
typedef void (*hm_outbox_drop_fn)(void *arg, const char *line, size_t len,
                                  uint64_t seq);

/* Create an empty outbox; `cfg` (borrowed) may be NULL for the defaults.
 * Returns owned; never NULL. */
hm_outbox *hm_outbox_create(const hm_outbox_config *cfg);

/* Frees every held message. Accepts NULL. */
void hm_outbox_destroy(hm_outbox *o);

/* Queue a copy of `line` (`len` bytes, borrowed) and write its seq to
 * `*seq`. Errors: HM_EFULL if it would pass max_count or max_bytes. */
hm_err hm_outbox_push(hm_outbox *o, const char *line, size_t len,
                      uint64_t *seq);

/* The oldest message not yet written, marked written. Returns false if
 * there is none. `*line` is borrowed until the message is acknowledged,
 * discarded or the outbox destroyed. */
bool hm_outbox_next(hm_outbox *o, const char **line, size_t *len,
                    uint64_t *seq);

/* The peer has every message up to `seq`: free them. A seq not yet
 * written, or older than what is held, is ignored (HM_EPROTO returned, so
 * the driver can log a confused peer). */
hm_err hm_outbox_ack(hm_outbox *o, uint64_t seq);

/* The link went down: every written, unacknowledged message will be
 * written again by hm_outbox_next, in order. */
void hm_outbox_rewind(hm_outbox *o);

/* The peer is gone: hand every held message to `fn` (may be NULL), free
 * them all, and return how many there were. Numbering continues (a new
 * incarnation gets a new hm_inbox on its side, which accepts any seq). */
size_t hm_outbox_discard(hm_outbox *o, hm_outbox_drop_fn fn, void *arg);

/* Messages held (written or not), and their bytes. */
size_t hm_outbox_count(const hm_outbox *o);
size_t hm_outbox_bytes(const hm_outbox *o);

/* Messages held and not written yet, and their bytes (to size a write). */
void hm_outbox_unsent(const hm_outbox *o, size_t *count, size_t *bytes);

/* The receiver's side, per (peer, incarnation): caller-owned storage,
 * zero-initialised (`hm_inbox in = {0};`). */
typedef struct hm_inbox {
    uint64_t delivered; /* private: highest seq delivered */
    uint64_t acked;     /* private: highest seq acknowledged */
    uint64_t acked_ms;  /* private: when we last acknowledged */
    bool fresh;         /* private: true once the first seq was seen */
} hm_inbox;

/* Whether the message numbered `seq` is new (deliver it) or a replay of
 * one already delivered (drop it). The first seq seen is accepted whatever
 * it is: after a reset the sender's numbering continues. */
bool hm_inbox_accept(hm_inbox *in, uint64_t seq);

/* Whether an acknowledgement is due at `now_ms`; if so, `*seq` is the seq
 * to acknowledge and the inbox counts it as sent. */
bool hm_inbox_ack_due(hm_inbox *in, uint64_t now_ms, uint64_t *seq);

#endif
