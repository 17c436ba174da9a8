/* tests/apps/mqtt/test_acl.c: mosquitto ACL files and the access check. */
#include "apps/mqtt/acl.h"

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

static const char FILE_TEXT[] = "# anonymous clients\n"
                                "topic read public/#\n"
                                "\n"
                                "user alice\n"
                                "topic readwrite home/alice/#\n"
                                "topic deny home/alice/secret\n"
                                "topic write log/alice\n"
                                "topic sensors/+/temp\n"
                                "\n"
                                "user bob smith\n"
                                "topic read home/#\n"
                                "\n"
                                "pattern readwrite devices/%c/#\n"
                                "pattern read users/%u/inbox\n"
                                "pattern deny devices/%c/firmware\n";

static mqtt_acl *acl;
static mqtt_file_error err;

static void setup(void)
{
    cr_assert_eq(mqtt_acl_parse_string("acl", FILE_TEXT, &acl, &err), HM_OK,
                 "%s", err.text);
}

static void teardown(void)
{
    mqtt_acl_destroy(acl);
}

TestSuite(mqtt_acl, .init = setup, .fini = teardown);

static bool can(const char *user, const char *id, mqtt_acl_access a,
                const char *topic)
{
    mqtt_acl_client who = {id, user};
    return mqtt_acl_check(acl, &who, a, topic, strlen(topic));
}

#define R MQTT_ACL_READ
#define W MQTT_ACL_WRITE
#define SUB MQTT_ACL_SUBSCRIBE

Test(mqtt_acl, topics_before_any_user_line_apply_to_anonymous_clients)
{
    cr_assert(can(NULL, "c1", R, "public/news"));
    cr_assert_not(can(NULL, "c1", W, "public/news"));
    cr_assert_not(can("alice", "c1", R, "public/news"));
}

Test(mqtt_acl, user_section_grants_its_user_only)
{
    cr_assert(can("alice", "c1", R, "home/alice/lamp"));
    cr_assert(can("alice", "c1", W, "home/alice/lamp"));
    cr_assert_not(can("carol", "c1", R, "home/alice/lamp"));
    cr_assert_not(can(NULL, "c1", R, "home/alice/lamp"));
}

Test(mqtt_acl, access_word_limits_the_direction)
{
    cr_assert(can("alice", "c1", W, "log/alice"));
    cr_assert_not(can("alice", "c1", R, "log/alice"));
}

Test(mqtt_acl, topic_without_access_word_is_readwrite)
{
    cr_assert(can("alice", "c1", R, "sensors/kitchen/temp"));
    cr_assert(can("alice", "c1", W, "sensors/kitchen/temp"));
}

Test(mqtt_acl, deny_wins_over_a_broader_grant)
{
    cr_assert_not(can("alice", "c1", R, "home/alice/secret"));
    cr_assert_not(can("alice", "c1", W, "home/alice/secret"));
}

Test(mqtt_acl, user_names_may_contain_spaces)
{
    cr_assert(can("bob smith", "c2", R, "home/alice/lamp"));
    cr_assert_not(can("bob", "c2", R, "home/alice/lamp"));
}

Test(mqtt_acl, what_is_not_granted_is_denied)
{
    cr_assert_not(can("alice", "c1", R, "elsewhere"));
    cr_assert_not(can(NULL, "c1", W, "anything"));
    cr_assert_not(can("alice", "c1", R, "$SYS/broker/uptime"));
}

Test(mqtt_acl, pattern_substitutes_the_client_id_for_everyone)
{
    cr_assert(can(NULL, "dev42", W, "devices/dev42/status"));
    cr_assert(can("alice", "dev42", R, "devices/dev42/cmd"));
    cr_assert_not(can("alice", "dev42", W, "devices/dev43/status"));
}

Test(mqtt_acl, pattern_substitutes_the_user_name_and_needs_one)
{
    cr_assert(can("alice", "c1", R, "users/alice/inbox"));
    cr_assert_not(can("alice", "c1", R, "users/bob/inbox"));
    cr_assert_not(can(NULL, "c1", R, "users//inbox"));
}

Test(mqtt_acl, pattern_deny_wins_too)
{
    cr_assert_not(can(NULL, "dev42", W, "devices/dev42/firmware"));
}

Test(mqtt_acl, wildcards_in_an_id_do_not_widen_a_pattern)
{
    /* CVE-2017-7650: client id "+" must not turn devices/%c/# into
     * devices/+/#. */
    cr_assert_not(can(NULL, "+", R, "devices/dev42/status"));
    cr_assert_not(can(NULL, "#", R, "devices/x"));
}

Test(mqtt_acl, subscription_needs_a_read_grant_covering_the_filter)
{
    cr_assert(can("alice", "c1", SUB, "home/alice/#"));
    cr_assert(can("alice", "c1", SUB, "home/alice/+/state"));
    cr_assert(can(NULL, "c1", SUB, "public/#"));
    cr_assert_not(can("alice", "c1", SUB, "home/#"));
    cr_assert_not(can("alice", "c1", SUB, "#"));
    cr_assert_not(can("alice", "c1", SUB, "log/alice")); /* write only */
}

Test(mqtt_acl, subscription_to_a_denied_topic_is_refused)
{
    cr_assert_not(can("alice", "c1", SUB, "home/alice/secret"));
}

Test(mqtt_acl, subscription_through_a_pattern_is_granted)
{
    cr_assert(can(NULL, "dev42", SUB, "devices/dev42/#"));
    cr_assert_not(can(NULL, "dev42", SUB, "devices/+/#"));
}

static hm_err parse_bad(const char *text)
{
    mqtt_acl *a = NULL;
    hm_err e = mqtt_acl_parse_string("bad", text, &a, &err);
    mqtt_acl_destroy(a);
    return e;
}

Test(mqtt_acl, unknown_keyword_is_an_error_with_its_line)
{
    cr_assert_eq(parse_bad("topic a\nsuperuser x\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "bad:2:"), "%s", err.text);
}

Test(mqtt_acl, invalid_topic_filter_or_missing_name_is_an_error)
{
    cr_assert_eq(parse_bad("topic read a/#/b\n"), HM_EINVAL);
    cr_assert_eq(parse_bad("topic   \n"), HM_EINVAL);
    cr_assert_eq(parse_bad("pattern\n"), HM_EINVAL);
    cr_assert_eq(parse_bad("user\n"), HM_EINVAL);
}

Test(mqtt_acl, topic_may_contain_spaces_after_the_access_word)
{
    mqtt_acl *a;
    mqtt_acl_client who = {"c", NULL};
    cr_assert_eq(mqtt_acl_parse_string("x", "topic read a b/c\n", &a, &err),
                 HM_OK);
    cr_assert(mqtt_acl_check(a, &who, R, "a b/c", 5));
    mqtt_acl_destroy(a);
}

Test(mqtt_acl, load_reads_a_file)
{
    char path[] = "/tmp/hermes-acl-XXXXXX";
    int fd = mkstemp(path);
    mqtt_acl *a;
    cr_assert_eq(write(fd, FILE_TEXT, strlen(FILE_TEXT)),
                 (ssize_t)strlen(FILE_TEXT));
    close(fd);
    cr_assert_eq(mqtt_acl_load(path, &a, &err), HM_OK, "%s", err.text);
    unlink(path);
    mqtt_acl_destroy(a);
    cr_assert_eq(mqtt_acl_load("/nonexistent/acl", &a, &err), HM_ESYS);
}
