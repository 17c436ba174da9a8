"""Integration test of a session writing to its client's connection on
another node while the cluster link is full (docs/adr/0230).

Two broker processes, a and b, form a cluster with a small per-peer buffer
(--cluster-buffer-limit). A paho subscriber connects to a with a client id
whose session lives on b (placement.py), so every message it receives is
written by the session on b and crosses the link as "mqtt.out". Node a is
stopped (SIGSTOP) while a raw publisher on b floods QoS 1 and QoS 0
messages: the link's buffer fills, the proxy for the connection fills, and
the session's sends get HM_EFULL. Then a goes on (SIGCONT) and the test
counts what the subscriber got: every message, in order, none twice. Before
ADR 0230 the messages refused with HM_EFULL were lost (QoS 1 ones stayed
"in flight" until a reconnect, QoS 0 ones were dropped).

Nothing asserts on time. The stop lasts until b logs that it held a
message (MQTT-LINK-FULL), bounded well below the failure detector's 2.5 s
(a two-node cluster declares a silent peer dead then), so a is never
declared dead; the test then checks that the stall did happen.
"""

import os
import signal
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqttkit import (WAIT, Client, Proc, Raw, free_port,  # noqa: E402
                     publish_packet, wait_mesh, write_secret)
from placement import client_id_on  # noqa: E402

TMP = tempfile.TemporaryDirectory()
SECRET = write_secret(TMP.name)
CONF = os.path.join(TMP.name, "mqtt.conf")
with open(CONF, "w") as f:
    # No window and no queue bound: the flood reaches the link at once,
    # and nothing is dropped by the session's own limits.
    f.write("max_inflight_messages 0\nmax_queued_messages 0\n")

BUFFER_LIMIT = 128   # messages per peer (the default is 10000)
COUNT = 2400         # > BUFFER_LIMIT + the proxy's mailbox (1024)
STOP_BOUND = 1.2     # seconds a may stay stopped (dead after 2.5 s)


class Node(Proc):
    def __init__(self, name, join=None):
        self.port = free_port()
        args = ["-c", CONF, "-p", str(self.port), "--node", name,
                "--cluster-listen", "127.0.0.1:0",
                "--cluster-secret-file", SECRET,
                "--cluster-buffer-limit", str(BUFFER_LIMIT)]
        if join:
            args += ["--join", join]
        super().__init__(args, name)
        self.started()
        self.cluster_addr = self.cluster_address()


def flood(pub, topic, count):
    """Publishes `count` numbered messages on `topic` through `pub` (a
    connected Raw), every fourth at QoS 0, the rest at QoS 1, in one write;
    returns once every QoS 1 one is acknowledged (the broker routed it)."""
    data = b"".join(
        publish_packet(topic, struct.pack("!I", i), qos=0 if i % 4 == 3
                       else 1, pid=(i % 65535) + 1)
        for i in range(count))
    pub.send(data)
    acks = sum(1 for i in range(count) if i % 4 != 3)
    for _ in range(acks):
        pk = pub.read()
        assert pk is not None and pk[0] == 0x40, "expected PUBACK: %r" % (pk,)


class BackpressureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = Node("a")
        cls.b = Node("b", join=cls.a.cluster_addr)
        wait_mesh([cls.a, cls.b])

    @classmethod
    def tearDownClass(cls):
        for n in (cls.a, cls.b):
            if n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
            n.stop()
        bad = [l for n in (cls.a, cls.b) for l in n.sanitizer_reports()]
        if bad:
            raise AssertionError("\n".join(bad[:200]))

    def test_a_full_link_delays_but_loses_nothing(self):
        cid = client_id_on("b", ["a", "b"], "slow")
        topic = "bp/%s/m" % cid
        sub = Client(self.a.port, client_id=cid)
        # Its session on b too: a CONNECT to a session on a stopped node
        # would wait for it.
        pub = Raw(self.b.port)
        pub.connect(client_id_on("b", ["a", "b"], "flood"))
        try:
            self.assertEqual(sub.subscribe("bp/%s/#" % cid, 1), 1)
            os.kill(self.a.proc.pid, signal.SIGSTOP)
            try:
                flood(pub, topic, COUNT)
                # Not an expectation: how long a may stay stopped.
                self.b.wait_log("MQTT-LINK-FULL", timeout=STOP_BOUND)
            finally:
                os.kill(self.a.proc.pid, signal.SIGCONT)
            got = []
            while len(got) < COUNT:
                m = sub.poll(WAIT)
                if m is None:
                    break
                got.append((struct.unpack("!I", m.payload)[0], m.qos))
        finally:
            pub.close()
            sub.disconnect()
        numbers = [n for n, _ in got]
        lost = sorted(set(range(COUNT)) - set(numbers))
        self.assertEqual(lost, [], "%d of %d lost (QoS 1: %d)" % (
            len(lost), COUNT, sum(1 for n in lost if n % 4 != 3)))
        self.assertEqual(numbers, list(range(COUNT)),
                         "duplicated or out of order")
        self.assertTrue(all(q == (0 if n % 4 == 3 else 1) for n, q in got))
        # The scenario did fill the link: the session held messages.
        self.assertGreaterEqual(self.b.count("MQTT-LINK-FULL"), 1,
                                "the link never filled:\n" + self.b.log())
        self.assertEqual(self.a.count("MQTT-SLOW-CLIENT"), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
