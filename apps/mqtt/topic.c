/* apps/mqtt/topic.c: topic rules and the subscription tree.
 *
 * Each trie node that ends some subscribed filter holds a subscriber set: an
 * open-addressing table of (subscriber, QoS) keyed by the subscriber token
 * (0 marks an empty slot, which is why tokens are non-zero), so subscribing
 * the ten-thousandth client to one popular filter is O(1) expected rather
 * than a scan of the other 9999, and a match copies the set slot by slot.
 * Matching is a depth-first walk with an explicit stack kept in the
 * caller's mqtt_deliveries, so it neither recurses nor allocates once warm. */
#include "apps/mqtt/topic.h"

#include "apps/mqtt/trie_impl.h"
#include "runtime/alloc.h"

#include <string.h>

/* ----------------------------------------------------------- validation */

bool mqtt_topic_name_is_valid(const char *s, size_t len)
{
    if (len == 0 || len > MQTT_TOPIC_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '+' || s[i] == '#' || s[i] == '\0')
            return false;
    return true;
}

bool mqtt_topic_filter_is_valid(const char *s, size_t len)
{
    if (len == 0 || len > MQTT_TOPIC_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool starts_level = i == 0 || s[i - 1] == '/';
        bool ends_level = i + 1 == len || s[i + 1] == '/';
        if (s[i] == '\0')
            return false;
        if (s[i] == '+' && !(starts_level && ends_level))
            return false;
        if (s[i] == '#' && !(starts_level && i + 1 == len))
            return false;
    }
    return true;
}

bool mqtt_topic_matches(const char *filter, size_t filter_len,
                        const char *topic, size_t topic_len)
{
    const char *f = filter, *fend = filter + filter_len;
    const char *t = topic, *tend = topic + topic_len;

    if (topic_len > 0 && topic[0] == '$' && filter_len > 0 &&
        (filter[0] == '+' || filter[0] == '#'))
        return false; /* [MQTT-4.7.2-1] */
    for (;;) {
        size_t flen = mqtt_trie_level_len(f, fend);
        size_t tlen;
        if (flen == 1 && f[0] == '#')
            return true; /* matches the parent level and everything under */
        if (t > tend)
            return false; /* the topic ran out of levels first */
        tlen = mqtt_trie_level_len(t, tend);
        if (!(flen == 1 && f[0] == '+') &&
            (flen != tlen || memcmp(f, t, flen) != 0))
            return false;
        f += flen + 1;
        t += tlen + 1;
        if (f > fend) /* the filter is done: the topic must be too */
            return t > tend;
        if (t > tend && !(fend - f == 1 && f[0] == '#'))
            return false;
    }
}

static bool is_wild(const char *level, size_t len)
{
    return len == 1 && (level[0] == '+' || level[0] == '#');
}

bool mqtt_topic_filter_covers(const char *outer, size_t outer_len,
                              const char *inner, size_t inner_len)
{
    const char *o = outer, *oend = outer + outer_len;
    const char *i = inner, *iend = inner + inner_len;

    /* A "$" topic is reachable by `inner` only through a literal first
     * level, which a leading wildcard in `outer` does not match. */
    if (inner_len > 0 && inner[0] == '$' &&
        is_wild(outer, mqtt_trie_level_len(outer, oend)))
        return false;
    for (;;) {
        size_t olen = mqtt_trie_level_len(o, oend);
        size_t ilen;
        if (olen == 1 && o[0] == '#')
            return true; /* covers this level and everything below */
        if (i > iend)    /* inner ended: "a" is covered by "a/#" only */
            return false;
        ilen = mqtt_trie_level_len(i, iend);
        if (ilen == 1 && i[0] == '#')
            return false; /* only "#" covers "#" */
        if (!(olen == 1 && o[0] == '+') &&
            (is_wild(i, ilen) || olen != ilen || memcmp(o, i, olen) != 0))
            return false;
        o += olen + 1;
        i += ilen + 1;
        if (o > oend)
            return i > iend;
        if (i > iend)
            return oend - o == 1 && o[0] == '#';
    }
}

/* -------------------------------------------------------- subscriber set */

typedef struct sub_set {
    mqtt_delivery *slots; /* subscriber 0 = empty */
    size_t cap;           /* power of two */
    size_t count;
} sub_set;

static size_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: tokens are often small sequential numbers,
     * which would cluster under a plain mask. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (size_t)x;
}

