/* apps/chat/editor.c: the input line editor (see editor.h).
 *
 * The escape-sequence state machine knows just enough of VT100 to move the
 * cursor (ESC [ C / D, Home and End as ESC [ H / F or ESC [ 1~ / 4~) and
 * swallows any other sequence whole, so an unknown key never inserts
 * garbage into the line. */
#include "apps/chat/editor.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void chat_editor_init(chat_editor *e)
{
    memset(e, 0, sizeof *e);
}

static bool is_continuation(unsigned char b)
{
    return (b & 0xC0) == 0x80;
}

/* The start of the character before byte offset `at`. */
static size_t prev_char(const chat_editor *e, size_t at)
{
    if (at == 0)
        return 0;
    at--;
    while (at > 0 && is_continuation((unsigned char)e->buf[at]))
        at--;
    return at;
}

static size_t next_char(const chat_editor *e, size_t at)
{
    if (at >= e->len)
        return e->len;
    at++;
    while (at < e->len && is_continuation((unsigned char)e->buf[at]))
        at++;
    return at;
}

/* Deletes buf[from, to). */
static void erase(chat_editor *e, size_t from, size_t to)
{
    memmove(e->buf + from, e->buf + to, e->len - to);
    e->len -= to - from;
    e->cursor = from;
    e->buf[e->len] = '\0';
}

static chat_edit_result insert(chat_editor *e, unsigned char b)
{
    if (e->len == CHAT_EDITOR_MAX)
        return CHAT_EDIT_NONE;
    memmove(e->buf + e->cursor + 1, e->buf + e->cursor, e->len - e->cursor);
    e->buf[e->cursor++] = (char)b;
    e->len++;
    e->buf[e->len] = '\0';
    return CHAT_EDIT_REDRAW;
}

static void delete_word(chat_editor *e)
{
    size_t at = e->cursor;

    while (at > 0 && e->buf[at - 1] == ' ')
        at--;
    while (at > 0 && e->buf[at - 1] != ' ')
        at--;
    erase(e, at, e->cursor);
}

/* The final byte of a CSI sequence (ESC [ ... final). */
static chat_edit_result csi_final(chat_editor *e, unsigned char b)
{
    switch (b) {
    case 'C':
        e->cursor = next_char(e, e->cursor);
        return CHAT_EDIT_REDRAW;
    case 'D':
        e->cursor = prev_char(e, e->cursor);
        return CHAT_EDIT_REDRAW;
    case 'H':
        e->cursor = 0;
        return CHAT_EDIT_REDRAW;
    case 'F':
        e->cursor = e->len;
        return CHAT_EDIT_REDRAW;
    default:
        return CHAT_EDIT_NONE; /* an arrow we do not use, F-keys, ... */
    }
}

static chat_edit_result escape(chat_editor *e, unsigned char b)
{
    if (e->esc == 1) { /* after ESC: '[' or 'O' starts a sequence */
        e->esc = (b == '[' || b == 'O') ? 2 : 0;
        return CHAT_EDIT_NONE;
    }
    if (b >= 0x40 && b <= 0x7E) { /* the final byte */
        e->esc = 0;
        return csi_final(e, b);
    }
    if (b == '1' || b == '7') /* ESC [ 1 ~ and ESC [ 7 ~: Home */
        e->cursor = 0;
    else if (b == '4' || b == '8') /* ESC [ 4 ~ and ESC [ 8 ~: End */
        e->cursor = e->len;
    return CHAT_EDIT_NONE;
}

chat_edit_result chat_editor_key(chat_editor *e, unsigned char b)
{
    if (e->esc)
        return escape(e, b);
    switch (b) {
    case '\r':
    case '\n':
        return CHAT_EDIT_SUBMIT;
    case 0x1B: /* ESC */
        e->esc = 1;
        return CHAT_EDIT_NONE;
    case 0x03: /* Ctrl-C */
        return CHAT_EDIT_INTERRUPT;
    case 0x04: /* Ctrl-D */
        return e->len == 0 ? CHAT_EDIT_EOF : CHAT_EDIT_NONE;
    case 0x01: /* Ctrl-A */
        e->cursor = 0;
        return CHAT_EDIT_REDRAW;
    case 0x05: /* Ctrl-E */
        e->cursor = e->len;
        return CHAT_EDIT_REDRAW;
    case 0x15: /* Ctrl-U */
        erase(e, 0, e->len);
        return CHAT_EDIT_REDRAW;
    case 0x17: /* Ctrl-W */
        delete_word(e);
        return CHAT_EDIT_REDRAW;
    case 0x7F: /* Backspace (DEL) */
    case 0x08: /* Backspace (Ctrl-H) */
        if (e->cursor > 0)
            erase(e, prev_char(e, e->cursor), e->cursor);
        return CHAT_EDIT_REDRAW;
    default:
        return b < 0x20 ? CHAT_EDIT_NONE : insert(e, b);
    }
}

size_t chat_editor_take(chat_editor *e, char *out, size_t cap)
{
    size_t len = e->len;

    snprintf(out, cap, "%s", e->buf);
    chat_editor_init(e);
    return len;
}

/* Characters (not bytes) in buf[from, to). */
static size_t chars_between(const chat_editor *e, size_t from, size_t to)
{
    size_t n = 0;

    for (size_t i = from; i < to; i++)
        n += !is_continuation((unsigned char)e->buf[i]);
    return n;
}

size_t chat_editor_render(const chat_editor *e, const char *prompt,
                          char *out, size_t cap)
{
    size_t back = chars_between(e, e->cursor, e->len);
    int n;

    if (back > 0)
        n = snprintf(out, cap, "\r\x1b[K%s%s\x1b[%zuD", prompt, e->buf, back);
    else
        n = snprintf(out, cap, "\r\x1b[K%s%s", prompt, e->buf);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}
