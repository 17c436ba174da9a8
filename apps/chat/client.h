/* apps/chat/client.h: the terminal chat client (`hermes-chat client`).
 *
 * One connection to one server at a time, an input line at the bottom of
 * the terminal, incoming lines printed above it. With several servers, the
 * client moves to the next one when its server dies, logs in again and
 * rejoins its rooms.
 *
 * Key decision: the client is a plain poll loop over two descriptors (the
 * terminal and the socket) and a ping clock, not a runtime receiver: it
 * must wait on the keyboard, and one connection needs no scheduler (ADR
 * 0071). It shares the protocol codec (proto.h), the line framer
 * (net/line.h), the HP codec (net/hp.h), the editor and the command parser
 * with the rest of Hermes, and only moves bytes itself. */
#ifndef CHAT_CLIENT_H
#define CHAT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct chat_client_config {
    const char *const *servers; /* "HOST:PORT" each, borrowed; in order */
    size_t server_count;        /* >= 1 */
    const char *user;           /* borrowed */
    int in_fd;                  /* keyboard: raw mode if it is a terminal */
    int out_fd;                 /* where lines are printed */
    uint32_t ping_ms;           /* heartbeat period; 0: 10000 */
} chat_client_config;

/* Runs the client until /quit, Ctrl-C, Ctrl-D or end of input, or until
 * no server can be reached. Borrows `cfg`. Restores the terminal on every
 * path. Returns the process exit status (0: a clean quit). */
int chat_client_run(const chat_client_config *cfg);

#endif
