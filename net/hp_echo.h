/* net/hp_echo.h: an HP echo service, the smallest complete HP server.
 *
 * Every accepted connection gets its own pinned receiver that runs an
 * hm_hp_session and answers each "msg" envelope with a "msg" carrying the
 * same id and body, from and to swapped. It is what an operator or a test
 * points a client at to check a link end to end, what the net benchmark
 * measures (the whole stack: framing, decode, re-encode, write), and the
 * reference for readers writing their own HP receiver: the receiver below
 * is the pattern every HP server follows (opened -> keep a reference to
 * the connection; frame -> the session; error -> the session; eof -> close;
 * closed -> deactivate).
 *
 * Plug it in as a listener's accept callback:
 *   hm_hp_echo_config ec = {.rt = rt, .agent = "hermes-echo"};
 *   hm_net_listen(net, &(hm_listen_config){..., .accept = hm_hp_echo_accept,
 *                 .accept_arg = &ec, .conn = {.framer = &line_framer}}, &l);
 */
#ifndef HM_NET_HP_ECHO_H
#define HM_NET_HP_ECHO_H

#include "net/net.h"
#include "runtime/runtime.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct hm_hp_echo_config {
    hm_runtime *rt;     /* where the receivers are spawned */
    const char *agent;  /* sent in welcome; borrowed for the listener's life */
    const char *prefix; /* receiver names are "<prefix>/<id>"; NULL: "hp" */
    bool greeted;       /* skip the hello/welcome handshake (benchmarks) */
} hm_hp_echo_config;

/* An hm_net_accept_fn: `arg` is an hm_hp_echo_config (borrowed; it must outlive
 * the listener). Spawns the connection's receiver, which owns a reference
 * to the connection until it closes. Errors: those of hm_runtime_spawn(). */
hm_err hm_hp_echo_accept(void *arg, uint64_t id, const char *peer,
                         hm_addr **owner_out);

#endif
