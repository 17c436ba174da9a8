/* apps/mqtt/acl.h: mosquitto's ACL file, and the check "may this client
 * read, write or subscribe to this topic".
 *
 * The format and meanings are mosquitto's (mosquitto.conf(5), acl_file):
 *
 *   # comment
 *   topic [read|write|readwrite|deny] TOPIC   (no access word: readwrite)
 *   user USERNAME                             (the rest of the line)
 *   pattern [read|write|readwrite|deny] TOPIC (with %c and %u)
 *
 * `topic` lines before the first `user` line apply to anonymous clients
 * (no user name in CONNECT); after a `user` line, to that user. `pattern`
 * lines apply to every client wherever they appear, with %c replaced by
 * the client id and %u by the user name (a pattern with %u does not apply
 * to an anonymous client, and, as in mosquitto since CVE-2017-7650, none
 * applies when the substituted id or name contains '+' or '#'). TOPIC is
 * the rest of the line and may hold wildcards. Once an ACL file is in use,
 * what it does not grant is denied; `deny` entries win over grants.
 *
 * The key decision is the meaning of a subscription check, where mosquitto
 * grants every SUBSCRIBE and filters each message on delivery: here a
 * SUBSCRIBE is granted only if a read grant covers the whole filter and no
 * deny covers it (mqtt_topic_filter_covers), so a refused subscription gets
 * SUBACK 0x80 as issue 5 asks. Messages are still checked one by one on
 * delivery (MQTT_ACL_READ), which catches a deny inside a granted filter. */
#ifndef HM_APPS_MQTT_ACL_H
#define HM_APPS_MQTT_ACL_H

#include "apps/mqtt/file_error.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct mqtt_acl mqtt_acl;

typedef enum {
    MQTT_ACL_READ,      /* deliver a PUBLISH on this topic to the client */
    MQTT_ACL_WRITE,     /* accept a PUBLISH on this topic from the client */
    MQTT_ACL_SUBSCRIBE, /* accept a subscription to this filter */
} mqtt_acl_access;

/* Who asks. Strings are borrowed, NUL-terminated; `username` NULL means an
 * anonymous client. */
typedef struct mqtt_acl_client {
    const char *client_id;
    const char *username;
} mqtt_acl_client;

/* Parse `text` (borrowed, NUL-terminated) as an ACL file named `name`
 * (borrowed; for messages). On HM_OK writes the rules to `*out` (returns
 * owned). Errors: HM_EINVAL with "NAME:LINE: ..." in `err` (an unknown
 * keyword, a bad access word, an invalid topic filter). */
hm_err mqtt_acl_parse_string(const char *name, const char *text, mqtt_acl **out,
                             mqtt_file_error *err);

/* Read and parse the file at `path` (borrowed). Errors: HM_ESYS if it
 * cannot be read, HM_EINVAL as above. */
hm_err mqtt_acl_load(const char *path, mqtt_acl **out, mqtt_file_error *err);

/* Accepts NULL. */
void mqtt_acl_destroy(mqtt_acl *acl);

/* Whether `who` (borrowed) may do `access` on `topic` (borrowed, `len`
 * bytes: a topic name for READ and WRITE, a filter for SUBSCRIBE).
 * Thread-safe for concurrent checks (the rules are read-only once
 * loaded). */
bool mqtt_acl_check(const mqtt_acl *acl, const mqtt_acl_client *who,
                    mqtt_acl_access access, const char *topic, size_t len);

#endif
