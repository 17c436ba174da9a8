/* fuzz/fuzz_mqtt_auth.c: libFuzzer target for the password-file and ACL
 * parsers and the ACL check.
 *
 * The input is used three ways: as a password file, as an ACL file, and,
 * when the ACL parses, split at its first NUL-free line as a topic to check
 * for a fixed client in every access mode. Checked: no sanitizer report,
 * no leak, and parse errors always name the file. */
#include "apps/mqtt/acl.h"
#include "apps/mqtt/passwd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_acl(const mqtt_acl *acl, const char *text)
{
    static const mqtt_acl_client who[] = {
        {"dev1", NULL}, {"dev1", "alice"}, {"+", "#"}};
    size_t len = strcspn(text, "\n");
    if (len == 0 || len > 1000)
        return;
    for (size_t i = 0; i < sizeof who / sizeof *who; i++) {
        (void)mqtt_acl_check(acl, &who[i], MQTT_ACL_READ, text, len);
        (void)mqtt_acl_check(acl, &who[i], MQTT_ACL_WRITE, text, len);
        (void)mqtt_acl_check(acl, &who[i], MQTT_ACL_SUBSCRIBE, text, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    mqtt_file_error err;
    mqtt_passwd *pw;
    mqtt_acl *acl;

    memcpy(text, data, size);
    text[size] = '\0';
    if (mqtt_passwd_parse_string("pw", text, &pw, &err) == HM_OK) {
        (void)mqtt_passwd_check(pw, "alice", 5, (const uint8_t *)"x", 1);
        mqtt_passwd_destroy(pw);
    } else if (strncmp(err.text, "pw", 2) != 0) {
        abort();
    }
    if (mqtt_acl_parse_string("acl", text, &acl, &err) == HM_OK) {
        check_acl(acl, text);
        mqtt_acl_destroy(acl);
    } else if (strncmp(err.text, "acl:", 4) != 0) {
        abort();
    }
    free(text);
    return 0;
}
