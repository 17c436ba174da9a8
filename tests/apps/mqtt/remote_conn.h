/* tests/apps/mqtt/remote_conn.h: a real broker in the process whose
 * client's connection is played by a test receiver named like one on
 * another node ("mqtt/conn/..."), attached with no socket, so everything
 * the session tells the client reaches that receiver as "mqtt.out"
 * messages, as a cluster proxy would get them; the receiver's mailbox bound
 * is the test's to choose. Shared by tests/apps/mqtt/test_session_room.c
 * and tests/stress/stress_session_room.c (ADR 0300). Header-only. */
#ifndef HM_TESTS_APPS_MQTT_REMOTE_CONN_H
#define HM_TESTS_APPS_MQTT_REMOTE_CONN_H

#include "apps/mqtt/broker.h"
#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/session_msg.h"
#include "runtime/alloc.h"
#include "runtime/runtime.h"

typedef struct remote_conn {
    mqtt_broker *b;
    hm_addr *conn; /* the test receiver (a reference) */
    hm_addr *sess; /* the session's address (a reference) */
} remote_conn;

/* Starts a broker (ephemeral port, 2 workers, no $SYS, no queue bound)
 * and spawns `handler` as `conn_name` (borrowed) with mailbox bound
 * `limit`; interns `session` (borrowed, "mqtt/session/<id>"). Returns the
 * first error. */
static inline hm_err remote_conn_start(remote_conn *rc, const char *conn_name,
                                       const char *session,
                                       hm_handler_fn handler, uint32_t limit)
{
    mqtt_broker_config cfg = {.port = -1, .host = "127.0.0.1",
                              .threads = 2, .sys_disabled = true,
                              .unlimited_queue = true};
    hm_receiver r = {.handler = handler, .pinned = true,
                     .mailbox_limit = limit};
    hm_err err;

    *rc = (remote_conn){0};
    if ((err = mqtt_broker_create(&cfg, &rc->b)) != HM_OK ||
        (err = hm_runtime_spawn(rc->b->rt, conn_name, &r, &rc->conn)) !=
            HM_OK)
        return err;
    return hm_runtime_intern(rc->b->rt, session, &rc->sess);
}

/* CONNECT (clean), as a connection on another node sends it. */
static inline hm_err remote_conn_attach(remote_conn *rc)
{
    mqtt_attach *a = hm_calloc(1, sizeof *a);
    hm_msg *m;
    hm_err err;

    a->conn_name = hm_strdup(hm_addr_name(rc->conn));
    a->clean = true;
    m = hm_msg_create(&mqtt_attach_type, a, 0);
    if ((err = hm_runtime_send_from(rc->b->rt, rc->conn, rc->sess, m)) !=
        HM_OK)
        hm_msg_destroy(m);
    return err;
}

/* Delivers numbered QoS 0 message `i` (its payload: the 4 bytes of `i`). */
static inline hm_err remote_conn_deliver(remote_conn *rc, uint32_t i)
{
    mqtt_pub *pub = mqtt_pub_create("s/t", 3, &i, sizeof i, 0, false);
    hm_msg *m = hm_msg_create(&mqtt_deliver_type, pub, 0);
    hm_err err = hm_runtime_send(rc->b->rt, rc->sess, m);

    if (err != HM_OK)
        hm_msg_destroy(m);
    return err;
}

static inline void remote_conn_stop(remote_conn *rc)
{
    hm_addr_release(rc->sess);
    hm_addr_release(rc->conn);
    if (rc->b) {
        mqtt_broker_stop(rc->b);
        mqtt_broker_destroy(rc->b);
    }
}

#endif
