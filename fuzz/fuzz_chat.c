/* fuzz/fuzz_chat.c: libFuzzer target for the chat protocol codec
 * (apps/chat/proto.h) and the terminal client's parsers
 * (apps/chat/command.h).
 *
 * Byte 0 picks the view, byte 1 a buffer size; the rest is the text.
 * - Server view (even byte 0): the text is a line from a client. It is
 *   decoded as HP and, if it is a "msg", parsed as a chat command. A
 *   command that parses is written back as a client writes it
 *   (chat_cmd_data, chat_encode) and must decode and parse again to the
 *   same command (the codec loses nothing it accepts).
 * - Client view (odd byte 0): the text is typed at the prompt (up to its
 *   first newline), in room "lobby" or in none. A line that becomes a
 *   command must encode to a line the server parses to that very command
 *   (what the client sends, the server takes); any other outcome leaves a
 *   NUL-terminated note.
 * In both views the decoded "msg" (or the command's echo) is formatted as
 *   a line from the server into a buffer of the picked size, which must
 *   hold the result (length < size, NUL-terminated).
 * Checked besides: no sanitizer report, no leak. */
#include "apps/chat/command.h"
#include "apps/chat/proto.h"
#include "net/hp.h"
#include "runtime/alloc.h"

#include "fuzz/fuzz_common.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void format(const char *type, const json_t *d, size_t cap)
{
    char *out = malloc(cap);
    size_t n = chat_format_line(type, d, out, cap);

    check(n < cap && (n == 0 || strlen(out) == n));
    free(out);
}

/* `cmd` as the client writes it, decoded and parsed as the server does:
 * must be `cmd` again. */
static void round_trip(const chat_cmd *cmd, size_t cap)
{
    char *line;
    size_t len;
    hm_hp_msg m;
    hm_hp_fail fail;
    chat_cmd again;
    chat_fail why;

    check(chat_encode(chat_cmd_name(cmd->kind), cmd->id, chat_cmd_data(cmd),
                      &line, &len) == HM_OK);
    check(hm_hp_decode((const uint8_t *)line, len - 1, &m, &fail) == HM_OK);
    check(m.kind == HM_HP_MSG);
    check(chat_cmd_parse(m.u.msg.type, m.u.msg.data, m.id, &again, &why) ==
          HM_OK);
    check(again.kind == cmd->kind && again.id == cmd->id &&
          strcmp(again.name, cmd->name) == 0 &&
          strcmp(again.room, cmd->room) == 0 &&
          strcmp(again.text, cmd->text) == 0);
    format(m.u.msg.type, m.u.msg.data, cap);
    hm_hp_msg_fini(&m);
    hm_free(line);
}

static void server_view(const uint8_t *data, size_t size, size_t cap)
{
    hm_hp_msg m;
    hm_hp_fail fail;
    chat_cmd cmd;
    chat_fail why;

    if (hm_hp_decode(data, size, &m, &fail) != HM_OK)
        return;
    if (m.kind == HM_HP_MSG) {
        format(m.u.msg.type, m.u.msg.data, cap);
        if (chat_cmd_parse(m.u.msg.type, m.u.msg.data, m.id, &cmd, &why) ==
            HM_OK)
            round_trip(&cmd, cap);
        else
            check(why.code < CHAT_ERR_COUNT &&
                  memchr(why.reason, '\0', sizeof why.reason));
    }
    hm_hp_msg_fini(&m);
}

static void client_view(const uint8_t *data, size_t size, bool in_room,
                        size_t cap)
{
    size_t len = 0;
    char *text;
    chat_input in;

    while (len < size && data[len] != '\n' && data[len] != '\0')
        len++;
    text = malloc(len + 1);
    memcpy(text, data, len);
    text[len] = '\0';
    chat_input_parse(text, in_room ? "lobby" : "", &in);
    if (in.kind == CHAT_INPUT_SEND) {
        in.cmd.id = 1;
        round_trip(&in.cmd, cap);
    } else {
        check(memchr(in.note, '\0', sizeof in.note) != NULL);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap;

    if (size < 2)
        return 0;
    cap = 1 + (size_t)data[1] * 8; /* 1 .. 2041 bytes */
    if (data[0] & 1)
        client_view(data + 2, size - 2, data[0] & 2, cap);
    else
        server_view(data + 2, size - 2, cap);
    return 0;
}
