/* apps/mqtt/session_subs.c: a session's list of subscriptions, beside
 * the tree that routes by them (session.c keeps the tree and the list in
 * step under the tree's write lock). The list exists only while there are
 * subscriptions (ADR 0150: idle clients stay small). A session that moves
 * to another node may leave its tree entries behind, forwarding, while it
 * forgets the list (session_move.c). */
#include "apps/mqtt/session_impl.h"

#include "runtime/alloc.h"

#include <string.h>

uint32_t mqtt_session_sub_count(const mqtt_session *s)
{
    return s->subs ? s->subs->count : 0;
}

void mqtt_session_remember_sub(mqtt_session *s, const mqtt_bytes *f,
                               uint8_t qos)
{
    sub_list *l = s->subs;

    for (uint32_t i = 0; i < mqtt_session_sub_count(s); i++) {
        if (l->items[i].len == f->len &&
            memcmp(l->items[i].filter, f->ptr, f->len) == 0) {
            l->items[i].qos = qos;
            return;
        }
    }
    if (!l || l->count == l->cap) {
        uint32_t cap = l ? l->cap * 2 : 4;

        l = hm_realloc(l, sizeof *l + cap * sizeof l->items[0]);
        if (!s->subs)
            l->count = 0;
        l->cap = cap;
        s->subs = l;
    }
    l->items[l->count++] =
        (sub){.filter = hm_strndup((const char *)f->ptr, f->len),
              .len = f->len,
              .qos = qos};
}

void mqtt_session_forget_sub(mqtt_session *s, const mqtt_bytes *f)
{
    sub_list *l = s->subs;

    for (uint32_t i = 0; i < mqtt_session_sub_count(s); i++) {
        if (l->items[i].len == f->len &&
            memcmp(l->items[i].filter, f->ptr, f->len) == 0) {
            hm_free(l->items[i].filter);
            l->items[i] = l->items[--l->count];
            break;
        }
    }
    if (l && l->count == 0) {
        hm_free(l);
        s->subs = NULL;
    }
}

void mqtt_session_drop_subs(mqtt_session *s)
{
    sub_list *l = s->subs;

    if (!l)
        return;
    pthread_rwlock_wrlock(&s->b->tree_lock);
    for (uint32_t i = 0; i < l->count; i++)
        mqtt_topic_tree_remove(s->b->tree, l->items[i].filter, l->items[i].len,
                               token(s));
    pthread_rwlock_unlock(&s->b->tree_lock);
    for (uint32_t i = 0; i < l->count; i++)
        hm_free(l->items[i].filter);
    hm_free(l);
    s->subs = NULL;
}

void mqtt_session_forget_subs(mqtt_session *s)
{
    sub_list *l = s->subs;

    for (uint32_t i = 0; i < mqtt_session_sub_count(s); i++)
        hm_free(l->items[i].filter);
    hm_free(l);
    s->subs = NULL;
}
