/* apps/mqtt/admit.h: whether a well-formed CONNECT may in, and which
 * CONNACK code it gets: the broker's authentication policy in one pure
 * function.
 *
 * The rules are mosquitto 2's, so that a configuration moved from
 * mosquitto admits the same clients:
 * - no user name: accepted if allow_anonymous, else 0x05;
 * - a user name with a password file: the password must check, else 0x05
 *   (mosquitto answers "not authorised" for a wrong password too; 0x04 is
 *   never sent, since the codec already refuses malformed credentials);
 * - a user name and no password file: accepted if allow_anonymous, else
 *   0x05 (mosquitto 2 requires some means of authentication);
 * - a keepalive above max_keepalive: 0x02, the only way MQTT 3.1.1 has to
 *   refuse it, as mosquitto.conf(5) of later 2.0 releases describes
 *   (Debian's mosquitto 2.0.11 still applies max_keepalive to MQTT 5
 *   clients only, and admits such a 3.1.1 client).
 * The user-name rules were checked against mosquitto 2.0.11 itself. */
#ifndef HM_APPS_MQTT_ADMIT_H
#define HM_APPS_MQTT_ADMIT_H

#include "apps/mqtt/codec.h"
#include "apps/mqtt/passwd.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct mqtt_admission {
    bool allow_anonymous;
    uint16_t max_keepalive;       /* 65535: anything goes */
    const mqtt_passwd *passwords; /* borrowed; NULL: no password file */
} mqtt_admission;

/* The CONNACK return code for `c` (borrowed, as decoded) under `policy`
 * (borrowed): MQTT_CONNACK_ACCEPTED or a refusal (then close). Costs one
 * password hash when a user name is given and a password file is set.
 * Thread-safe. */
mqtt_connack_code mqtt_admit(const mqtt_admission *policy,
                             const mqtt_connect *c);

#endif
