"""A SUBACK a session held for a full link survives the session's move
(docs/adr/0296), end to end.

Run by test_cluster_backpressure.sh with HERMES_MQTT set to the broker
binary. Two broker processes, a and b, with a small per-peer buffer
(--cluster-buffer-limit). A raw client connects to a with a client id
whose session lives on b, so every packet it gets is written by the
session on b and crosses the link as "mqtt.out". A publisher on b
floods the client with QoS 1 messages; a moment later the client sends
SUBSCRIBE, which a passes on to b, and a is stopped (SIGSTOP): b's session
takes thousands of deliveries before the SUBSCRIBE, the link to a fills,
and the session holds what it writes (a stall, ADR 0230), the SUBACK
behind them. b then leaves cleanly (SIGTERM): the session moves to a with
its state, and a goes on (SIGCONT). The client must get its SUBACK
(before ADR 0296 the held SUBACK, and the "done" that lets the connection
read on, were lost with the move: the client waited for ever), every
flooded message, and a message published afterwards on the topic it
subscribed to.

Nothing asserts on time; the stops are bounded well below the failure
detector's 2.5 s, and the test checks that the SUBACK was indeed held and
carried (the new owner's MQTT-HANDOFF line): an attempt where it was not
(b had sent it already) checks the rest and starts again, up
to ATTEMPTS times."""

import os
import signal
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_backpressure_test import COUNT, Node  # noqa: E402
from mqttkit import (Raw, node_logs, parse_publish,  # noqa: E402
                     publish_packet, stop_all, subscribe_packet, wait_mesh)
from placement import client_id_on  # noqa: E402

STOP_BOUND = 1.2  # seconds a may stay stopped (dead after 2.5 s)
LEAD = 0.002      # seconds the flood has before the SUBSCRIBE
RUN_FOR = 0.005   # seconds a runs to pass the SUBSCRIBE on
SETTLE = 0.2      # seconds b has to answer it before it leaves
FLOOD = 4 * COUNT  # the outbox refills the stall all the while
ATTEMPTS = 3


def flood_bytes(topic, count):
    """`count` numbered QoS 1 PUBLISHes on `topic`, as one write."""
    return b"".join(publish_packet(topic, struct.pack("!I", i), qos=1,
                                   pid=(i % 65535) + 1)
                    for i in range(count))


class HeldAckTest(unittest.TestCase):

    def setUp(self):
        self.nodes = []

    def tearDown(self):
        stop_all(self.nodes, resume=True)

    def logs(self):
        return node_logs(self.nodes, "MQTT-")

    def test_a_held_suback_moves_with_the_session(self):
        """The timing (b still holding the SUBACK when it leaves) is
        arranged, not certain (a sanitizer build is slower): an attempt
        where the SUBACK was not held checks the rest and tries again."""
        for _ in range(ATTEMPTS):
            stop_all(self.nodes, resume=True)
            a = Node("a")
            self.nodes = [a]
            b = Node("b", join=a.cluster_addr)
            self.nodes.append(b)
            wait_mesh(self.nodes)
            if self.move_while_held(a, b):
                return
        self.fail("b never held the SUBACK when it left, in %d attempts:\n%s"
                  % (ATTEMPTS, self.logs()))

    def move_while_held(self, a, b):
        """The scenario; whether the SUBACK was held and carried."""
        cid = client_id_on("b", ["a", "b"], "held")
        topic = "ha/%s/m" % cid
        sub = Raw(a.port)
        self.assertEqual(sub.connect(cid, clean=False), (False, 0))
        sub.subscribe(topic, 1)
        pub = Raw(b.port)
        pub.connect(client_id_on("b", ["a", "b"], "flood"))
        try:
            # The flood first, so that b's session takes thousands of
            # deliveries before the SUBSCRIBE a passes on; a stops a
            # moment after passing it on, so they fill the link and the
            # SUBACK waits behind them; then b leaves.
            pub.send(flood_bytes(topic, FLOOD))
            time.sleep(LEAD)
            sub.send(subscribe_packet(77, "ha/%s/late" % cid, 1))
            time.sleep(RUN_FOR)
            os.kill(a.proc.pid, signal.SIGSTOP)
            try:
                b.wait_log("MQTT-LINK-FULL", timeout=STOP_BOUND)
                time.sleep(SETTLE)  # b takes the SUBSCRIBE meanwhile
                b.proc.send_signal(signal.SIGTERM)
                b.wait_log("client %s: session moves to a" % cid,
                           timeout=STOP_BOUND)
            finally:
                os.kill(a.proc.pid, signal.SIGCONT)
            got, suback = set(), None
            while suback is None or len(got) < FLOOD:
                pk = sub.read()
                if pk is None:
                    break
                if pk[0] == 0x90:
                    suback = struct.unpack("!H", pk[1][:2])[0]
                elif pk[0] & 0xF0 == 0x30:
                    # Not acknowledged: thousands of PUBACKs at once
                    # would fill the way to the session, which closes
                    # the connection (ADR 0230); with no inflight bound
                    # nothing waits for them.
                    got.add(struct.unpack("!I", parse_publish(*pk)[1])[0])
            self.assertEqual(suback, 77, "no SUBACK:\n" + self.logs())
            lost = sorted(set(range(FLOOD)) - got)
            self.assertEqual(lost, [], "%d of %d lost" % (len(lost), FLOOD))
            # The subscription took effect, and the connection reads on.
            late = Raw(a.port)
            late.connect(client_id_on("a", ["a"], "late"))
            late.send(publish_packet("ha/%s/late" % cid, b"late", qos=0))
            late.close()
            while True:
                pk = sub.read()
                self.assertIsNotNone(pk, "no late message:\n" + self.logs())
                if pk[0] & 0xF0 == 0x30 and parse_publish(*pk)[1] == b"late":
                    break
            # Logged as the new owner sent them (a moment ago, if at all).
            return a.wait_log("answers the old owner held", timeout=2)
        finally:
            pub.close()
            sub.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
