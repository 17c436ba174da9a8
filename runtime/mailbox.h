/* runtime/mailbox.h: the intrusive MPSC message queue owned by one receiver.
 *
 * Dmitry Vyukov's intrusive multi-producer single-consumer queue with an
 * embedded stub node, plus Pony's parking rule: the low bit of `head` means
 * "empty and parked". A push is one atomic exchange and tells the sender
 * whether the mailbox was parked; exactly that sender schedules the receiver.
 * Parking is one compare-and-swap by the consumer that succeeds only if the
 * mailbox is empty, so a message can never be stranded in a parked mailbox,
 * and once a consumer has parked the mailbox it never touches it again (the
 * runtime relies on this to reclaim parked receivers safely).
 *
 * Layout is public only because receivers embed the mailbox; fields are
 * private to runtime/. */
#ifndef HM_RUNTIME_MAILBOX_H
#define HM_RUNTIME_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hm_node {
    _Atomic(struct hm_node *) next; /* private */
} hm_node;

typedef struct hm_mailbox {
    _Atomic(uintptr_t) head; /* private: producers' end, low bit = parked */
    hm_node *tail;           /* private: consumer's end */
    hm_node stub;            /* private */
} hm_mailbox;

/* Initialises an empty, parked mailbox (the first push reports parked). */
void hm_mailbox_init(hm_mailbox *mb);

/* Appends `n` (taken: it must stay valid until popped). Any thread. Returns
 * true if the mailbox was parked: the caller must then schedule its owner. */
bool hm_mailbox_push(hm_mailbox *mb, hm_node *n);

/* Consumer only. Returns owned the oldest node, or NULL if the mailbox is
 * empty or a producer is between its two steps (try again later). */
hm_node *hm_mailbox_pop(hm_mailbox *mb);

/* Consumer only: the same as hm_mailbox_pop(), with the consumer's end
 * kept in `*tail` (loaded with hm_mailbox_tail(), stored back with
 * hm_mailbox_set_tail() before any other call on `mb`). `tail` shares a
 * cache line with `head`, which every producer exchanges: a turn that pops
 * a batch this way writes that line once, not once per message. */
hm_node *hm_mailbox_pop_at(hm_mailbox *mb, hm_node **tail);
static inline hm_node *hm_mailbox_tail(const hm_mailbox *mb)
{
    return mb->tail;
}
static inline void hm_mailbox_set_tail(hm_mailbox *mb, hm_node *tail)
{
    mb->tail = tail;
}

/* Consumer only. Puts `n` (a node it popped, owned) back at the front: the
 * next pop returns it, before everything queued. A mailbox with such a
 * node is not empty, so it does not park. The _at form works on a tail
 * kept by hm_mailbox_pop_at()'s caller. */
void hm_mailbox_unpop(hm_mailbox *mb, hm_node *n);
void hm_mailbox_unpop_at(hm_node **tail, hm_node *n);

/* Consumer only. Parks the mailbox if it is empty and returns true; after
 * that the consumer must not touch it. Returns false if a node is pending
 * (the consumer keeps ownership and must run again). */
bool hm_mailbox_park(hm_mailbox *mb);

/* Any thread: true if the mailbox is parked (so empty and not running). */
bool hm_mailbox_is_parked(hm_mailbox *mb);

/* Claims a parked mailbox for the caller as if it were its consumer: true on
 * success (the caller now owns the mailbox's receiver and must later park it
 * with hm_mailbox_park() or schedule it); false if it was not parked. */
bool hm_mailbox_claim(hm_mailbox *mb);

#endif
