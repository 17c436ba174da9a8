/* cluster/handshake.h: the link handshake as a small state machine.
 *
 * One hm_handshake per new TCP link. The dialler calls
 * hm_handshake_start() and sends the `cl.hello` it gets; then each side
 * passes every message it receives to hm_handshake_on_message() and sends
 * the reply it gets, until hm_handshake_is_done(). Three messages in all:
 *
 *   dialler  --cl.hello{cluster, node, addr, inc, proto, nonce}-->  acceptor
 *   dialler  <--cl.challenge{..., nonce, proof_acceptor}-----------  acceptor
 *   dialler  --cl.proof{proof_dialler}---------------------------->  acceptor
 *
 * The dialler checks the acceptor's proof before it proves anything, so a
 * node without the secret learns nothing from dialling us; the acceptor is
 * done once the dialler's proof checks. Any refusal (another cluster, a
 * wrong proof, no common protocol version, a node with our own name, a
 * message out of turn) is logged as CL-AUTH-REFUSED with what the peer
 * claimed to be, and returned as an error: the driver then sends an HP error
 * line and closes the link. Pure: no I/O, no clock. */
#ifndef HM_CLUSTER_HANDSHAKE_H
#define HM_CLUSTER_HANDSHAKE_H

#include "cluster/auth.h"
#include "cluster/wire.h"
#include "runtime/err.h"

#include <stdbool.h>

#define HM_CLUSTER_PROTO_MIN 1 /* cluster protocol versions we speak */
#define HM_CLUSTER_PROTO_MAX 1

typedef struct hm_handshake hm_handshake;

typedef struct hm_handshake_config {
    const char *cluster;          /* borrowed for the call; copied */
    const hm_wire_node *self;     /* borrowed for the call; copied */
    const hm_auth_secret *secret; /* borrowed until hm_handshake_destroy */
    const char *remote;           /* the socket peer, for logs; copied */
} hm_handshake_config;

/* Create the handshake of one link, on the `role` side. `cfg` as above.
 * Returns owned in `*out`. Errors: HM_EINVAL if the cluster or node name is
 * not valid on the wire. */
hm_err hm_handshake_create(const hm_handshake_config *cfg, hm_auth_role role,
                           hm_handshake **out);

/* Wipes the nonces and frees. Accepts NULL. */
void hm_handshake_destroy(hm_handshake *h);

/* Dialler only: the `cl.hello` to send first, written to `*out` (the
 * caller owns it; hm_wire_msg_fini). Errors: HM_EINVAL if called on the
 * acceptor side or twice; HM_ESYS if no random nonce could be drawn. */
hm_err hm_handshake_start(hm_handshake *h, hm_wire_msg *out);

/* Feed one received message `in` (borrowed). If there is a reply to send,
 * it is written to `*out` and `*has_out` is set. Errors: HM_EDENIED (the
 * peer does not hold the secret, is of another cluster, or uses our name),
 * HM_EPROTO (a message out of turn, or no common protocol version); the
 * link must then be closed. */
hm_err hm_handshake_on_message(hm_handshake *h, const hm_wire_msg *in,
                               hm_wire_msg *out, bool *has_out);

/* Whether the peer is authenticated. */
bool hm_handshake_is_done(const hm_handshake *h);

/* The authenticated peer's identity. Returns borrowed until
 * hm_handshake_destroy; valid once hm_handshake_is_done(). */
const hm_wire_node *hm_handshake_peer(const hm_handshake *h);

#endif
