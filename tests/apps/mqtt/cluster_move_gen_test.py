"""Move generations (issue 8; docs/adr/0290), end to end: where two states
of one session meet, the newer wins whatever the order they arrive in.
Four hermes-mqtt nodes clustered on loopback (free ports) over one
redis-server of their own, real paho clients, kill -9 and SIGSTOP as in
cluster_moves_test.py.

Run by test_cluster_moves.sh with HERMES_MQTT set to the broker binary.

- A relay's give-back racing a newer stored state: a persistent QoS 1
  session placed on n1 moves to n4 when n4 joins; the move is held open
  (n3 stopped, so n1 waits for its cut) and n1's relay keeps custody of
  the state as it left. The client reconnects through n4 and subscribes
  to a second topic (with durability `always` the SUBACK means n4's record
  in Redis has it), then n4 is killed. n1 gets two states: its relay's
  copy (older: one subscription) and n4's record from the fail-over
  (newer: two), in either order. The session must continue on n1 with
  both subscriptions: the client, back through n2, gets session
  present = 1 and a message published on the second topic.
  Before move generations n1 kept the relay's copy (the fail-over skipped
  the record, or the session dropped it as "live here already") and the
  second subscription was lost, in every run.

Waits are bounded guards against hangs (an event, a log line), never
expectations about speed."""

import os
import signal
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import persist_failover_test as pf  # noqa: E402
import cluster_sessions_test as cs  # noqa: E402
from cluster_move_edges_test import cid_where, stop  # noqa: E402
from mqttkit import Client  # noqa: E402


class Generations(pf.RedisClusterCase):
    PREFIX = "hermes-move-gen-"

    def test_a_give_back_yields_to_a_newer_stored_state(self):
        n1, n2, n3 = self.cluster()
        cid = cid_where("gb", (self.NAMES, "n1"),
                        (self.NAMES + ["n4"], "n4"))
        base = "gb/" + uuid.uuid4().hex[:8]
        first, second = base + "/a", base + "/b"
        sub = Client(n2.port, client_id=cid, clean=False)
        self.clients.append(sub)
        sub.subscribe(first, 1)
        try:
            # n3 stopped: n1's move to n4 waits for n3's cut, so n1's
            # relay keeps custody of the state as it left.
            self.assertTrue(stop(n3))
            n4 = self.node("n4", join=n1.cluster_addr)
            self.assertTrue(n4.wait_log("client %s: session adopted" % cid),
                            self.logs("MQTT-"))
            # n2 routes to n4 (its detach must reach the session there).
            self.assertTrue(n2.wait_log("MQTT-MEMBER member n4"), n2.log())
            self.assertTrue(n4.wait_log("MQTT-MEMBER member n2"), n4.log())
            # Through n4 (its own client now); the SUBACK waits for n4's
            # commit (`always`).
            sub.disconnect()
            sub = Client(n4.port, client_id=cid, clean=False)
            self.clients.append(sub)
            self.assertTrue(sub.session_present, self.logs("MQTT-"))
            self.assertEqual(sub.subscribe(second, 1), 1)
            ended = n1.count("client %s: every member" % cid)
            n4.kill()
            self.assertTrue(n1.wait_log("MQTT-NODE-GONE member n4"),
                            self.logs("MQTT-"))
        finally:
            n3.proc.send_signal(signal.SIGCONT)
        if ended:  # n3 was declared dead meanwhile: no move to test
            self.skipTest("the move ended before the kill (a slow "
                          "machine: n3 stopped too long)")
        # Both states reach n1: the relay's copy and n4's record.
        self.assertTrue(n1.wait_log("client %s: its new owner n4 is gone"
                                    % cid), self.logs("MQTT-"))
        self.assertTrue(n1.wait_log("MQTT-FAILOVER member n4 died"),
                        self.logs("MQTT-"))
        # The client comes back through n2, which must route to n1 by then.
        self.assertTrue(n2.wait_log("MQTT-NODE-GONE member n4"),
                        self.logs("MQTT-"))
        sub = Client(n2.port, client_id=cid, clean=False)
        self.clients.append(sub)
        self.assertTrue(sub.session_present, self.logs("MQTT-"))
        cs.mosquitto_pub(n1.port, second, "b1")
        cs.mosquitto_pub(n1.port, first, "end")
        got = []
        while True:
            m = sub.next()
            got.append(m.payload.decode())
            if m.payload == b"end":
                break
        self.assertIn("b1", got, "the subscription made through n4 was "
                      "lost\n%s" % self.logs("MQTT-"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
