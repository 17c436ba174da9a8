/* cluster/handshake.c: hello, challenge, proof.
 *
 * Each side draws its own nonce, so neither can make the other reuse a
 * transcript; each side checks the other's proof with hm_auth_verify's
 * constant-time comparison. The states only move forward, and any message
 * other than the one expected next ends the handshake. */
#include "cluster/handshake.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

typedef enum {
    ST_INIT,           /* dialler: before start; acceptor: awaiting hello */
    ST_SENT_HELLO,     /* dialler: awaiting challenge */
    ST_SENT_CHALLENGE, /* acceptor: awaiting proof */
    ST_DONE,
    ST_FAILED,
} state;

struct hm_handshake {
    hm_auth_role role;
    state st;
    char cluster[HM_NODE_NAME_MAX + 1];
    char remote[HM_NODE_ADDR_MAX + 1];
    hm_wire_node self, peer;
    const hm_auth_secret *secret;
    uint8_t my_nonce[HM_AUTH_NONCE_LEN], peer_nonce[HM_AUTH_NONCE_LEN];
};

hm_err hm_handshake_create(const hm_handshake_config *cfg, hm_auth_role role,
                           hm_handshake **out)
{
    if (!hm_wire_name_is_valid(cfg->cluster) ||
        !hm_wire_name_is_valid(cfg->self->name) || !cfg->secret)
        return HM_EINVAL;
    hm_handshake *h = hm_calloc(1, sizeof *h);
    h->role = role;
    h->st = ST_INIT;
    strcpy(h->cluster, cfg->cluster);
    snprintf(h->remote, sizeof h->remote, "%s",
             cfg->remote ? cfg->remote : "?");
    h->self = *cfg->self;
    h->secret = cfg->secret;
    *out = h;
    return HM_OK;
}

void hm_handshake_destroy(hm_handshake *h)
{
    if (!h)
        return;
    OPENSSL_cleanse(h, sizeof *h);
    hm_free(h);
}

bool hm_handshake_is_done(const hm_handshake *h)
{
    return h->st == ST_DONE;
}

const hm_wire_node *hm_handshake_peer(const hm_handshake *h)
{
    return &h->peer;
}

static hm_err refuse(hm_handshake *h, hm_err err, const char *why)
{
    h->st = ST_FAILED;
    HM_LOG_WARN("CL-AUTH-REFUSED",
                "link with %s (claims to be %s, inc %llu): %s", h->remote,
                h->peer.name[0] ? h->peer.name : "?",
                (unsigned long long)h->peer.inc, why);
    return err;
}

/* The transcript of this link; the dialler's and the acceptor's fields
 * come from self or peer depending on our role. */
static hm_auth_transcript transcript(const hm_handshake *h)
{
    bool dialler = h->role == HM_AUTH_DIALLER;
    const hm_wire_node *d = dialler ? &h->self : &h->peer;
    const hm_wire_node *a = dialler ? &h->peer : &h->self;
    return (hm_auth_transcript){
        .cluster = h->cluster,
        .dialler = d->name,
        .dialler_inc = d->inc,
        .dialler_nonce = dialler ? h->my_nonce : h->peer_nonce,
        .acceptor = a->name,
        .acceptor_inc = a->inc,
        .acceptor_nonce = dialler ? h->peer_nonce : h->my_nonce,
    };
}

/* Our proof over the transcript, as hex into `hex`. */
static hm_err prove_hex(hm_handshake *h, char *hex)
{
    uint8_t proof[HM_AUTH_PROOF_LEN];
    hm_auth_transcript t = transcript(h);
    hm_err err = hm_auth_prove(h->secret, h->role, &t, proof);
    if (err == HM_OK)
        hm_auth_to_hex(proof, sizeof proof, hex);
    OPENSSL_cleanse(proof, sizeof proof);
    return err;
}

/* Whether `hex` is the peer's valid proof. */
static bool check_peer_proof(const hm_handshake *h, const char *hex)
{
    uint8_t proof[HM_AUTH_PROOF_LEN];
    hm_auth_role peer_role =
        h->role == HM_AUTH_DIALLER ? HM_AUTH_ACCEPTOR : HM_AUTH_DIALLER;
    hm_auth_transcript t = transcript(h);
    return hm_auth_from_hex(hex, proof, sizeof proof) == HM_OK &&
           hm_auth_verify(h->secret, peer_role, &t, proof);
}

/* The checks both sides make on the peer's identity. */
static hm_err check_peer(hm_handshake *h, const char *cluster,
                         const hm_wire_node *peer, const char *nonce_hex)
{
    h->peer = *peer;
    if (strcmp(cluster, h->cluster) != 0)
        return refuse(h, HM_EDENIED, "another cluster");
    if (strcmp(peer->name, h->self.name) == 0)
        return refuse(h, HM_EDENIED, "it uses our own node name");
    if (hm_auth_from_hex(nonce_hex, h->peer_nonce, HM_AUTH_NONCE_LEN) != HM_OK)
        return refuse(h, HM_EPROTO, "malformed nonce");
    return HM_OK;
}

