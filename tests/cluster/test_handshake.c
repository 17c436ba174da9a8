/* tests/cluster/test_handshake.c: the link handshake between two sides,
 * every message through the real codec. */
#include "cluster/handshake.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char id[64];
    int count;
} captured;

/* Each Criterion test runs in its own process, so a test installs the
 * capturing sink once, with a `static` capture that outlives it, and need
 * not restore the default. */
static void capture(void *arg, hm_log_level level, const char *id,
                    const char *line)
{
    captured *c = arg;
    snprintf(c->id, sizeof c->id, "%s", id);
    c->count++;
}

static hm_auth_secret *secret(const char *k)
{
    hm_auth_secret *s;
    cr_assert_eq(hm_auth_secret_from_bytes(k, strlen(k), &s), HM_OK);
    return s;
}

static hm_handshake *side(const char *cluster, const char *name,
                          const hm_auth_secret *s, hm_auth_role role)
{
    hm_wire_node self = {.inc = 42};
    strcpy(self.name, name);
    snprintf(self.addr, sizeof self.addr, "%s.example:7946", name);
    hm_handshake *h;
    cr_assert_eq(
        hm_handshake_create(&(hm_handshake_config){.cluster = cluster,
                                                   .self = &self,
                                                   .secret = s,
                                                   .remote = "127.0.0.1:1"},
                            role, &h),
        HM_OK);
    return h;
}

/* Carries `m` over the "wire": encode, decode. Consumes `m`. */
static hm_wire_msg carry(hm_wire_msg *m)
{
    char *line;
    hm_wire_msg out;
    cr_assert_eq(hm_wire_encode_line(m, &line), HM_OK);
    cr_assert_eq(hm_wire_decode_line(line, strlen(line), &out), HM_OK);
    hm_free(line);
    hm_wire_msg_fini(m);
    return out;
}

/* Runs the handshake; returns the first error (HM_OK if both are done). */
static hm_err run(hm_handshake *d, hm_handshake *a)
{
    hm_wire_msg m, in;
    bool has;
    hm_err err;
    cr_assert_eq(hm_handshake_start(d, &m), HM_OK);
    in = carry(&m);
    err = hm_handshake_on_message(a, &in, &m, &has);
    hm_wire_msg_fini(&in);
    if (err != HM_OK)
        return err;
    in = carry(&m);
    err = hm_handshake_on_message(d, &in, &m, &has);
    hm_wire_msg_fini(&in);
    if (err != HM_OK)
        return err;
    in = carry(&m);
    err = hm_handshake_on_message(a, &in, &m, &has);
    hm_wire_msg_fini(&in);
    cr_expect_not(has);
    return err;
}

/* What most tests start from: one secret, a dialler `dn` of cluster `dc`,
 * an acceptor `an` of cluster `ac`, and the log captured into `seen`. */
typedef struct {
    hm_auth_secret *s;
    hm_handshake *d, *a;
} pair;

static captured seen; /* outlives the test: the sink keeps it */

static pair pair_open(const char *dc, const char *dn, const char *ac,
                      const char *an)
{
    pair p = {.s = secret("the cluster secret, 32 bytes ok")};
    p.d = side(dc, dn, p.s, HM_AUTH_DIALLER);
    p.a = side(ac, an, p.s, HM_AUTH_ACCEPTOR);
    hm_log_set_sink(capture, &seen);
    return p;
}

static void pair_close(pair *p)
{
    hm_handshake_destroy(p->d);
    hm_handshake_destroy(p->a);
    hm_auth_secret_destroy(p->s);
}

Test(handshake, two_nodes_with_the_secret_authenticate_each_other)
{
    pair p = pair_open("prod", "n1", "prod", "n2");
    cr_assert_eq(run(p.d, p.a), HM_OK);
    cr_expect(hm_handshake_is_done(p.d));
    cr_expect(hm_handshake_is_done(p.a));
    cr_expect_str_eq(hm_handshake_peer(p.d)->name, "n2");
    cr_expect_str_eq(hm_handshake_peer(p.a)->name, "n1");
    cr_expect_eq(hm_handshake_peer(p.a)->inc, 42);
    pair_close(&p);
}

