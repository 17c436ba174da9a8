/* apps/mqtt/trie.c: the topic-level trie behind topic.c and retain.c (see
 * trie_impl.h for the layout).
 *
 * The child table is the hot path of matching. Level hashes are FNV-1a,
 * computed once when a node is made and kept in the node, so a probe
 * compares a 32-bit hash before it compares bytes, and growing the table
 * never rehashes a string. */
#include "apps/mqtt/trie_impl.h"

#include "runtime/alloc.h"

#include <string.h>

static uint32_t hash_level(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static bool is_level(const char *s, size_t len, const char *lit)
{
    return len == 1 && s[0] == lit[0];
}

static mqtt_trie_node *node_create(mqtt_trie_node *parent, const char *level,
                                   size_t len)
{
    mqtt_trie_node *n = hm_calloc(1, sizeof *n);
    n->parent = parent;
    n->level = hm_strndup(level, len);
    n->level_len = len;
    n->hash = hash_level(level, len);
    return n;
}

mqtt_trie_node *mqtt_trie_root_create(void)
{
    return node_create(NULL, "", 0);
}

size_t mqtt_trie_level_len(const char *s, const char *end)
{
    const char *slash = memchr(s, '/', (size_t)(end - s));
    return (size_t)((slash ? slash : end) - s);
}

/* The slot where `level` is, or the empty slot where it would go. */
static size_t find_slot(const mqtt_trie_node *n, const char *level, size_t len,
                        uint32_t hash)
{
    size_t mask = n->slot_count - 1;
    size_t i = hash & mask;
    for (;;) {
        const mqtt_trie_node *c = n->slots[i];
        if (!c || (c->hash == hash && c->level_len == len &&
                   memcmp(c->level, level, len) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

mqtt_trie_node *mqtt_trie_child(const mqtt_trie_node *n, const char *level,
                                size_t len)
{
    if (is_level(level, len, "+"))
        return n->plus;
    if (is_level(level, len, "#"))
        return n->hash_child;
    if (n->child_count == 0)
        return NULL;
    return n->slots[find_slot(n, level, len, hash_level(level, len))];
}

static void grow(mqtt_trie_node *n)
{
    size_t old_count = n->slot_count;
    mqtt_trie_node **old = n->slots;

    n->slot_count = old_count ? old_count * 2 : 4;
    n->slots = hm_calloc(n->slot_count, sizeof *n->slots);
    for (size_t i = 0; i < old_count; i++) {
        mqtt_trie_node *c = old[i];
        if (c)
            n->slots[find_slot(n, c->level, c->level_len, c->hash)] = c;
    }
    hm_free(old);
}

mqtt_trie_node *mqtt_trie_child_add(mqtt_trie_node *n, const char *level,
                                    size_t len)
{
    mqtt_trie_node **wild = is_level(level, len, "+")   ? &n->plus
                            : is_level(level, len, "#") ? &n->hash_child
                                                        : NULL;
    uint32_t hash;
    size_t i;

    if (wild) {
        if (!*wild)
            *wild = node_create(n, level, len);
        return *wild;
    }
    /* Keep the table at most half full so probes stay short. */
    if (2 * (n->child_count + 1) > n->slot_count)
        grow(n);
    hash = hash_level(level, len);
    i = find_slot(n, level, len, hash);
    if (!n->slots[i]) {
        n->slots[i] = node_create(n, level, len);
        n->child_count++;
    }
    return n->slots[i];
}

/* Backward-shift deletion: after emptying slot `i`, move later members of
 * the same probe run back so that every lookup still finds them. */
static void remove_literal(mqtt_trie_node *n, mqtt_trie_node *c)
{
    size_t mask = n->slot_count - 1;
    size_t i = find_slot(n, c->level, c->level_len, c->hash);
    size_t j = i;

    n->slots[i] = NULL;
    n->child_count--;
    for (;;) {
        size_t home;
        j = (j + 1) & mask;
        if (!n->slots[j])
            break;
        home = n->slots[j]->hash & mask;
        /* Move slots[j] into the hole at i unless its home lies in the
         * cyclic range (i, j]. */
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            n->slots[i] = n->slots[j];
            n->slots[j] = NULL;
            i = j;
        }
    }
}

static bool is_empty(const mqtt_trie_node *n)
{
    return !n->value && n->child_count == 0 && !n->plus && !n->hash_child;
}

static void node_free(mqtt_trie_node *n)
{
    hm_free(n->slots);
    hm_free(n->level);
    hm_free(n);
}

void mqtt_trie_prune(mqtt_trie_node *n)
{
    while (n->parent && is_empty(n)) {
        mqtt_trie_node *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash_child == n)
            p->hash_child = NULL;
        else
            remove_literal(p, n);
        node_free(n);
        n = p;
    }
}

mqtt_trie_node *mqtt_trie_next_child(const mqtt_trie_node *n, size_t *cursor)
{
    while (*cursor < n->slot_count) {
        mqtt_trie_node *c = n->slots[(*cursor)++];
        if (c)
            return c;
    }
    return NULL;
}

/* Any one child of `n`, detached from it, or NULL. */
static mqtt_trie_node *take_child(mqtt_trie_node *n)
{
    mqtt_trie_node *c;
    size_t cursor = 0;
    if ((c = n->plus)) {
        n->plus = NULL;
        return c;
    }
    if ((c = n->hash_child)) {
        n->hash_child = NULL;
        return c;
    }
    if ((c = mqtt_trie_next_child(n, &cursor))) {
        n->slots[cursor - 1] = NULL; /* no probing needed: all go */
        n->child_count--;
    }
    return c;
}

void mqtt_trie_destroy(mqtt_trie_node *root, void (*free_value)(void *))
{
    mqtt_trie_node *n = root;
    while (n) {
        mqtt_trie_node *c = take_child(n);
        if (c) {
            n = c;
            continue;
        }
        if (n->value && free_value)
            free_value(n->value);
        c = n == root ? NULL : n->parent;
        node_free(n);
        n = c;
    }
}

mqtt_trie_node *mqtt_trie_find(mqtt_trie_node *root, const char *path,
                               size_t len, bool create)
{
    const char *p = path, *end = path + len;
    mqtt_trie_node *n = root;

    while (n && p <= end) {
        size_t llen = mqtt_trie_level_len(p, end);
        n = create ? mqtt_trie_child_add(n, p, llen)
                   : mqtt_trie_child(n, p, llen);
        p += llen + 1;
    }
    return n;
}
