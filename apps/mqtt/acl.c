/* apps/mqtt/acl.c: mosquitto ACL files and the access check.
 *
 * Rules are kept in three lists: the anonymous section, one list per user
 * (sorted by name after loading, for a binary search per check), and the
 * patterns. A check looks at only two of them: the asking client's own
 * list and the patterns, denials first. Patterns are substituted per check
 * into a small buffer; ACL files hold a handful of patterns, and checks
 * happen per PUBLISH and SUBSCRIBE, not per byte. */
#include "apps/mqtt/acl.h"

#include "apps/mqtt/topic.h"
#include "runtime/alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRANT_READ 0x1
#define GRANT_WRITE 0x2
#define DENY 0x0

typedef struct rule {
    char *topic;
    size_t len;
    uint8_t access; /* GRANT_ bits, or DENY */
} rule;

typedef struct rule_list {
    rule *items;
    size_t count, cap;
} rule_list;

typedef struct user_rules {
    char *name;
    rule_list rules;
} user_rules;

struct mqtt_acl {
    rule_list anonymous;
    user_rules *users;
    size_t user_count, user_cap;
    rule_list patterns;
};

static void list_add(rule_list *l, const char *topic, uint8_t access)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->items = hm_realloc(l->items, l->cap * sizeof *l->items);
    }
    l->items[l->count++] = (rule){hm_strdup(topic), strlen(topic), access};
}

static void list_fini(rule_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        hm_free(l->items[i].topic);
    hm_free(l->items);
}

void mqtt_acl_destroy(mqtt_acl *acl)
{
    if (!acl)
        return;
    list_fini(&acl->anonymous);
    list_fini(&acl->patterns);
    for (size_t i = 0; i < acl->user_count; i++) {
        hm_free(acl->users[i].name);
        list_fini(&acl->users[i].rules);
    }
    hm_free(acl->users);
    hm_free(acl);
}

/* ---------------------------------------------------------------- parsing */

static char *skip_blanks(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static void trim_end(char *s)
{
    size_t len = strlen(s);
    while (len > 0 &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
        s[--len] = '\0';
}

/* The index of `name`'s list, created if new (users may have several
 * `user` sections). */
static size_t user_index(mqtt_acl *acl, const char *name)
{
    for (size_t i = 0; i < acl->user_count; i++)
        if (strcmp(acl->users[i].name, name) == 0)
            return i;
    if (acl->user_count == acl->user_cap) {
        acl->user_cap = acl->user_cap ? acl->user_cap * 2 : 8;
        acl->users = hm_realloc(acl->users, acl->user_cap * sizeof *acl->users);
    }
    acl->users[acl->user_count] = (user_rules){hm_strdup(name), {0}};
    return acl->user_count++;
}

/* "[read|write|readwrite|deny] TOPIC": the access and the topic. */
static const char *parse_rule(char *rest, uint8_t *access, char **topic)
{
    static const struct {
        const char *word;
        uint8_t access;
    } words[] = {{"read", GRANT_READ},
                 {"write", GRANT_WRITE},
                 {"readwrite", GRANT_READ | GRANT_WRITE},
                 {"deny", DENY}};
    *access = GRANT_READ | GRANT_WRITE;
    *topic = rest;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i].word);
        if (strncmp(rest, words[i].word, n) == 0 &&
            (rest[n] == ' ' || rest[n] == '\t')) {
            *access = words[i].access;
            *topic = skip_blanks(rest + n);
            break;
        }
    }
    if (**topic == '\0')
        return "expected a topic";
    if (!mqtt_topic_filter_is_valid(*topic, strlen(*topic)))
        return "invalid topic filter";
    return NULL;
}

/* Apply one line; `current` is the list `topic` lines go to (SIZE_MAX:
 * the anonymous list). */
static const char *apply_line(mqtt_acl *acl, char *line, size_t *current)
{
    char *p = skip_blanks(line), *rest, *topic;
    size_t kw;
    uint8_t access;
    const char *why;

    trim_end(p);
    if (*p == '\0' || *p == '#')
        return NULL;
    kw = strcspn(p, " \t");
    rest = skip_blanks(p + kw);
    if (kw == 4 && strncmp(p, "user", 4) == 0) {
        if (*rest == '\0')
            return "user needs a name";
        *current = user_index(acl, rest);
        return NULL;
    }
    if (kw == 5 && strncmp(p, "topic", 5) == 0) {
        if ((why = parse_rule(rest, &access, &topic)) != NULL)
            return why;
        list_add(*current == SIZE_MAX ? &acl->anonymous
                                      : &acl->users[*current].rules,
                 topic, access);
        return NULL;
    }
    if (kw == 7 && strncmp(p, "pattern", 7) == 0) {
        if ((why = parse_rule(rest, &access, &topic)) != NULL)
            return why;
        list_add(&acl->patterns, topic, access);
        return NULL;
    }
    return "unknown keyword (want topic, user or pattern)";
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const user_rules *)a)->name, ((const user_rules *)b)->name);
}