Test(handshake, dialler_without_the_secret_is_refused_and_logged)
{
    hm_auth_secret *good = secret("the cluster secret, 32 bytes ok");
    hm_auth_secret *bad = secret("a guess at the secret, 32 bytes");
    hm_handshake *d = side("prod", "intruder", bad, HM_AUTH_DIALLER);
    hm_handshake *a = side("prod", "n2", good, HM_AUTH_ACCEPTOR);
    hm_log_set_sink(capture, &seen);
    /* The dialler refuses first: the acceptor's proof does not verify
     * under the wrong secret, so the intruder never proves anything. */
    cr_expect_eq(run(d, a), HM_EDENIED);
    cr_expect_str_eq(seen.id, "CL-AUTH-REFUSED");
    cr_expect_not(hm_handshake_is_done(a));
    hm_handshake_destroy(d);
    hm_handshake_destroy(a);
    hm_auth_secret_destroy(good);
    hm_auth_secret_destroy(bad);
}

Test(handshake, forged_proof_is_refused_by_the_acceptor)
{
    pair p = pair_open("prod", "n1", "prod", "n2");
    hm_wire_msg m, in;
    bool has;
    cr_assert_eq(hm_handshake_start(p.d, &m), HM_OK);
    in = carry(&m);
    cr_assert_eq(hm_handshake_on_message(p.a, &in, &m, &has), HM_OK);
    hm_wire_msg_fini(&in);
    hm_wire_msg_fini(&m);
    /* An attacker replays the acceptor's own kind of proof, or any guess. */
    hm_wire_msg forged = {.type = HM_WIRE_PROOF};
    memset(forged.u.proof.proof, 'a', HM_AUTH_PROOF_HEX_LEN);
    cr_expect_eq(hm_handshake_on_message(p.a, &forged, &m, &has), HM_EDENIED);
    cr_expect_not(hm_handshake_is_done(p.a));
    cr_expect_eq(seen.count, 1);
    pair_close(&p);
}

Test(handshake, node_of_another_cluster_is_refused)
{
    pair p = pair_open("staging", "n1", "prod", "n2");
    cr_expect_eq(run(p.d, p.a), HM_EDENIED);
    cr_expect_str_eq(seen.id, "CL-AUTH-REFUSED");
    pair_close(&p);
}

Test(handshake, node_using_our_own_name_is_refused)
{
    pair p = pair_open("prod", "n1", "prod", "n1");
    cr_expect_eq(run(p.d, p.a), HM_EDENIED);
    pair_close(&p);
}

Test(handshake, message_out_of_turn_ends_the_handshake)
{
    hm_auth_secret *s = secret("the cluster secret, 32 bytes ok");
    hm_handshake *a = side("prod", "n2", s, HM_AUTH_ACCEPTOR);
    hm_wire_msg m, hb = {.type = HM_WIRE_HEARTBEAT};
    bool has;
    hm_log_set_sink(capture, &seen);
    cr_expect_eq(hm_handshake_on_message(a, &hb, &m, &has), HM_EPROTO);
    cr_expect_not(has);
    cr_expect_eq(hm_handshake_start(a, &m), HM_EINVAL);
    hm_handshake_destroy(a);
    hm_auth_secret_destroy(s);
}

Test(handshake, hello_without_a_common_version_is_refused)
{
    pair p = pair_open("prod", "n1", "prod", "n2");
    hm_wire_msg m, reply;
    bool has;
    cr_assert_eq(hm_handshake_start(p.d, &m), HM_OK);
    m.u.hello.proto_min = HM_CLUSTER_PROTO_MAX + 1;
    m.u.hello.proto_max = HM_CLUSTER_PROTO_MAX + 3;
    cr_expect_eq(hm_handshake_on_message(p.a, &m, &reply, &has), HM_EPROTO);
    pair_close(&p);
}
