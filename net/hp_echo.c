/* net/hp_echo.c: the HP echo service (see hp_echo.h).
 *
 * One pinned receiver per connection; its state is the connection's HP
 * session and a reference to the connection, released when the receiver
 * deactivates after "net.closed". Nothing is shared between connections,
 * so there are no locks. */
#include "net/hp_echo.h"

#include "net/conn.h"
#include "net/hp.h"
#include "net/hp_session.h"
#include "runtime/alloc.h"

#include <stdio.h>

typedef struct hp_echo {
    hm_hp_session session;
    hm_conn *conn; /* owned reference, from "net.opened" on */
} hp_echo;

static void echo_deactivate(hm_ctx *ctx, void *state, hm_deactivate_reason why)
{
    hp_echo *e = state;

    (void)ctx;
    (void)why;
    hm_conn_release(e->conn);
    hm_free(e);
}

static const hm_hooks echo_hooks = {.deactivate = echo_deactivate};

/* Answers a "msg" with its own body; the session answers everything else
 * the core protocol defines (hello, ping, bad lines). */
static void echo_frame(hp_echo *e, hm_msg *msg)
{
    size_t len;
    const uint8_t *line = hm_net_msg_data(msg, &len);
    hm_hp_msg m;
    bool have;

    if (hm_hp_session_on_frame(&e->session, e->conn, line, len, &m, &have) !=
            HM_OK ||
        !have)
        return;
    if (m.kind == HM_HP_MSG) {
        hm_hp_envelope env = {.type = "msg",
                              .id = m.id,
                              .from = m.to,
                              .to = m.from,
                              .body = m.body};

        hm_hp_session_send(e->conn, &env);
    }
    hm_hp_msg_fini(&m);
}

static hm_err echo_handle(hm_ctx *ctx, void *state, hm_msg *msg)
{
    hp_echo *e = state;
    const hm_type *t = hm_msg_type(msg);

    if (t == &hm_net_opened_type)
        e->conn = hm_conn_ref(hm_net_msg_conn(msg));
    else if (t == &hm_net_frame_type)
        echo_frame(e, msg);
    else if (t == &hm_net_error_type)
        hm_hp_session_on_framing_error(&e->session, e->conn,
                                       hm_net_msg_err(msg));
    else if (t == &hm_net_eof_type)
        hm_conn_close(e->conn);
    else if (t == &hm_net_closed_type)
        hm_ctx_deactivate(ctx);
    return HM_OK;
}

hm_err hm_hp_echo_accept(void *arg, uint64_t id, const char *peer,
                         hm_addr **owner_out)
{
    const hm_hp_echo_config *cfg = arg;
    hp_echo *e = hm_calloc(1, sizeof *e);
    char name[96];

    (void)peer;
    hm_hp_session_init(&e->session, HM_HP_SERVER, cfg->agent);
    if (cfg->greeted) {
        e->session.greeted = true;
        e->session.version = HM_HP_VERSION_MAX;
    }
    snprintf(name, sizeof name, "%s/%llu", cfg->prefix ? cfg->prefix : "hp",
             (unsigned long long)id);
    hm_err err = hm_runtime_spawn(cfg->rt, name,
                                  &(hm_receiver){.handler = echo_handle,
                                                 .state = e,
                                                 .hooks = &echo_hooks,
                                                 .pinned = true},
                                  owner_out);
    if (err != HM_OK)
        hm_free(e);
    return err;
}
