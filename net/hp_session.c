/* net/hp_session.c: the HP v1 protocol engine of one connection.
 *
 * Dispatch on the decoded type is one switch (STYLE 10); every failure maps
 * to one HP code in one place (send_error), and the code table in hp.h
 * decides whether the connection survives it. */
#include "net/hp_session.h"

#include "runtime/alloc.h"

#include <jansson.h>

void hm_hp_session_init(hm_hp_session *s, hm_hp_role role, const char *agent)
{
    s->role = role;
    s->agent = agent;
    s->greeted = false;
    s->version = 0;
    s->errors = 0;
}

hm_err hm_hp_session_send(hm_conn *c, const hm_hp_envelope *env)
{
    char *line;
    size_t len;
    hm_err err = hm_hp_encode(env, 0, &line, &len);

    if (err != HM_OK)
        return err;
    if ((err = hm_conn_write_take(c, line, len)) != HM_OK)
        hm_free(line);
    return err;
}

hm_err hm_hp_session_send_error(hm_hp_session *s, hm_conn *c, hm_hp_code code,
                                const char *reason, uint64_t id)
{
    json_t *body = hm_hp_error_body(code, reason, NULL);
    hm_hp_envelope env = {.type = "error", .id = id, .body = body};
    hm_err err = hm_hp_session_send(c, &env);

    json_decref(body);
    s->errors++;
    if (hm_hp_code_closes(code))
        hm_conn_close(c); /* graceful: the error line goes out first */
    return err;
}

hm_err hm_hp_session_start(hm_hp_session *s, hm_conn *c, uint64_t id)
{
    json_t *body =
        hm_hp_hello_body(HM_HP_VERSION_MIN, HM_HP_VERSION_MAX, s->agent);
    hm_hp_envelope env = {.type = "hello", .id = id, .body = body};
    hm_err err = hm_hp_session_send(c, &env);

    json_decref(body);
    return err;
}

static hm_err on_hello(hm_hp_session *s, hm_conn *c, const hm_hp_msg *m)
{
    json_t *body;
    hm_hp_envelope env = {.type = "welcome", .id = m->id};
    unsigned v;
    hm_err err;

    if (hm_hp_negotiate(m->u.hello.min, m->u.hello.max, &v) != HM_OK) {
        hm_hp_session_send_error(s, c, HM_HP_NO_COMMON_VERSION,
                                 "no common HP version", m->id);
        return HM_EPROTO;
    }
    body =
        hm_hp_welcome_body(v, HM_HP_VERSION_MIN, HM_HP_VERSION_MAX, s->agent);
    env.body = body;
    err = hm_hp_session_send(c, &env);
    json_decref(body);
    s->greeted = true;
    s->version = v;
    return err;
}

static hm_err on_ping(hm_conn *c, const hm_hp_msg *m)
{
    hm_hp_envelope env = {.type = "pong",
                          .id = m->id,
                          .from = m->to,
                          .to = m->from,
                          .body = m->body};

    return hm_hp_session_send(c, &env);
}

/* Dispatches a decoded message. True in *pass if it is the application's. */
static hm_err dispatch(hm_hp_session *s, hm_conn *c, const hm_hp_msg *m,
                       bool *pass)
{
    *pass = false;
    if (!s->greeted && m->kind != HM_HP_HELLO &&
        !(s->role == HM_HP_CLIENT &&
          (m->kind == HM_HP_WELCOME || m->kind == HM_HP_ERROR))) {
        hm_hp_session_send_error(s, c, HM_HP_HELLO_REQUIRED, "send hello first",
                                 m->id);
        return HM_EPROTO;
    }
    switch (m->kind) {
    case HM_HP_HELLO:
        if (s->role == HM_HP_CLIENT) {
            hm_hp_session_send_error(s, c, HM_HP_UNKNOWN_TYPE,
                                     "a client does not take hello", m->id);
            return HM_EPROTO;
        }
        return on_hello(s, c, m);
    case HM_HP_PING:
        return on_ping(c, m);
    case HM_HP_WELCOME:
        if (s->role == HM_HP_CLIENT && !s->greeted) {
            s->greeted = true;
            s->version = m->u.welcome.version;
        }
        *pass = true;
        return HM_OK;
    case HM_HP_PONG:
    case HM_HP_ERROR:
    case HM_HP_MSG:
    default:
        *pass = true;
        return HM_OK;
    }
}

hm_err hm_hp_session_on_frame(hm_hp_session *s, hm_conn *c, const uint8_t *line,
                              size_t len, hm_hp_msg *out, bool *have)
{
    hm_hp_msg m;
    hm_hp_fail fail;
    bool pass;
    hm_err err;

    *have = false;
    if (hm_hp_is_blank(line, len))
        return HM_OK;
    if (hm_hp_decode(line, len, &m, &fail) != HM_OK) {
        hm_hp_session_send_error(s, c, fail.code, fail.reason, fail.id);
        return HM_EPROTO;
    }
    err = dispatch(s, c, &m, &pass);
    if (pass) {
        *out = m;
        *have = true;
    } else {
        hm_hp_msg_fini(&m);
    }
    return err;
}

void hm_hp_session_on_framing_error(hm_hp_session *s, hm_conn *c, hm_err err)
{
    if (err == HM_ETOOBIG)
        hm_hp_session_send_error(s, c, HM_HP_LINE_TOO_LONG,
                                 "line longer than the limit", 0);
    else
        hm_hp_session_send_error(s, c, HM_HP_INTERNAL, hm_err_str(err), 0);
    hm_conn_close(c); /* the stream cannot be resynchronised */
}
