/* tests/apps/mqtt/test_passwd.c: mosquitto password files. The fixture
 * below was written by mosquitto_passwd 2.0.11 itself (PBKDF2 by default,
 * `-H sha512` for carol's $6$ line), so these tests check compatibility
 * with the real tool, not with our reading of it. Passwords: alice
 * "secret", bob "pässwörd with spaces", empty "", carol "legacy",
 * dave "p:w". */
#include "apps/mqtt/passwd.h"
#include "runtime/alloc.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char FIXTURE[] =
    "# written by mosquitto_passwd\n"
    "alice:$7$101$RR6d2Pmhee0GTfG1$eRMix+xBOZZpso5/"
    "zK4jA5RU1bKE4Uga3Y3VEh1ogm1bEWxIV7xSZDzGdMt10XSi7vABvI6Pyd0RZLg+FlX2rA==\n"
    "bob:$7$101$8GC8QNmZ2/uEi0jf$4/iuy//sstx1WN0P9VwbX3bcBEcEPjXc/"
    "JZOhCULDAYuRXNcd63UhAHFGdh3oIFZXA4xLd4BrhF/porppDe+6w==\n"
    "empty:$7$101$ltYhHZQ6ufxZ2ccV$"
    "MOPa5SbKxQprZLST68JHpmI7NcgBViYYY54HGC887pXyIRqOVPor6VwUbaWRYxJgV79bRIN8lF"
    "YwKOuOw0TTUw==\n"
    "carol:$6$6owijG3ldSZWSGsf$gvw/"
    "3gDUg2SSUKoWPx8Tk9hSGOVCB1njGJYJoRDHV46CDUImz6GaLKsOpUWTyeL1fRLnkiecXxfEen"
    "+INmNM9w==\n"
    "dave:$7$101$zG1PeogdD1w/"
    "VJ7d$ZV+d6T+xCq4wT1VVlyF06s1Lx4lOmVJEnCKikVY2GwtC5QjeWOGoTM+"
    "ffPR0sSYKsjlpDdC/5VXjVeo297miQg==\n";

static mqtt_passwd *pw;
static mqtt_file_error err;

static void setup(void)
{
    cr_assert_eq(mqtt_passwd_parse_string("passwd", FIXTURE, &pw, &err), HM_OK,
                 "%s", err.text);
}

static void teardown(void)
{
    mqtt_passwd_destroy(pw);
}

static hm_err check(const char *user, const char *password)
{
    return mqtt_passwd_check(pw, user, strlen(user), (const uint8_t *)password,
                             strlen(password));
}

TestSuite(mqtt_passwd, .init = setup, .fini = teardown);

Test(mqtt_passwd, pbkdf2_password_from_mosquitto_passwd_is_accepted)
{
    cr_assert_eq(mqtt_passwd_count(pw), 5);
    cr_assert_eq(check("alice", "secret"), HM_OK);
}

Test(mqtt_passwd, wrong_password_is_denied)
{
    cr_assert_eq(check("alice", "Secret"), HM_EDENIED);
    cr_assert_eq(check("alice", ""), HM_EDENIED);
}

Test(mqtt_passwd, unknown_user_is_denied_like_a_wrong_password)
{
    cr_assert_eq(check("mallory", "secret"), HM_EDENIED);
    cr_assert_eq(check("alic", "secret"), HM_EDENIED);
}

Test(mqtt_passwd, utf8_password_with_spaces_is_accepted)
{
    cr_assert_eq(check("bob", "pässwörd with spaces"), HM_OK);
}

Test(mqtt_passwd, empty_password_is_a_password_like_any_other)
{
    cr_assert_eq(check("empty", ""), HM_OK);
    cr_assert_eq(check("empty", " "), HM_EDENIED);
}

Test(mqtt_passwd, salted_sha512_hash_of_mosquitto_1_is_accepted)
{
    cr_assert_eq(check("carol", "legacy"), HM_OK);
    cr_assert_eq(check("carol", "legacz"), HM_EDENIED);
}

Test(mqtt_passwd, colon_in_a_password_is_fine)
{
    cr_assert_eq(check("dave", "p:w"), HM_OK);
}

Test(mqtt_passwd, hash_we_write_is_checked_by_us)
{
    char *h, line[256];
    mqtt_passwd *mine;
    cr_assert_eq(
        mqtt_passwd_hash((const uint8_t *)"pw", 2, MQTT_PASSWD_ITERATIONS, &h),
        HM_OK);
    cr_assert_eq(strncmp(h, "$7$101$", 7), 0);
    snprintf(line, sizeof line, "eve:%s\n", h);
    cr_assert_eq(mqtt_passwd_parse_string("x", line, &mine, &err), HM_OK);
    cr_assert_eq(mqtt_passwd_check(mine, "eve", 3, (const uint8_t *)"pw", 2),
                 HM_OK);
    mqtt_passwd_destroy(mine);
    hm_free(h);
}