hm_err hm_handshake_start(hm_handshake *h, hm_wire_msg *out)
{
    if (h->role != HM_AUTH_DIALLER || h->st != ST_INIT)
        return HM_EINVAL;
    if (hm_auth_nonce(h->my_nonce) != HM_OK)
        return HM_ESYS;
    memset(out, 0, sizeof *out);
    out->type = HM_WIRE_HELLO;
    strcpy(out->u.hello.cluster, h->cluster);
    out->u.hello.from = h->self;
    out->u.hello.proto_min = HM_CLUSTER_PROTO_MIN;
    out->u.hello.proto_max = HM_CLUSTER_PROTO_MAX;
    hm_auth_to_hex(h->my_nonce, HM_AUTH_NONCE_LEN, out->u.hello.nonce);
    h->st = ST_SENT_HELLO;
    return HM_OK;
}

/* Acceptor: hello -> challenge. */
static hm_err on_hello(hm_handshake *h, const hm_wire_msg *in, hm_wire_msg *out)
{
    hm_err err = check_peer(h, in->u.hello.cluster, &in->u.hello.from,
                            in->u.hello.nonce);
    if (err != HM_OK)
        return err;
    if (in->u.hello.proto_max < HM_CLUSTER_PROTO_MIN ||
        in->u.hello.proto_min > HM_CLUSTER_PROTO_MAX)
        return refuse(h, HM_EPROTO, "no common protocol version");
    if (hm_auth_nonce(h->my_nonce) != HM_OK)
        return refuse(h, HM_ESYS, "no random nonce");
    memset(out, 0, sizeof *out);
    out->type = HM_WIRE_CHALLENGE;
    strcpy(out->u.challenge.cluster, h->cluster);
    out->u.challenge.from = h->self;
    out->u.challenge.proto = in->u.hello.proto_max < HM_CLUSTER_PROTO_MAX
                                 ? in->u.hello.proto_max
                                 : HM_CLUSTER_PROTO_MAX;
    hm_auth_to_hex(h->my_nonce, HM_AUTH_NONCE_LEN, out->u.challenge.nonce);
    if ((err = prove_hex(h, out->u.challenge.proof)) != HM_OK)
        return refuse(h, err, "cannot compute a proof");
    h->st = ST_SENT_CHALLENGE;
    return HM_OK;
}

/* Dialler: challenge -> proof. */
static hm_err on_challenge(hm_handshake *h, const hm_wire_msg *in,
                           hm_wire_msg *out)
{
    hm_err err = check_peer(h, in->u.challenge.cluster, &in->u.challenge.from,
                            in->u.challenge.nonce);
    if (err != HM_OK)
        return err;
    if (in->u.challenge.proto < HM_CLUSTER_PROTO_MIN ||
        in->u.challenge.proto > HM_CLUSTER_PROTO_MAX)
        return refuse(h, HM_EPROTO, "it chose a version we do not speak");
    if (!check_peer_proof(h, in->u.challenge.proof))
        return refuse(h, HM_EDENIED, "wrong proof: not our cluster secret");
    memset(out, 0, sizeof *out);
    out->type = HM_WIRE_PROOF;
    if ((err = prove_hex(h, out->u.proof.proof)) != HM_OK)
        return refuse(h, err, "cannot compute a proof");
    h->st = ST_DONE;
    return HM_OK;
}

hm_err hm_handshake_on_message(hm_handshake *h, const hm_wire_msg *in,
                               hm_wire_msg *out, bool *has_out)
{
    *has_out = false;
    hm_err err;
    if (h->role == HM_AUTH_ACCEPTOR && h->st == ST_INIT &&
        in->type == HM_WIRE_HELLO) {
        err = on_hello(h, in, out);
        *has_out = err == HM_OK;
        return err;
    }
    if (h->role == HM_AUTH_DIALLER && h->st == ST_SENT_HELLO &&
        in->type == HM_WIRE_CHALLENGE) {
        err = on_challenge(h, in, out);
        *has_out = err == HM_OK;
        return err;
    }
    if (h->role == HM_AUTH_ACCEPTOR && h->st == ST_SENT_CHALLENGE &&
        in->type == HM_WIRE_PROOF) {
        if (!check_peer_proof(h, in->u.proof.proof))
            return refuse(h, HM_EDENIED, "wrong proof: not our cluster secret");
        h->st = ST_DONE;
        return HM_OK;
    }
    return refuse(h, HM_EPROTO, "message out of turn in the handshake");
}
