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
from mqttkit import (WAIT, Client, Proc, Raw,  # noqa: E402
                     connect_packet, free_port, parse_publish,
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


def qos_of(i, mixed):
    return 0 if mixed and i % 4 == 3 else 1


def flood(pub, topic, count, mixed):
    """Publishes `count` numbered messages on `topic` through `pub` (a
    connected Raw) in one write, at QoS 1 (`mixed`: every fourth at QoS 0);
    returns once every QoS 1 one is acknowledged (the broker routed it)."""
    data = b"".join(
        publish_packet(topic, struct.pack("!I", i), qos=qos_of(i, mixed),
                       pid=(i % 65535) + 1)
        for i in range(count))
    pub.send(data)
    acks = sum(qos_of(i, mixed) for i in range(count))
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
        stalls = self.b.count("MQTT-LINK-FULL")
        sub = Client(self.a.port, client_id=cid)
        # Its session on b too: a CONNECT to a session on a stopped node
        # would wait for it.
        pub = Raw(self.b.port)
        pub.connect(client_id_on("b", ["a", "b"], "flood"))
        try:
            self.assertEqual(sub.subscribe("bp/%s/#" % cid, 1), 1)
            os.kill(self.a.proc.pid, signal.SIGSTOP)
            try:
                flood(pub, topic, COUNT, mixed=True)
                # Not an expectation: how long a may stay stopped.
                self.b.wait_log("MQTT-LINK-FULL", stalls + 1,
                                timeout=STOP_BOUND)
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
        self.assertTrue(all(q == qos_of(n, True) for n, q in got))
        # The scenario did fill the link: the session held messages.
        self.assertGreater(self.b.count("MQTT-LINK-FULL"), stalls,
                           "the link never filled:\n" + self.b.log())
        self.assertEqual(self.a.count("MQTT-SLOW-CLIENT"), 0)

    def test_a_takeover_while_held_loses_nothing(self):
        """The client comes back on b while its old connection's node is
        stopped and the session holds messages for it: the held ones are
        dropped with the old connection, the new one gets every message
        once, in order (the in-flight ones again, with DUP), and the old
        connection is closed once its node runs again."""
        cid = client_id_on("b", ["a", "b"], "take")
        topic = "bp/%s/m" % cid
        stalls = self.b.count("MQTT-LINK-FULL")
        takeovers = self.b.count("MQTT-TAKEOVER")
        old = Raw(self.a.port)
        self.assertEqual(old.connect(cid, clean=False), (False, 0))
        old.subscribe("bp/%s/#" % cid, 1)
        pub = Raw(self.b.port)
        pub.connect(client_id_on("b", ["a", "b"], "flood"))
        new = Raw(self.b.port)
        try:
            os.kill(self.a.proc.pid, signal.SIGSTOP)
            try:
                flood(pub, topic, COUNT, mixed=False)
                self.b.wait_log("MQTT-LINK-FULL", stalls + 1,
                                timeout=STOP_BOUND / 2)
                # CONNECT only: its CONNACK waits for the old connection.
                new.send(connect_packet(cid, clean=False))
                self.b.wait_log("MQTT-TAKEOVER", takeovers + 1,
                                timeout=STOP_BOUND / 2)
            finally:
                os.kill(self.a.proc.pid, signal.SIGCONT)
            first, body = new.read()
            self.assertEqual((first, body[0] & 1, body[1]), (0x20, 1, 0))
            got, dups = [], 0
            while len(got) < COUNT:
                pk = new.read()
                if pk is None or pk[0] & 0xF0 != 0x30:
                    break
                t, payload, qos, dup, _, _ = parse_publish(*pk)
                got.append(struct.unpack("!I", payload)[0])
                dups += dup
            # The old connection is closed (after what reached it).
            while old.read() is not None:
                pass
        finally:
            for r in (old, pub, new):
                r.close()
        lost = sorted(set(range(COUNT)) - set(got))
        self.assertEqual(lost, [], "%d of %d lost" % (len(lost), COUNT))
        self.assertEqual(got, list(range(COUNT)), "duplicated or reordered")
        self.assertGreater(dups, 0)  # the in-flight ones, resent
        self.assertGreater(self.b.count("MQTT-LINK-FULL"), stalls,
                           "the link never filled:\n" + self.b.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
