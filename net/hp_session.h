/* net/hp_session.h: one HP v1 connection's protocol engine, for receivers.
 *
 * A receiver that owns an HP connection feeds every frame (and a framing
 * error) to its session; the session answers what the core protocol
 * answers by itself (welcome to hello, pong to ping, an error line to bad
 * input, closing the connection when docs/protocol.md says so) and hands
 * the receiver only what is for the application: "msg", "error", "pong"
 * and "welcome" messages. Both roles are here: a server waits for hello; a
 * client sends hello with hm_hp_session_start() and waits for welcome.
 *
 * A session is plain state owned by the receiver (no threads, no locks);
 * it writes through the connection handle it is given (borrowed). */
#ifndef HM_NET_HP_SESSION_H
#define HM_NET_HP_SESSION_H

#include "net/conn.h"
#include "net/hp.h"

typedef enum { HM_HP_SERVER, HM_HP_CLIENT } hm_hp_role;

typedef struct hm_hp_session {
    hm_hp_role role;
    const char *agent; /* borrowed, sent in hello/welcome; NULL: none */
    bool greeted;      /* version agreed */
    unsigned version;  /* the agreed version once greeted */
    uint64_t errors;   /* error lines sent to the peer */
} hm_hp_session;

/* Initialises `s` for `role`; `agent` is borrowed for the session's life. */
void hm_hp_session_init(hm_hp_session *s, hm_hp_role role, const char *agent);

/* Client: sends hello with our version range. Errors: those of
 * hm_conn_write_take(). */
hm_err hm_hp_session_start(hm_hp_session *s, hm_conn *c, uint64_t id);

/* Handles one frame (borrowed). On HM_OK with `*have` true, `out` holds a
 * message for the application (the caller hm_hp_msg_fini()s it); with
 * `*have` false the session dealt with the frame. Returns HM_EPROTO when
 * the frame was bad (the error line is already queued and, if the code
 * says so, the connection is closing), or a write error. */
hm_err hm_hp_session_on_frame(hm_hp_session *s, hm_conn *c, const uint8_t *line,
                              size_t len, hm_hp_msg *out, bool *have);

/* Handles "net.error" (the framing error `err`): sends line_too_long or
 * invalid_json and closes the connection. */
void hm_hp_session_on_framing_error(hm_hp_session *s, hm_conn *c, hm_err err);

/* Sends an error line (code, reason borrowed, correlated to id; 0: none),
 * and closes the connection if the code closes. */
hm_err hm_hp_session_send_error(hm_hp_session *s, hm_conn *c, hm_hp_code code,
                                const char *reason, uint64_t id);

/* Sends `env` (borrowed) as one line. Errors: those of hm_hp_encode() and
 * hm_conn_write_take(). */
hm_err hm_hp_session_send(hm_conn *c, const hm_hp_envelope *env);

#endif
