/* apps/chat/editor.h: the client's input line editor.
 *
 * The terminal client reads the keyboard byte by byte (raw mode) and feeds
 * each byte here; the editor keeps the line being typed and the cursor, and
 * says what the client should do next: redraw the line, submit it, or quit.
 * Rendering produces the bytes that redraw the prompt line in place, so an
 * incoming message can be printed above it (clear the line, print, render
 * again) without garbling what the user is typing.
 *
 * Key decision: pure. No terminal, no I/O: a byte goes in, a result comes
 * out, so every key is unit tested (tests/apps/chat/test_editor.c). Text is
 * UTF-8: the cursor and backspace move over whole characters. */
#ifndef CHAT_EDITOR_H
#define CHAT_EDITOR_H

#include <stddef.h>

#define CHAT_EDITOR_MAX 1100 /* bytes of a line: a command plus its text */

typedef enum {
    CHAT_EDIT_NONE,      /* nothing visible changed (mid escape sequence) */
    CHAT_EDIT_REDRAW,    /* the line changed: render it again */
    CHAT_EDIT_SUBMIT,    /* Enter: take the line with chat_editor_take() */
    CHAT_EDIT_EOF,       /* Ctrl-D on an empty line */
    CHAT_EDIT_INTERRUPT, /* Ctrl-C */
} chat_edit_result;

/* Storage provided by the caller. Fields are private. */
typedef struct chat_editor {
    char buf[CHAT_EDITOR_MAX + 1];
    size_t len;    /* bytes in buf */
    size_t cursor; /* byte offset of the cursor, on a character boundary */
    int esc;       /* escape sequence state: 0 none, 1 after ESC, 2 CSI */
} chat_editor;

void chat_editor_init(chat_editor *e);

/* Handles one input byte: printable bytes (and UTF-8) insert at the cursor;
 * Backspace (0x7f or 0x08) deletes before it; Ctrl-A / Home and Ctrl-E /
 * End move to the ends; Left / Right (ESC [ D / C) move by a character;
 * Ctrl-U clears the line; Ctrl-W deletes the word before the cursor; Enter
 * (CR or LF) submits. Bytes past CHAT_EDITOR_MAX are dropped. */
chat_edit_result chat_editor_key(chat_editor *e, unsigned char byte);

/* Copies the line into `out` (`cap` bytes, NUL-terminated, truncated if
 * needed), clears the editor, and returns the line's length. */
size_t chat_editor_take(chat_editor *e, char *out, size_t cap);

/* The bytes that redraw the prompt line: carriage return, clear the line,
 * `prompt` (borrowed), the text, and the cursor moved back to its place.
 * Writes at most `cap` bytes to `out` (NUL-terminated) and returns the
 * length. */
size_t chat_editor_render(const chat_editor *e, const char *prompt,
                          char *out, size_t cap);

#endif