static size_t set_find(const sub_set *s, uint64_t sub)
{
    size_t mask = s->cap - 1, i = mix64(sub) & mask;
    while (s->slots[i].subscriber && s->slots[i].subscriber != sub)
        i = (i + 1) & mask;
    return i;
}

static void set_grow(sub_set *s)
{
    mqtt_delivery *old = s->slots;
    size_t old_cap = s->cap;
    s->cap = old_cap ? old_cap * 2 : 4;
    s->slots = hm_calloc(s->cap, sizeof *s->slots);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].subscriber)
            s->slots[set_find(s, old[i].subscriber)] = old[i];
    hm_free(old);
}

/* Insert or update; true if new. */
static bool set_put(sub_set *s, uint64_t sub, uint8_t qos)
{
    size_t i;
    if (2 * (s->count + 1) > s->cap)
        set_grow(s);
    i = set_find(s, sub);
    if (s->slots[i].subscriber) {
        s->slots[i].qos = qos;
        return false;
    }
    s->slots[i].subscriber = sub;
    s->slots[i].qos = qos;
    s->count++;
    return true;
}

/* Remove with backward shift (see trie.c's remove_literal); false if
 * absent. */
static bool set_remove(sub_set *s, uint64_t sub)
{
    size_t mask, i, j;
    if (s->count == 0)
        return false;
    mask = s->cap - 1;
    i = set_find(s, sub);
    if (!s->slots[i].subscriber)
        return false;
    s->slots[i].subscriber = 0;
    s->count--;
    for (j = i;;) {
        size_t home;
        j = (j + 1) & mask;
        if (!s->slots[j].subscriber)
            break;
        home = mix64(s->slots[j].subscriber) & mask;
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            s->slots[i] = s->slots[j];
            s->slots[j].subscriber = 0;
            i = j;
        }
    }
    return true;
}

static void set_free(void *p)
{
    sub_set *s = p;
    hm_free(s->slots);
    hm_free(s);
}

/* --------------------------------------------------------------- the tree */

struct mqtt_topic_tree {
    mqtt_trie_node *root;
    size_t count;
    mqtt_topic_filter_fn observer; /* or NULL */
    void *observer_arg;
};

void mqtt_topic_tree_observe(mqtt_topic_tree *t, mqtt_topic_filter_fn fn,
                             void *arg)
{
    t->observer = fn;
    t->observer_arg = arg;
}

mqtt_topic_tree *mqtt_topic_tree_create(void)
{
    mqtt_topic_tree *t = hm_calloc(1, sizeof *t);
    t->root = mqtt_trie_root_create();
    return t;
}

void mqtt_topic_tree_destroy(mqtt_topic_tree *t)
{
    if (!t)
        return;
    mqtt_trie_destroy(t->root, set_free);
    hm_free(t);
}

size_t mqtt_topic_tree_count(const mqtt_topic_tree *t)
{
    return t->count;
}

hm_err mqtt_topic_tree_add(mqtt_topic_tree *t, const char *filter, size_t len,
                           uint64_t subscriber, uint8_t qos, bool *is_new_out)
{
    mqtt_trie_node *n;
    bool is_new;

    if (subscriber == 0 || qos > 2 || !mqtt_topic_filter_is_valid(filter, len))
        return HM_EINVAL;
    n = mqtt_trie_find(t->root, filter, len, true);
    if (!n->value) {
        n->value = hm_calloc(1, sizeof(sub_set));
        if (t->observer)
            t->observer(t->observer_arg, filter, len, true);
    }
    is_new = set_put(n->value, subscriber, qos);
    if (is_new)
        t->count++;
    if (is_new_out)
        *is_new_out = is_new;
    return HM_OK;
}

hm_err mqtt_topic_tree_remove(mqtt_topic_tree *t, const char *filter,
                              size_t len, uint64_t subscriber)
{
    mqtt_trie_node *n;
    if (len == 0 || len > MQTT_TOPIC_MAX_LEN)
        return HM_ENOTFOUND;
    n = mqtt_trie_find(t->root, filter, len, false);
    if (!n || !n->value || !set_remove(n->value, subscriber))
        return HM_ENOTFOUND;
    t->count--;
    if (((sub_set *)n->value)->count == 0) {
        set_free(n->value);
        n->value = NULL;
        mqtt_trie_prune(n);
        if (t->observer)
            t->observer(t->observer_arg, filter, len, false);
    }
    return HM_OK;
}

