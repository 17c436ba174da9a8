/* tests/runtime/test_mailbox.c: the MPSC mailbox and its parking rule. */
#include "runtime/mailbox.h"

#include <criterion/criterion.h>
#include <pthread.h>

typedef struct item {
    hm_node node;
    int value;
} item;

Test(mailbox, a_new_mailbox_is_parked_and_the_first_push_says_so)
{
    hm_mailbox mb;
    item a = {.value = 1};

    hm_mailbox_init(&mb);
    cr_assert(hm_mailbox_is_parked(&mb));
    cr_assert(hm_mailbox_push(&mb, &a.node));
    cr_assert_not(hm_mailbox_is_parked(&mb));
}

Test(mailbox, pop_returns_messages_in_send_order)
{
    hm_mailbox mb;
    item it[5];

    hm_mailbox_init(&mb);
    for (int i = 0; i < 5; i++) {
        it[i].value = i;
        hm_mailbox_push(&mb, &it[i].node);
    }
    for (int i = 0; i < 5; i++) {
        item *got = (item *)hm_mailbox_pop(&mb);
        cr_assert_not_null(got);
        cr_assert_eq(got->value, i);
    }
    cr_assert_null(hm_mailbox_pop(&mb));
}

Test(mailbox, only_the_push_to_a_parked_mailbox_reports_parked)
{
    hm_mailbox mb;
    item a, b;

    hm_mailbox_init(&mb);
    cr_assert(hm_mailbox_push(&mb, &a.node));
    cr_assert_not(hm_mailbox_push(&mb, &b.node));
}

Test(mailbox, park_fails_while_messages_are_queued)
{
    hm_mailbox mb;
    item a;

    hm_mailbox_init(&mb);
    hm_mailbox_push(&mb, &a.node);
    cr_assert_not(hm_mailbox_park(&mb));
    cr_assert_eq(hm_mailbox_pop(&mb), &a.node);
    cr_assert(hm_mailbox_park(&mb));
    cr_assert(hm_mailbox_is_parked(&mb));
}

Test(mailbox, a_push_after_parking_reports_parked_again)
{
    hm_mailbox mb;
    item a, b;

    hm_mailbox_init(&mb);
    hm_mailbox_push(&mb, &a.node);
    hm_mailbox_pop(&mb);
    cr_assert(hm_mailbox_park(&mb));
    cr_assert(hm_mailbox_push(&mb, &b.node));
    cr_assert_eq(hm_mailbox_pop(&mb), &b.node);
}

Test(mailbox, claim_takes_a_parked_mailbox_once)
{
    hm_mailbox mb;
    item a;

    hm_mailbox_init(&mb);
    cr_assert(hm_mailbox_claim(&mb));
    cr_assert_not(hm_mailbox_claim(&mb));
    /* Claimed: a push does not report parked, the claimer owns it. */
    cr_assert_not(hm_mailbox_push(&mb, &a.node));
    cr_assert_not(hm_mailbox_park(&mb));
    cr_assert_eq(hm_mailbox_pop(&mb), &a.node);
    cr_assert(hm_mailbox_park(&mb));
}

#define PRODUCERS 4
#define PER_PRODUCER 100000

typedef struct pitem {
    hm_node node;
    int producer, seq;
} pitem;

static hm_mailbox shared_mb;
static pitem items[PRODUCERS][PER_PRODUCER];
static _Atomic int schedules;

static void *produce(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        items[p][i].producer = p;
        items[p][i].seq = i;
        if (hm_mailbox_push(&shared_mb, &items[p][i].node))
            atomic_fetch_add(&schedules, 1);
    }
    return NULL;
}

Test(mailbox, concurrent_producers_keep_each_producers_order, .timeout = 30)
{
    pthread_t t[PRODUCERS];
    int next[PRODUCERS] = {0};
    int total = 0;

    hm_mailbox_init(&shared_mb);
    for (int p = 0; p < PRODUCERS; p++)
        pthread_create(&t[p], NULL, produce, (void *)(intptr_t)p);
    while (total < PRODUCERS * PER_PRODUCER) {
        pitem *it = (pitem *)hm_mailbox_pop(&shared_mb);
        if (!it)
            continue;
        cr_assert_eq(it->seq, next[it->producer]);
        next[it->producer]++;
        total++;
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(t[p], NULL);
    cr_assert_eq(atomic_load(&schedules), 1); /* parked only at start */
    cr_assert(hm_mailbox_park(&shared_mb));
}
