/* cluster/outbox.c: a ring of held messages with three cursors.
 *
 * Messages sit in a ring in seq order: [head, sent) are written and await
 * an acknowledgement, [sent, tail) are not written yet. An ack moves head,
 * a write moves sent, a rewind moves sent back to head. Seqs are contiguous,
 * so the seq of any slot is first_seq plus its distance from head and no
 * per-message seq needs searching. The ring doubles up to max_count.
 *
 * The lines' bytes are copied into chunks of CHUNK_LEN bytes filled in
 * order; a chunk counts the held lines in it and is freed when the last
 * one is acknowledged or discarded (the chunk being filled is reused), so
 * a message costs no allocation of its own (ADR 0170). */
#include "cluster/outbox.h"

#include "runtime/alloc.h"

#include <string.h>

#define CHUNK_LEN (64u * 1024u)

typedef struct chunk {
    size_t used, cap; /* bytes of data[] filled, and its size */
    size_t live;      /* held lines in it */
    char data[];
} chunk;

typedef struct item {
    const char *line; /* in `c` */
    size_t len;
    chunk *c;
} item;

struct hm_outbox {
    hm_outbox_config cfg;
    chunk *cur; /* owned: the chunk being filled (NULL: none yet) */
    item *ring;
    size_t cap;        /* slots in ring (a power of two) */
    size_t head;       /* oldest held message */
    size_t count;      /* held messages */
    size_t sent;       /* how many of the held ones are written */
    size_t bytes;      /* bytes held */
    size_t sent_bytes; /* bytes of the written ones */
    uint64_t head_seq; /* seq of the message at head */
};

hm_outbox *hm_outbox_create(const hm_outbox_config *cfg)
{
    hm_outbox *o = hm_calloc(1, sizeof *o);
    o->cfg.max_count = cfg && cfg->max_count ? cfg->max_count : 10000;
    o->cfg.max_bytes = cfg && cfg->max_bytes ? cfg->max_bytes : 8u << 20;
    o->head_seq = 1;
    return o;
}

static item *slot(const hm_outbox *o, size_t i)
{
    return &o->ring[(o->head + i) & (o->cap - 1)];
}

/* Frees the `n` oldest held messages. */
static void drop_oldest(hm_outbox *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        item *it = slot(o, 0);
        o->bytes -= it->len;
        if (--it->c->live == 0) {
            if (it->c == o->cur)
                o->cur->used = 0; /* empty: fill it again */
            else
                hm_free(it->c);
        }
        it->line = NULL;
        o->head = (o->head + 1) & (o->cap - 1);
        o->count--;
        o->head_seq++;
    }
}

void hm_outbox_destroy(hm_outbox *o)
{
    if (!o)
        return;
    hm_outbox_discard(o, NULL, NULL);
    hm_free(o->cur);
    hm_free(o->ring);
    hm_free(o);
}

static void grow(hm_outbox *o)
{
    size_t cap = o->cap ? 2 * o->cap : 16;
    item *ring = hm_calloc(cap, sizeof *ring);
    for (size_t i = 0; i < o->count; i++)
        ring[i] = *slot(o, i);
    hm_free(o->ring);
    o->ring = ring;
    o->cap = cap;
    o->head = 0;
}

/* Room for `len` bytes in the chunk being filled: a new chunk if it has
 * none (the old one is freed by its last line, or now if it holds none). */
static chunk *room(hm_outbox *o, size_t len)
{
    chunk *c = o->cur;
    size_t cap;

    if (c && c->cap - c->used >= len)
        return c;
    if (c && c->live == 0)
        hm_free(c);
    cap = len > CHUNK_LEN ? len : CHUNK_LEN;
    c = hm_alloc(sizeof *c + cap);
    c->used = c->live = 0;
    c->cap = cap;
    o->cur = c;
    return c;
}

hm_err hm_outbox_push(hm_outbox *o, const char *line, size_t len,
                      uint64_t *seq)
{
    chunk *c;

    if (o->count + 1 > o->cfg.max_count || o->bytes + len > o->cfg.max_bytes)
        return HM_EFULL;
    if (o->count == o->cap)
        grow(o);
    c = room(o, len);
    memcpy(c->data + c->used, line, len);
    *slot(o, o->count) =
        (item){.line = c->data + c->used, .len = len, .c = c};
    c->used += len;
    c->live++;
    *seq = o->head_seq + o->count;
    o->count++;
    o->bytes += len;
    return HM_OK;
}

bool hm_outbox_next(hm_outbox *o, const char **line, size_t *len, uint64_t *seq)
{
    if (o->sent == o->count)
        return false;
    item *it = slot(o, o->sent);
    *line = it->line;
    *len = it->len;
    *seq = o->head_seq + o->sent;
    o->sent++;
    o->sent_bytes += it->len;
    return true;
}

hm_err hm_outbox_ack(hm_outbox *o, uint64_t seq)
{
    if (seq < o->head_seq)
        return HM_OK; /* a repeated or crossing ack: already freed */
    if (seq >= o->head_seq + o->sent)
        return HM_EPROTO; /* acknowledges what we never wrote */
    size_t n = (size_t)(seq - o->head_seq + 1), before = o->bytes;
    drop_oldest(o, n);
    o->sent -= n;
    o->sent_bytes -= before - o->bytes; /* all of them were written */
    return HM_OK;
}

void hm_outbox_rewind(hm_outbox *o)
{
    o->sent = 0;
    o->sent_bytes = 0;
}

size_t hm_outbox_discard(hm_outbox *o, hm_outbox_drop_fn fn, void *arg)
{
    size_t n = o->count;
    for (size_t i = 0; fn && i < n; i++)
        fn(arg, slot(o, i)->line, slot(o, i)->len, o->head_seq + i);
    drop_oldest(o, n);
    o->sent = 0;
    o->sent_bytes = 0;
    return n;
}

size_t hm_outbox_count(const hm_outbox *o)
{
    return o->count;
}

size_t hm_outbox_bytes(const hm_outbox *o)
{
    return o->bytes;
}

void hm_outbox_unsent(const hm_outbox *o, size_t *count, size_t *bytes)
{
    *count = o->count - o->sent;
    *bytes = o->bytes - o->sent_bytes;
}

/* ---------------------------------------------------------------- inbox */

bool hm_inbox_accept(hm_inbox *in, uint64_t seq)
{
    if (in->fresh && seq <= in->delivered)
        return false; /* a replay after a reconnection */
    if (!in->fresh)
        in->acked = seq - 1; /* nothing before the first seq is owed */
    in->fresh = true;
    in->delivered = seq;
    return true;
}

bool hm_inbox_ack_due(hm_inbox *in, uint64_t now_ms, uint64_t *seq)
{
    if (in->delivered <= in->acked)
        return false;
    if (in->delivered - in->acked < HM_INBOX_ACK_EVERY &&
        now_ms - in->acked_ms < HM_INBOX_ACK_MS)
        return false;
    in->acked = in->delivered;
    in->acked_ms = now_ms;
    *seq = in->delivered;
    return true;
}
