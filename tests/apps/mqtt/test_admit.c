/* tests/apps/mqtt/test_admit.c: the CONNECT admission policy, mosquitto 2's
 * rules (see apps/mqtt/admit.h). alice's hash below was written by
 * mosquitto_passwd 2.0.11 for the password "secret". */
#include "apps/mqtt/admit.h"

#include <criterion/criterion.h>
#include <string.h>

static const char PASSWD[] =
    "alice:$7$101$RR6d2Pmhee0GTfG1$eRMix+xBOZZpso5/zK4jA5RU1bKE4Uga3Y3VEh1o"
    "gm1bEWxIV7xSZDzGdMt10XSi7vABvI6Pyd0RZLg+FlX2rA==\n";

static mqtt_passwd *pw;

static void setup(void)
{
    mqtt_file_error err;
    cr_assert_eq(mqtt_passwd_parse_string("pw", PASSWD, &pw, &err), HM_OK, "%s",
                 err.text);
}

static void teardown(void)
{
    mqtt_passwd_destroy(pw);
}

TestSuite(mqtt_admit, .init = setup, .fini = teardown);

static mqtt_connect login(const char *user, const char *password)
{
    mqtt_connect c = {.protocol_level = 4, .keepalive_s = 60};
    if (user) {
        c.has_username = true;
        c.username = (mqtt_bytes){(const uint8_t *)user, strlen(user)};
    }
    if (password) {
        c.has_password = true;
        c.password = (mqtt_bytes){(const uint8_t *)password, strlen(password)};
    }
    return c;
}

Test(mqtt_admit, anonymous_client_follows_allow_anonymous)
{
    mqtt_connect c = login(NULL, NULL);
    mqtt_admission open = {true, 65535, NULL}, closed = {false, 65535, pw};
    cr_assert_eq(mqtt_admit(&open, &c), MQTT_CONNACK_ACCEPTED);
    cr_assert_eq(mqtt_admit(&closed, &c), MQTT_CONNACK_NOT_AUTHORIZED);
}

Test(mqtt_admit, right_password_is_accepted_and_wrong_one_gets_0x05)
{
    mqtt_admission p = {false, 65535, pw};
    mqtt_connect good = login("alice", "secret");
    mqtt_connect bad = login("alice", "nope");
    mqtt_connect none = login("alice", NULL);
    cr_assert_eq(mqtt_admit(&p, &good), MQTT_CONNACK_ACCEPTED);
    cr_assert_eq(mqtt_admit(&p, &bad), MQTT_CONNACK_NOT_AUTHORIZED);
    cr_assert_eq(mqtt_admit(&p, &none), MQTT_CONNACK_NOT_AUTHORIZED);
}

Test(mqtt_admit, unknown_user_is_refused_even_when_anonymous_is_allowed)
{
    mqtt_admission p = {true, 65535, pw};
    mqtt_connect c = login("mallory", "secret");
    cr_assert_eq(mqtt_admit(&p, &c), MQTT_CONNACK_NOT_AUTHORIZED);
}

Test(mqtt_admit, user_name_without_password_file_needs_allow_anonymous)
{
    mqtt_connect c = login("bob", "x");
    mqtt_admission open = {true, 65535, NULL}, closed = {false, 65535, NULL};
    cr_assert_eq(mqtt_admit(&open, &c), MQTT_CONNACK_ACCEPTED);
    cr_assert_eq(mqtt_admit(&closed, &c), MQTT_CONNACK_NOT_AUTHORIZED);
}

Test(mqtt_admit, keepalive_above_max_keepalive_gets_0x02)
{
    mqtt_admission p = {true, 30, NULL};
    mqtt_connect c = login(NULL, NULL);
    cr_assert_eq(mqtt_admit(&p, &c), MQTT_CONNACK_ID_REJECTED);
    c.keepalive_s = 30;
    cr_assert_eq(mqtt_admit(&p, &c), MQTT_CONNACK_ACCEPTED);
}
