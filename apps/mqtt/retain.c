/* apps/mqtt/retain.c: retained messages in a topic-level trie.
 *
 * Each node that ends a retained topic holds the message (its own copy of
 * the topic, for handing out without rebuilding it from the path). The
 * match walk uses an explicit stack whose items are either "match the
 * filter from this level on" or "emit this whole subtree" (what `#` asks
 * for), so neither deep topics nor deep filters recurse. */
#include "apps/mqtt/retain.h"

#include "apps/mqtt/trie_impl.h"
#include "runtime/alloc.h"

#include <string.h>

struct mqtt_retain_store {
    mqtt_trie_node *root;
    size_t count;
};

typedef struct stored {
    mqtt_retained view;
    char *topic;
    uint8_t *payload;
} stored;

static void stored_free(void *p)
{
    stored *m = p;
    hm_free(m->topic);
    hm_free(m->payload);
    hm_free(m);
}

mqtt_retain_store *mqtt_retain_create(void)
{
    mqtt_retain_store *s = hm_calloc(1, sizeof *s);
    s->root = mqtt_trie_root_create();
    return s;
}

void mqtt_retain_destroy(mqtt_retain_store *s)
{
    if (!s)
        return;
    mqtt_trie_destroy(s->root, stored_free);
    hm_free(s);
}

size_t mqtt_retain_count(const mqtt_retain_store *s)
{
    return s->count;
}

void mqtt_retain_set(mqtt_retain_store *s, const char *topic, size_t topic_len,
                     const void *payload, size_t payload_len, uint8_t qos)
{
    mqtt_trie_node *n;
    stored *m;

    if (payload_len == 0) { /* [MQTT-3.3.1-10]: clear */
        n = mqtt_trie_find(s->root, topic, topic_len, false);
        if (n && n->value) {
            stored_free(n->value);
            n->value = NULL;
            s->count--;
            mqtt_trie_prune(n);
        }
        return;
    }
    n = mqtt_trie_find(s->root, topic, topic_len, true);
    if (n->value) {
        stored_free(n->value);
        s->count--;
    }
    m = hm_calloc(1, sizeof *m);
    m->topic = hm_strndup(topic, topic_len);
    m->payload = hm_alloc(payload_len);
    memcpy(m->payload, payload, payload_len);
    m->view =
        (mqtt_retained){m->topic, topic_len, m->payload, payload_len, qos};
    n->value = m;
    s->count++;
}

bool mqtt_retain_get(const mqtt_retain_store *s, const char *topic,
                     size_t topic_len, mqtt_retained *out)
{
    mqtt_trie_node *n = mqtt_trie_find(s->root, topic, topic_len, false);
    if (!n || !n->value)
        return false;
    *out = ((stored *)n->value)->view;
    return true;
}

#define END_OF_FILTER SIZE_MAX
#define WHOLE_SUBTREE (SIZE_MAX - 1)

typedef struct walk {
    struct item {
        const mqtt_trie_node *node;
        size_t pos; /* filter offset, END_OF_FILTER or WHOLE_SUBTREE */
    } * items;
    size_t top, cap;
} walk;

static void push(walk *w, const mqtt_trie_node *n, size_t pos)
{
    if (w->top == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 32;
        w->items = hm_realloc(w->items, w->cap * sizeof *w->items);
    }
    w->items[w->top++] = (struct item){n, pos};
}

static bool is_dollar(const mqtt_trie_node *n)
{
    return n->level_len > 0 && n->level[0] == '$';
}

/* Push every literal child of `n` with `pos`, skipping `$` topics when `n`
 * is the root ([MQTT-4.7.2-1]: the wildcard is the filter's first level). */
static void push_children(walk *w, const mqtt_trie_node *n, size_t pos)
{
    size_t cursor = 0;
    const mqtt_trie_node *c;
    while ((c = mqtt_trie_next_child(n, &cursor)))
        if (n->parent || !is_dollar(c))
            push(w, c, pos);
}

static void emit(const mqtt_trie_node *n, mqtt_retain_fn fn, void *arg)
{
    if (n->value)
        fn(arg, &((const stored *)n->value)->view);
}

void mqtt_retain_match(const mqtt_retain_store *s, const char *filter,
                       size_t filter_len, mqtt_retain_fn fn, void *arg)
{
    const char *end = filter + filter_len;
    walk w = {NULL, 0, 0};

    push(&w, s->root, 0);
    while (w.top > 0) {
        struct item it = w.items[--w.top];
        const char *level;
        size_t llen, next;
        const mqtt_trie_node *c;

        if (it.pos == WHOLE_SUBTREE) {
            emit(it.node, fn, arg);
            push_children(&w, it.node, WHOLE_SUBTREE);
            continue;
        }
        if (it.pos == END_OF_FILTER) {
            emit(it.node, fn, arg);
            continue;
        }
        level = filter + it.pos; /* only now is pos an offset */
        llen = mqtt_trie_level_len(level, end);
        next = it.pos + llen == filter_len ? END_OF_FILTER : it.pos + llen + 1;
        if (llen == 1 && level[0] == '#') {
            /* "a/#" matches "a" itself, then everything below it. */
            emit(it.node, fn, arg);
            push_children(&w, it.node, WHOLE_SUBTREE);
        } else if (llen == 1 && level[0] == '+') {
            push_children(&w, it.node, next);
        } else if ((c = mqtt_trie_child(it.node, level, llen))) {
            push(&w, c, next);
        }
    }
    hm_free(w.items);
}