/* ----------------------------------------------------------------- match */

#define END_OF_TOPIC SIZE_MAX

typedef struct walk_item {
    const mqtt_trie_node *node;
    size_t pos; /* where the next level starts, or END_OF_TOPIC */
} walk_item;

void mqtt_deliveries_init(mqtt_deliveries *d)
{
    memset(d, 0, sizeof *d);
}

void mqtt_deliveries_fini(mqtt_deliveries *d)
{
    if (!d)
        return;
    hm_free(d->items);
    hm_free(d->scratch);
    memset(d, 0, sizeof *d);
}

static void collect(mqtt_deliveries *d, const mqtt_trie_node *n, size_t *nodes)
{
    const sub_set *s = n->value;
    if (!s || s->count == 0)
        return;
    if (d->cap - d->count < s->count) {
        while (d->cap - d->count < s->count)
            d->cap = d->cap ? d->cap * 2 : 16;
        d->items = hm_realloc(d->items, d->cap * sizeof *d->items);
    }
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].subscriber)
            d->items[d->count++] = s->slots[i];
    (*nodes)++;
}

static void push(mqtt_deliveries *d, size_t *top, const mqtt_trie_node *n,
                 size_t pos)
{
    if ((*top + 1) * sizeof(walk_item) > d->scratch_len) {
        d->scratch_len =
            d->scratch_len ? d->scratch_len * 2 : 32 * sizeof(walk_item);
        d->scratch = hm_realloc(d->scratch, d->scratch_len);
    }
    ((walk_item *)d->scratch)[(*top)++] = (walk_item){n, pos};
}

/* One delivery per subscriber at its highest QoS [MQTT-3.3.5-1]. A hash
 * of subscriber -> slot in `items`, built in the walk's scratch memory
 * (the walk is over by now), makes this O(count) rather than a sort. */
static void merge_duplicates(mqtt_deliveries *d)
{
    size_t cap = 16, w = 0;
    size_t *slots; /* index + 1 into items; 0 = empty */

    while (cap < 2 * d->count)
        cap *= 2;
    if (d->scratch_len < cap * sizeof(size_t)) {
        d->scratch_len = cap * sizeof(size_t);
        d->scratch = hm_realloc(d->scratch, d->scratch_len);
    }
    slots = d->scratch;
    memset(slots, 0, cap * sizeof(size_t));
    for (size_t r = 0; r < d->count; r++) {
        mqtt_delivery it = d->items[r];
        size_t i = mix64(it.subscriber) & (cap - 1);
        while (slots[i] && d->items[slots[i] - 1].subscriber != it.subscriber)
            i = (i + 1) & (cap - 1);
        if (slots[i]) {
            if (it.qos > d->items[slots[i] - 1].qos)
                d->items[slots[i] - 1].qos = it.qos;
            continue;
        }
        d->items[w] = it; /* w <= r: compacting in place is safe */
        slots[i] = ++w;
    }
    d->count = w;
}

void mqtt_topic_tree_match(const mqtt_topic_tree *t, const char *topic,
                           size_t len, mqtt_deliveries *out)
{
    /* [MQTT-4.7.2-1]: no wildcard at the first level matches "$...". */
    bool dollar = len > 0 && topic[0] == '$';
    size_t top = 0, nodes = 0;

    out->count = 0;
    push(out, &top, t->root, 0);
    while (top > 0) {
        walk_item it = ((walk_item *)out->scratch)[--top];
        bool wild_ok = !(dollar && it.node == t->root);
        const mqtt_trie_node *c;
        size_t llen, next;

        if (it.node->hash_child && wild_ok)
            collect(out, it.node->hash_child, &nodes);
        if (it.pos == END_OF_TOPIC) {
            collect(out, it.node, &nodes);
            continue;
        }
        llen = mqtt_trie_level_len(topic + it.pos, topic + len);
        next = it.pos + llen == len ? END_OF_TOPIC : it.pos + llen + 1;
        if (it.node->plus && wild_ok)
            push(out, &top, it.node->plus, next);
        if ((c = mqtt_trie_child(it.node, topic + it.pos, llen)))
            push(out, &top, c, next);
    }
    if (nodes > 1)
        merge_duplicates(out);
}
