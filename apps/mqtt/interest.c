/* apps/mqtt/interest.c: the nodes' aggregated filters (interest.h).
 *
 * The matcher is an mqtt_topic_tree whose subscriber tokens are node
 * numbers. Each node's filters are also kept in an open-addressing set of
 * owned strings (FNV-1a, linear probing, at most half full, backward-shift
 * deletion), so listing or dropping one node's filters does not need a
 * walk of the tree. Nodes are few (a full-mesh cluster has tens), so they
 * are an array searched linearly. */
#include "apps/mqtt/interest.h"

#include "runtime/alloc.h"

#include <string.h>

typedef struct str_set {
    char **slots; /* NULL = empty; owned NUL-terminated strings */
    size_t *lens;
    size_t cap; /* power of two, or 0 */
    size_t count;
} str_set;

typedef struct node_filters {
    uint32_t node;
    str_set set;
} node_filters;

struct mqtt_interest {
    mqtt_topic_tree *tree;
    node_filters *nodes;
    size_t node_count, node_cap;
};

/* ------------------------------------------------------------ str_set */

static size_t hash_str(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return (size_t)(h ^ (h >> 32));
}

static size_t set_find(const str_set *s, const char *str, size_t len)
{
    size_t mask = s->cap - 1, i = hash_str(str, len) & mask;

    while (s->slots[i] &&
           !(s->lens[i] == len && memcmp(s->slots[i], str, len) == 0))
        i = (i + 1) & mask;
    return i;
}

static void set_grow(str_set *s)
{
    char **old = s->slots;
    size_t *old_lens = s->lens, old_cap = s->cap;

    s->cap = old_cap ? old_cap * 2 : 8;
    s->slots = hm_calloc(s->cap, sizeof *s->slots);
    s->lens = hm_calloc(s->cap, sizeof *s->lens);
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i]) {
            size_t j = set_find(s, old[i], old_lens[i]);

            s->slots[j] = old[i];
            s->lens[j] = old_lens[i];
        }
    }
    hm_free(old);
    hm_free(old_lens);
}

static bool set_put(str_set *s, const char *str, size_t len)
{
    size_t i;

    if (2 * (s->count + 1) > s->cap)
        set_grow(s);
    i = set_find(s, str, len);
    if (s->slots[i])
        return false;
    s->slots[i] = hm_strndup(str, len);
    s->lens[i] = len;
    s->count++;
    return true;
}

static bool set_remove(str_set *s, const char *str, size_t len)
{
    size_t mask, i, j;

    if (s->count == 0)
        return false;
    mask = s->cap - 1;
    i = set_find(s, str, len);
    if (!s->slots[i])
        return false;
    hm_free(s->slots[i]);
    s->slots[i] = NULL;
    s->count--;
    for (j = i;;) { /* backward shift: no tombstones */
        size_t home;

        j = (j + 1) & mask;
        if (!s->slots[j])
            break;
        home = hash_str(s->slots[j], s->lens[j]) & mask;
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            s->slots[i] = s->slots[j];
            s->lens[i] = s->lens[j];
            s->slots[j] = NULL;
            i = j;
        }
    }
    return true;
}

static void set_fini(str_set *s)
{
    for (size_t i = 0; i < s->cap; i++)
        hm_free(s->slots[i]);
    hm_free(s->slots);
    hm_free(s->lens);
    memset(s, 0, sizeof *s);
}

/* --------------------------------------------------------------- nodes */

static node_filters *find_node(const mqtt_interest *in, uint32_t node)
{
    for (size_t i = 0; i < in->node_count; i++)
        if (in->nodes[i].node == node)
            return &in->nodes[i];
    return NULL;
}

static node_filters *get_node(mqtt_interest *in, uint32_t node)
{
    node_filters *nf = find_node(in, node);

    if (nf)
        return nf;
    if (in->node_count == in->node_cap) {
        in->node_cap = in->node_cap ? in->node_cap * 2 : 4;
        in->nodes = hm_realloc(in->nodes, in->node_cap * sizeof *in->nodes);
    }
    nf = &in->nodes[in->node_count++];
    memset(nf, 0, sizeof *nf);
    nf->node = node;
    return nf;
}

mqtt_interest *mqtt_interest_create(void)
{
    mqtt_interest *in = hm_calloc(1, sizeof *in);

    in->tree = mqtt_topic_tree_create();
    return in;
}

void mqtt_interest_destroy(mqtt_interest *in)
{
    if (!in)
        return;
    for (size_t i = 0; i < in->node_count; i++)
        set_fini(&in->nodes[i].set);
    hm_free(in->nodes);
    mqtt_topic_tree_destroy(in->tree);
    hm_free(in);
}

bool mqtt_interest_add(mqtt_interest *in, uint32_t node, const char *filter,
                       size_t len)
{
    node_filters *nf;

    if (node == 0 || !mqtt_topic_filter_is_valid(filter, len))
        return false;
    nf = get_node(in, node);
    if (!set_put(&nf->set, filter, len))
        return false;
    mqtt_topic_tree_add(in->tree, filter, len, node, 0, NULL);
    return true;
}

bool mqtt_interest_remove(mqtt_interest *in, uint32_t node, const char *filter,
                          size_t len)
{
    node_filters *nf = find_node(in, node);

    if (!nf || !set_remove(&nf->set, filter, len))
        return false;
    mqtt_topic_tree_remove(in->tree, filter, len, node);
    return true;
}

void mqtt_interest_drop(mqtt_interest *in, uint32_t node)
{
    node_filters *nf = find_node(in, node);

    if (!nf)
        return;
    for (size_t i = 0; i < nf->set.cap; i++)
        if (nf->set.slots[i])
            mqtt_topic_tree_remove(in->tree, nf->set.slots[i], nf->set.lens[i],
                                   node);
    set_fini(&nf->set);
    *nf = in->nodes[--in->node_count];
}

size_t mqtt_interest_count(const mqtt_interest *in, uint32_t node)
{
    const node_filters *nf = find_node(in, node);

    return nf ? nf->set.count : 0;
}

void mqtt_interest_foreach(const mqtt_interest *in, uint32_t node,
                           void (*fn)(void *arg, const char *filter,
                                      size_t len),
                           void *arg)
{
    const node_filters *nf = find_node(in, node);

    if (!nf)
        return;
    for (size_t i = 0; i < nf->set.cap; i++)
        if (nf->set.slots[i])
            fn(arg, nf->set.slots[i], nf->set.lens[i]);
}

void mqtt_interest_match(const mqtt_interest *in, const char *topic, size_t len,
                         mqtt_deliveries *out)
{
    mqtt_topic_tree_match(in->tree, topic, len, out);
}