static hm_err parse_bad(const char *text)
{
    mqtt_passwd *p = NULL;
    hm_err e = mqtt_passwd_parse_string("bad", text, &p, &err);
    mqtt_passwd_destroy(p);
    return e;
}

Test(mqtt_passwd, plaintext_password_line_refuses_the_file_with_its_line)
{
    cr_assert_eq(parse_bad("\nalice:secret\n"), HM_EINVAL);
    cr_assert(strstr(err.text, "bad:2:"), "%s", err.text);
}

Test(mqtt_passwd, broken_hashes_are_refused)
{
    cr_assert_eq(parse_bad("a:$7$0$AAAA$AAAA\n"), HM_EINVAL);
    cr_assert_eq(parse_bad("a:$5$AAAA$AAAA\n"), HM_EINVAL);
    cr_assert_eq(parse_bad("a:$6$AAAA$AAAA\n"), HM_EINVAL); /* short hash */
    cr_assert_eq(parse_bad("a:$6$A*AA$AAAA\n"), HM_EINVAL);
    cr_assert_eq(parse_bad(":$6$AAAA$AAAA\n"), HM_EINVAL);
    cr_assert_eq(parse_bad("nocolon\n"), HM_EINVAL);
    cr_assert_eq(parse_bad("a:$7$101$AAAA$AAAA$AAAA\n"), HM_EINVAL);
}

Test(mqtt_passwd, duplicate_user_is_refused)
{
    char text[1024];
    const char *alice = strstr(FIXTURE, "alice:");
    size_t len = (size_t)(strchr(alice, '\n') - alice) + 1;
    snprintf(text, sizeof text, "%.*s%.*s", (int)len, alice, (int)len, alice);
    cr_assert_eq(parse_bad(text), HM_EINVAL);
    cr_assert(strstr(err.text, "alice"));
}

Test(mqtt_passwd, load_reads_a_file_and_reports_a_missing_one)
{
    char path[] = "/tmp/hermes-passwd-XXXXXX";
    int fd = mkstemp(path);
    mqtt_passwd *p;
    cr_assert_eq(write(fd, FIXTURE, strlen(FIXTURE)), (ssize_t)strlen(FIXTURE));
    close(fd);
    cr_assert_eq(mqtt_passwd_load(path, &p, &err), HM_OK, "%s", err.text);
    unlink(path);
    cr_assert_eq(mqtt_passwd_count(p), 5);
    mqtt_passwd_destroy(p);
    cr_assert_eq(mqtt_passwd_load("/nonexistent/pw", &p, &err), HM_ESYS);
}

/* ------------------------------------------------------------- editing */

Test(mqtt_passwd, edit_replaces_an_existing_user_and_keeps_other_lines)
{
    char *out;
    cr_assert_eq(mqtt_passwd_edit("# c\na:$6$x\nb:$6$y\n", "a", "$7$new", &out),
                 HM_OK);
    cr_assert_str_eq(out, "# c\na:$7$new\nb:$6$y\n");
    hm_free(out);
}

Test(mqtt_passwd, edit_appends_a_new_user_even_without_a_final_newline)
{
    char *out;
    cr_assert_eq(mqtt_passwd_edit("a:$6$x", "ab", "$7$h", &out), HM_OK);
    cr_assert_str_eq(out, "a:$6$x\nab:$7$h\n");
    hm_free(out);
    cr_assert_eq(mqtt_passwd_edit("", "z", "$7$h", &out), HM_OK);
    cr_assert_str_eq(out, "z:$7$h\n");
    hm_free(out);
}

Test(mqtt_passwd, edit_with_no_hash_deletes_the_user)
{
    char *out;
    cr_assert_eq(mqtt_passwd_edit("a:1\nb:2\n", "a", NULL, &out), HM_OK);
    cr_assert_str_eq(out, "b:2\n");
    hm_free(out);
    cr_assert_eq(mqtt_passwd_edit("a:1\n", "b", NULL, &out), HM_ENOTFOUND);
}

Test(mqtt_passwd, edit_refuses_user_names_that_break_the_format)
{
    char *out;
    cr_assert_eq(mqtt_passwd_edit("", "a:b", "h", &out), HM_EINVAL);
    cr_assert_eq(mqtt_passwd_edit("", "a\nb", "h", &out), HM_EINVAL);
    cr_assert_eq(mqtt_passwd_edit("", "", "h", &out), HM_EINVAL);
}
