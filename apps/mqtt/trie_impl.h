/* apps/mqtt/trie_impl.h: the topic-level trie shared by the subscription
 * tree (topic.c) and the retained-message store (retain.c). Private to
 * apps/mqtt/.
 *
 * A node stands for one level of a topic or filter ("a/+/c" is the path
 * root -> "a" -> "+" -> "c"). Literal children live in an open-addressing
 * hash table keyed by the level's bytes (linear probing, power-of-two
 * capacity, at most half full, backward-shift deletion so there are no
 * tombstones), so finding the child for a level costs one hash of the level
 * and an expected O(1) probe, however many siblings there are. The two
 * wildcard children, `+` and `#`, are kept in their own fields because
 * matching asks for them at every level. Every walk is iterative: a
 * 30000-level topic must not become a 30000-frame recursion on a worker
 * thread's stack. */
#ifndef HM_APPS_MQTT_TRIE_IMPL_H
#define HM_APPS_MQTT_TRIE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mqtt_trie_node mqtt_trie_node;
struct mqtt_trie_node {
    mqtt_trie_node *parent; /* NULL for the root */
    char *level;            /* owned, NUL-terminated for debugging */
    size_t level_len;
    uint32_t hash;
    mqtt_trie_node **slots;     /* literal children; NULL = empty slot */
    size_t slot_count;          /* capacity, a power of two, or 0 */
    size_t child_count;         /* literal children only */
    mqtt_trie_node *plus;       /* the "+" child */
    mqtt_trie_node *hash_child; /* the "#" child */
    void *value;                /* the user's: subscribers or a message */
};

/* Returns owned: an empty root. Never NULL. */
mqtt_trie_node *mqtt_trie_root_create(void);

/* The child of `n` for `level` ("+" and "#" included), or NULL. Returns
 * borrowed until the child is pruned. */
mqtt_trie_node *mqtt_trie_child(const mqtt_trie_node *n, const char *level,
                                size_t len);

/* The child of `n` for `level`, created if missing. Returns borrowed (the
 * trie owns it). */
mqtt_trie_node *mqtt_trie_child_add(mqtt_trie_node *n, const char *level,
                                    size_t len);

/* Remove `n` and then its ancestors while they hold no value and have no
 * children, stopping at the root. */
void mqtt_trie_prune(mqtt_trie_node *n);

/* Visit every literal child of `n` in table order: `*cursor` starts at 0;
 * returns NULL at the end. Borrowed results; do not modify `n` meanwhile. */
mqtt_trie_node *mqtt_trie_next_child(const mqtt_trie_node *n, size_t *cursor);

/* Free the whole trie under `root` (root included). `free_value` (may be
 * NULL) is called on each non-NULL value. Accepts NULL. Iterative. */
void mqtt_trie_destroy(mqtt_trie_node *root, void (*free_value)(void *));

/* The length of the level starting at `s` (up to '/' or `end`). */
size_t mqtt_trie_level_len(const char *s, const char *end);
/* The node for the '/'-separated path[0, len) under `root`: created level by
 * level if `create`, else NULL when absent. */
mqtt_trie_node *mqtt_trie_find(mqtt_trie_node *root, const char *path,
                               size_t len, bool create);

#endif
