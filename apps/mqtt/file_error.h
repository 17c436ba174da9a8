/* apps/mqtt/file_error.h: the message a configuration-style file parser
 * (config.c, passwd.c, acl.c) gives back when it refuses a file.
 *
 * One type so that the broker reports every refused file the same way:
 * "FILE:LINE: what was wrong", ready for a log line or stderr. */
#ifndef HM_APPS_MQTT_FILE_ERROR_H
#define HM_APPS_MQTT_FILE_ERROR_H

typedef struct mqtt_file_error {
    char text[512];
} mqtt_file_error;

#endif