hm_err mqtt_acl_parse_string(const char *name, const char *text, mqtt_acl **out,
                             mqtt_file_error *err)
{
    mqtt_acl *acl = hm_calloc(1, sizeof *acl);
    char *copy = hm_strdup(text), *line = copy;
    size_t current = SIZE_MAX;

    for (int lineno = 1; line; lineno++) {
        char *nl = strchr(line, '\n');
        const char *why;
        if (nl)
            *nl = '\0';
        if ((why = apply_line(acl, line, &current)) != NULL) {
            mqtt_file_error_set(err, "%s:%d: %s", name, lineno, why);
            hm_free(copy);
            mqtt_acl_destroy(acl);
            return HM_EINVAL;
        }
        line = nl ? nl + 1 : NULL;
    }
    hm_free(copy);
    if (acl->user_count > 1)
        qsort(acl->users, acl->user_count, sizeof *acl->users, by_name);
    *out = acl;
    return HM_OK;
}

hm_err mqtt_acl_load(const char *path, mqtt_acl **out, mqtt_file_error *err)
{
    char *text;
    hm_err result;

    if ((result = mqtt_file_read(path, &text, err)) != HM_OK)
        return result;
    result = mqtt_acl_parse_string(path, text, out, err);
    hm_free(text);
    return result;
}

/* --------------------------------------------------------------- checking */

static bool rule_applies(const rule *r, const char *topic, size_t len,
                         mqtt_acl_access access)
{
    if (access == MQTT_ACL_SUBSCRIBE)
        return mqtt_topic_filter_covers(r->topic, r->len, topic, len);
    return mqtt_topic_matches(r->topic, r->len, topic, len);
}

static bool grants(uint8_t rule_access, mqtt_acl_access access)
{
    uint8_t need = access == MQTT_ACL_WRITE ? GRANT_WRITE : GRANT_READ;
    return (rule_access & need) != 0;
}

/* Look for a deny (want_deny) or a grant in `l`. */
static bool list_has(const rule_list *l, bool want_deny, const char *topic,
                     size_t len, mqtt_acl_access access)
{
    for (size_t i = 0; i < l->count; i++) {
        const rule *r = &l->items[i];
        bool is_deny = r->access == DENY;
        if (is_deny == want_deny && (is_deny || grants(r->access, access)) &&
            rule_applies(r, topic, len, access))
            return true;
    }
    return false;
}

/* Substitute %c and %u in `pattern`; NULL if the pattern cannot apply to
 * `who`. Returns owned. */
static char *substitute(const rule *pattern, const mqtt_acl_client *who)
{
    const char *id = who->client_id ? who->client_id : "";
    const char *user = who->username;
    size_t grow = strlen(id) + (user ? strlen(user) : 0);
    size_t cap = pattern->len + 1, w = 0;
    char *out;

    for (size_t i = 0; i + 1 < pattern->len; i++)
        if (pattern->topic[i] == '%')
            cap += grow;
    out = hm_alloc(cap);
    for (size_t i = 0; i < pattern->len; i++) {
        const char *with = NULL;
        if (pattern->topic[i] == '%' && i + 1 < pattern->len)
            with = pattern->topic[i + 1] == 'c'   ? id
                   : pattern->topic[i + 1] == 'u' ? (user ? user : "\x01")
                                                  : NULL;
        if (!with) {
            out[w++] = pattern->topic[i];
            continue;
        }
        if (with[0] == '\x01' || strpbrk(with, "+#")) {
            hm_free(out); /* %u without a user, or a wildcard smuggled in */
            return NULL;
        }
        memcpy(out + w, with, strlen(with));
        w += strlen(with);
        i++;
    }
    out[w] = '\0';
    return out;
}

static bool patterns_have(const mqtt_acl *acl, const mqtt_acl_client *who,
                          bool want_deny, const char *topic, size_t len,
                          mqtt_acl_access access)
{
    for (size_t i = 0; i < acl->patterns.count; i++) {
        const rule *p = &acl->patterns.items[i];
        bool is_deny = p->access == DENY;
        char *t;
        bool hit;
        if (is_deny != want_deny || (!is_deny && !grants(p->access, access)))
            continue;
        if (!(t = substitute(p, who)))
            continue;
        hit =
            rule_applies(&(rule){t, strlen(t), p->access}, topic, len, access);
        hm_free(t);
        if (hit)
            return true;
    }
    return false;
}

bool mqtt_acl_check(const mqtt_acl *acl, const mqtt_acl_client *who,
                    mqtt_acl_access access, const char *topic, size_t len)
{
    const rule_list *own = &acl->anonymous;
    if (who->username) {
        user_rules key = {(char *)who->username, {0}};
        const user_rules *u = acl->user_count
                                  ? bsearch(&key, acl->users, acl->user_count,
                                            sizeof *acl->users, by_name)
                                  : NULL;
        own = u ? &u->rules : NULL;
    }
    if ((own && list_has(own, true, topic, len, access)) ||
        patterns_have(acl, who, true, topic, len, access))
        return false;
    return (own && list_has(own, false, topic, len, access)) ||
           patterns_have(acl, who, false, topic, len, access);
}
