/* runtime/mailbox.c: Vyukov's intrusive MPSC queue with Pony's parked bit.
 *
 * The queue always holds at least one node: `tail` is the next node to hand
 * out, and the stub is re-inserted when the last real node would otherwise
 * have to stay behind as the queue's anchor. That is what lets pop return
 * every real node (so messages are freed as soon as they are handled) at the
 * cost of one "producer mid-push" state, in which pop returns NULL although
 * the queue is not empty. See the header for the parking rule. */
#include "runtime/mailbox.h"

#define PARKED ((uintptr_t)1)

void hm_mailbox_init(hm_mailbox *mb)
{
    atomic_init(&mb->stub.next, NULL);
    mb->tail = &mb->stub;
    atomic_init(&mb->head, (uintptr_t)&mb->stub | PARKED);
}

bool hm_mailbox_push(hm_mailbox *mb, hm_node *n)
{
    uintptr_t prev;
    hm_node *p;

    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* acq_rel: the release half publishes the node's contents to whoever
     * swaps head next; the acquire half pairs with the release CAS in
     * hm_mailbox_park(), so a sender that finds the mailbox parked (and
     * schedules its owner) carries the last consumer's writes with it. */
    prev = atomic_exchange_explicit(&mb->head, (uintptr_t)n,
                                    memory_order_acq_rel);
    p = (hm_node *)(prev & ~PARKED);
    /* release: pairs with the acquire loads of `next` in hm_mailbox_pop(),
     * so the consumer sees the node's fields before it sees the link. */
    atomic_store_explicit(&p->next, n, memory_order_release);
    return (prev & PARKED) != 0;
}

hm_node *hm_mailbox_pop_at(hm_mailbox *mb, hm_node **tail_io)
{
    hm_node *tail = *tail_io;
    /* acquire: pairs with the release store of `next` in push. */
    hm_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    uintptr_t head;

    if (tail == &mb->stub) {
        if (!next)
            return NULL;
        *tail_io = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        *tail_io = next;
        return tail;
    }
    /* acquire: pairs with the exchange in push; if head moved past `tail`
     * a producer has swapped head but not linked yet. */
    head = atomic_load_explicit(&mb->head, memory_order_acquire);
    if ((hm_node *)head != tail)
        return NULL;
    hm_mailbox_push(mb, &mb->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        *tail_io = next;
        return tail;
    }
    return NULL;
}

hm_node *hm_mailbox_pop(hm_mailbox *mb)
{
    return hm_mailbox_pop_at(mb, &mb->tail);
}

void hm_mailbox_unpop_at(hm_node **tail, hm_node *n)
{
    /* relaxed: only the consumer reads the nodes from `tail` on up to the
     * head, and producers write only the head node's `next`, which `n`
     * (no longer in the queue) is not. Whoever consumes next gets this
     * store with the mailbox itself (a schedule or a claim). */
    atomic_store_explicit(&n->next, *tail, memory_order_relaxed);
    *tail = n;
}

void hm_mailbox_unpop(hm_mailbox *mb, hm_node *n)
{
    hm_mailbox_unpop_at(&mb->tail, n);
}

bool hm_mailbox_park(hm_mailbox *mb)
{
    uintptr_t expected = (uintptr_t)&mb->stub;

    if (mb->tail != &mb->stub)
        return false;
    /* release: pairs with the acq_rel exchange in push and the acquire load
     * in hm_mailbox_is_parked(): the next owner sees this consumer's writes.
     * Fails if any producer has swapped head since the stub was last
     * re-inserted, i.e. if anything is queued or being queued. */
    return atomic_compare_exchange_strong_explicit(
        &mb->head, &expected, expected | PARKED, memory_order_release,
        memory_order_relaxed);
}

bool hm_mailbox_is_parked(hm_mailbox *mb)
{
    /* acquire: pairs with the release CAS in hm_mailbox_park(). */
    return (atomic_load_explicit(&mb->head, memory_order_acquire) & PARKED) !=
           0;
}

bool hm_mailbox_claim(hm_mailbox *mb)
{
    uintptr_t expected = (uintptr_t)&mb->stub | PARKED;

    /* acquire: pairs with the release CAS in hm_mailbox_park(), like a
     * sender that found the mailbox parked. */
    return atomic_compare_exchange_strong_explicit(
        &mb->head, &expected, (uintptr_t)&mb->stub, memory_order_acquire,
        memory_order_relaxed);
}
