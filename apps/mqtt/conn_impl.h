/* apps/mqtt/conn_impl.h: the connection receiver's state and the few
 * functions its two files share, private to conn.c and conn_packet.c.
 * conn.c owns the receiver's life (messages in, frames held while the
 * session answers, WebSocket, timers, closing); conn_packet.c owns what
 * each decoded packet does (CONNECT, PUBLISH, PUBREL, the acknowledgements
 * and their order under `always` persistence). Every function here runs on
 * the connection's own receiver (one message at a time) and takes `c`
 * borrowed. */
#ifndef HM_APPS_MQTT_CONN_IMPL_H
#define HM_APPS_MQTT_CONN_IMPL_H

#include "apps/mqtt/broker_impl.h"
#include "apps/mqtt/framer.h"
#include "apps/mqtt/ws.h"

typedef enum {
    CONN_AWAIT_CONNECT, /* nothing yet but the socket */
    CONN_ATTACHING,     /* CONNECT sent on to the session */
    CONN_CONNECTED,     /* CONNACK written */
    CONN_CLOSING,       /* we asked net to close; frames are ignored */
} conn_phase;

/* MQTT over WebSocket: net delivers bytes as they come; the upgrade request
 * is gathered in `head`, then frames go through `wsd` and the MQTT bytes
 * they carry through `mf`, which cuts packets. Allocated only for a
 * WebSocket listener's connections. */
typedef struct conn_ws {
    bool open; /* the upgrade was answered with 101 */
    hm_timer_id connect_timer; /* CONNECT must come by then */
    uint8_t *head;
    size_t head_len;
    mqtt_ws_decoder *wsd;
    mqtt_framer *mf;
} conn_ws;

/* Frames that arrived while the session was busy, in order: a ring,
 * allocated on the first held frame and freed when it empties. */
typedef struct held_ring {
    uint32_t head, count, cap;
    hm_msg *items[];
} held_ring;

/* Cluster mode only (ADR 0105): where the session lives, and the grace
 * timer armed when that node goes away; while attaching (ADR 0295), when
 * the first attach went out and the timer of the next try. */
typedef struct conn_cluster {
    char *session_node; /* NULL until the session says */
    hm_timer_id session_timer;
    hm_timer_id attach_timer;
    uint64_t attach_since_ms; /* 0: no attach sent yet */
    bool attach_retried;      /* logged once per connection */
    struct mqtt_blob *fwd;    /* a SUBSCRIBE or UNSUBSCRIBE sent on and not
                                 yet taken by the session; NULL: none */
    uint64_t fwd_since_ms;
    hm_timer_id fwd_timer;
    uint32_t fwd_seq; /* numbers the forwards: a late answer is ignored */
} conn_cluster;

/* The layout is kept small for idle connections (ADR 0150): what only
 * some connections need (WebSocket, held frames, routing scratch, QoS 2
 * ids) hangs behind pointers that stay NULL until it is needed. */
typedef struct mqtt_conn {
    mqtt_broker *b;
    hm_conn *conn;    /* from "net.opened" */
    hm_addr *session; /* "mqtt/session/<client id>" once CONNECTed */
    const char *client_id; /* borrowed: the end of session's name */
    char *username;        /* NULL: anonymous */
    conn_ws *ws;           /* NULL: plain MQTT over TCP */
    held_ring *held;       /* NULL: nothing held */
    mqtt_pub *will;        /* NULL: none, or already published/discarded */
    mqtt_qos2_ids *in_qos2;      /* from the session; NULL: none yet */
    mqtt_deliveries *deliveries; /* routing scratch; NULL until needed */
    conn_cluster *cl;            /* cluster mode; NULL: a single node */
    uint8_t phase;       /* conn_phase */
    uint8_t close_cause; /* hm_err: see net_closed */
    bool waiting;    /* the session is handling a forwarded packet */
    bool net_closed; /* "net.closed" came while waiting; see on_closed */
    bool will_retain;
    bool fallback;   /* a partition: a temporary clean session */
    bool persistent; /* CleanSession 0: inbound QoS 2 ids are stored */
    bool detached;   /* "mqtt.detach" was sent to the session */
    struct ack_queue *acks; /* `always` persistence only; else NULL */
} mqtt_conn;

/* With the `always` durability policy a PUBACK, PUBREC or PUBCOMP leaves
 * only once what it acknowledges is committed (its receipt, saver.c), and
 * acknowledgements leave in the order the packets came [MQTT-4.6.0-2/3]:
 * a FIFO whose entries are numbered by a per-connection sequence. */
typedef struct pending_ack {
    uint8_t type;
    bool done;
    uint16_t packet_id;
} pending_ack;

struct ack_queue {
    pending_ack *v; /* ring */
    size_t head, count, cap;
    uint64_t head_seq; /* the sequence number of v[head] */
};

/* The connection's id, for logs (0 before "net.opened"). */
static inline unsigned long long mqtt_conn_id(const mqtt_conn *c)
{
    return c->conn ? (unsigned long long)hm_conn_id(c->conn) : 0;
}

/* conn.c */

/* Whether the client may `access` the topic (`topic`, `len` borrowed). */
bool mqtt_conn_allows(mqtt_conn *c, mqtt_acl_access access, const char *topic,
                      size_t len);
/* The routing scratch, made on first use; returns borrowed (until the
 * receiver ends). */
mqtt_deliveries *mqtt_conn_deliveries(mqtt_conn *c);
/* Closes the connection for `why` (borrowed), once; publishes the will
 * unless the client said DISCONNECT; `abort` resets instead of flushing. */
void mqtt_conn_close(hm_ctx *ctx, mqtt_conn *c, const char *why, bool abort);
/* Sends `m` (taken) to the session; closes the connection if it cannot. */
void mqtt_conn_send_session(hm_ctx *ctx, mqtt_conn *c, hm_msg *m);
/* Sends the session the attach for the CONNECT just taken (`persistent`,
 * `fallback` and `username` set); in a cluster as a request, tried again
 * while the members disagree about where the session lives (ADR 0295). */
void mqtt_conn_attach(hm_ctx *ctx, mqtt_conn *c);
/* Sends a SUBSCRIBE or UNSUBSCRIBE (`data`, `len` borrowed), whole, to
 * the session; in a cluster as a request, sent again like the attach
 * (ADR 0295). The caller holds further frames until "mqtt.done". */
void mqtt_conn_forward(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                       size_t len);
/* Tells the session the connection is gone, once, handing back the
 * inbound QoS 2 ids. */
void mqtt_conn_detach(hm_ctx *ctx, mqtt_conn *c);

/* conn_packet.c */

/* One whole packet from the client (`data`, `len` borrowed): decodes it
 * and does what its type says (the one switch on packet type). */
void mqtt_conn_packet(hm_ctx *ctx, mqtt_conn *c, const uint8_t *data,
                      size_t len);
/* Marks the acknowledgement numbered `seq` done (when `mark`) and writes
 * every done acknowledgement at the head of the queue, in order. */
void mqtt_conn_ack_done(hm_ctx *ctx, mqtt_conn *c, uint64_t seq, bool mark);

#endif
