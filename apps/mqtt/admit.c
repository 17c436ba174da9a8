/* apps/mqtt/admit.c: the CONNECT admission policy (see admit.h). Kept apart
 * from the session so that every rule is one testable line here. */
#include "apps/mqtt/admit.h"

mqtt_connack_code mqtt_admit(const mqtt_admission *policy,
                             const mqtt_connect *c)
{
    if (c->keepalive_s > policy->max_keepalive)
        return MQTT_CONNACK_ID_REJECTED;
    if (!c->has_username)
        return policy->allow_anonymous ? MQTT_CONNACK_ACCEPTED
                                       : MQTT_CONNACK_NOT_AUTHORIZED;
    if (!policy->passwords)
        return policy->allow_anonymous ? MQTT_CONNACK_ACCEPTED
                                       : MQTT_CONNACK_NOT_AUTHORIZED;
    if (mqtt_passwd_check(policy->passwords, (const char *)c->username.ptr,
                          c->username.len, c->password.ptr,
                          c->password.len) != HM_OK)
        return MQTT_CONNACK_NOT_AUTHORIZED;
    return MQTT_CONNACK_ACCEPTED;
}
