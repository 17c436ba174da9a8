/* tests/apps/chat/test_editor.c: the client's line editor and command
 * parser, pure (a byte in, a result out; no terminal). */
#include "apps/chat/command.h"
#include "apps/chat/editor.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

static void type(chat_editor *e, const char *s)
{
    for (; *s; s++)
        chat_editor_key(e, (unsigned char)*s);
}


Test(chat_editor, typed_bytes_make_the_line_and_enter_submits)
{
    chat_editor e;
    char out[CHAT_EDITOR_MAX + 1];

    chat_editor_init(&e);
    type(&e, "hello");
    cr_assert_eq(chat_editor_key(&e, '\r'), CHAT_EDIT_SUBMIT);
    chat_editor_take(&e, out, sizeof out);
    cr_assert_str_eq(out, "hello");
    cr_assert_eq(e.len, 0);
}

Test(chat_editor, left_arrow_then_typing_inserts_in_the_middle)
{
    chat_editor e;
    char out[CHAT_EDITOR_MAX + 1];

    chat_editor_init(&e);
    type(&e, "hllo\x1b[D\x1b[D\x1b[D");
    type(&e, "e");
    chat_editor_take(&e, out, sizeof out);
    cr_assert_str_eq(out, "hello");
}

Test(chat_editor, backspace_removes_a_whole_utf8_character)
{
    chat_editor e;
    char out[CHAT_EDITOR_MAX + 1];

    chat_editor_init(&e);
    type(&e, "caf\xc3\xa9");
    cr_assert_eq(chat_editor_key(&e, 0x7f), CHAT_EDIT_REDRAW);
    chat_editor_take(&e, out, sizeof out);
    cr_assert_str_eq(out, "caf");
}

Test(chat_editor, ctrl_w_deletes_the_last_word_and_ctrl_u_the_line)
{
    chat_editor e;

    chat_editor_init(&e);
    type(&e, "/msg bob hello there\x17");
    cr_assert_str_eq(e.buf, "/msg bob hello ");
    type(&e, "\x15");
    cr_assert_str_eq(e.buf, "");
}

Test(chat_editor, home_end_and_unknown_sequences_never_insert_garbage)
{
    chat_editor e;
    char out[CHAT_EDITOR_MAX + 1];

    chat_editor_init(&e);
    type(&e, "bc\x01"
             "a\x05"
             "d\x1b[A\x1b[1;5C\x1bOP");
    chat_editor_take(&e, out, sizeof out);
    cr_assert_str_eq(out, "abcd");
}

Test(chat_editor, ctrl_d_quits_only_on_an_empty_line_and_ctrl_c_always)
{
    chat_editor e;

    chat_editor_init(&e);
    cr_assert_eq(chat_editor_key(&e, 0x04), CHAT_EDIT_EOF);
    type(&e, "x");
    cr_assert_eq(chat_editor_key(&e, 0x04), CHAT_EDIT_NONE);
    cr_assert_eq(chat_editor_key(&e, 0x03), CHAT_EDIT_INTERRUPT);
}

Test(chat_editor, the_line_never_grows_past_its_limit)
{
    chat_editor e;

    chat_editor_init(&e);
    for (int i = 0; i < CHAT_EDITOR_MAX + 50; i++)
        chat_editor_key(&e, 'x');
    cr_assert_eq(e.len, CHAT_EDITOR_MAX);
}

Test(chat_editor, render_clears_the_line_and_puts_the_cursor_back)
{
    chat_editor e;
    char out[256];

    chat_editor_init(&e);
    type(&e, "h\xc3\xa9llo\x1b[D\x1b[D");
    chat_editor_render(&e, "> ", out, sizeof out);
    cr_assert_str_eq(out, "\r\x1b[K> h\xc3\xa9llo\x1b[2D");
    type(&e, "\x05");
    chat_editor_render(&e, "> ", out, sizeof out);
    cr_assert_str_eq(out, "\r\x1b[K> h\xc3\xa9llo");
}

/* ------------------------------------------------------------ commands */

Test(chat_command, msg_takes_a_user_and_the_rest_of_the_line)
{
    chat_input in;

    chat_input_parse("/msg bob hi there  bob", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_SEND);
    cr_assert_eq(in.cmd.kind, CHAT_CMD_MSG);
    cr_assert_str_eq(in.cmd.name, "bob");
    cr_assert_str_eq(in.cmd.text, "hi there  bob");
}

Test(chat_command, plain_text_goes_to_the_current_room)
{
    chat_input in;

    chat_input_parse("hello all", "lobby", &in);
    cr_assert_eq(in.cmd.kind, CHAT_CMD_SAY);
    cr_assert_str_eq(in.cmd.room, "lobby");
    cr_assert_str_eq(in.cmd.text, "hello all");
    chat_input_parse("hello all", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
}

/* Found by fuzz/fuzz_chat.c: text that is not UTF-8 went out without its
 * text (JSON cannot carry it) and the server answered bad_request. */
Test(chat_command, text_that_is_not_utf8_is_explained_not_sent)
{
    chat_input in;

    chat_input_parse("caf\xe9", "lobby", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
    cr_assert(strstr(in.note, "UTF-8"), "%s", in.note);
    chat_input_parse("/msg bob \xff", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
    chat_input_parse("caf\xc3\xa9", "lobby", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_SEND);
}

Test(chat_command, leave_defaults_to_the_current_room_and_who_to_everyone)
{
    chat_input in;

    chat_input_parse("/leave", "den", &in);
    cr_assert_eq(in.cmd.kind, CHAT_CMD_LEAVE);
    cr_assert_str_eq(in.cmd.room, "den");
    chat_input_parse("/who", "den", &in);
    cr_assert_eq(in.cmd.kind, CHAT_CMD_WHO);
    cr_assert_str_eq(in.cmd.room, "");
    chat_input_parse("/who den", "", &in);
    cr_assert_str_eq(in.cmd.room, "den");
}

Test(chat_command, mistakes_are_explained_not_sent)
{
    chat_input in;

    chat_input_parse("/msg", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
    chat_input_parse("/msg bob", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
    chat_input_parse("/join no/slash", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
    chat_input_parse("/dance", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_ERROR);
    chat_input_parse("   ", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_NONE);
    chat_input_parse("/quit", "", &in);
    cr_assert_eq(in.kind, CHAT_INPUT_QUIT);
}

Test(chat_command, server_lines_read_as_a_person_would_say_them)
{
    json_t *d = json_pack("{s:s,s:s,s:s}", "room", "den", "from", "bob",
                          "text", "hi");
    char out[200];

    chat_format_line("chat.said", d, out, sizeof out);
    cr_assert_str_eq(out, "[den] bob: hi");
    json_decref(d);
    d = json_pack("{s:s,s:s,s:s}", "event", "joined", "user", "ann", "room",
                  "den");
    chat_format_line("chat.presence", d, out, sizeof out);
    cr_assert_str_eq(out, "* ann joined den");
    json_decref(d);
    d = json_pack("{s:[s,s]}", "users", "a", "b");
    chat_format_line("chat.ok", d, out, sizeof out);
    cr_assert_str_eq(out, "* online: a, b");
    json_decref(d);
    cr_assert_eq(chat_format_line("chat.ok", NULL, out, sizeof out), 0);
}
