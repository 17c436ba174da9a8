"""A node joining an MQTT cluster must not disconnect the clients of the
nodes that stay (issue 8, docs/adr/0266), end to end.

Run by test_cluster_sessions.sh with HERMES_MQTT set to the broker binary.
Two hermes-mqtt nodes n1 and n2 clustered on loopback (free ports, no
persistence), clients (python3-paho-mqtt) connected to n1 whose sessions
live on n1 or n2 now and on n3 once it joins (placement.py picks such
client ids). n3 joins through n2 only, so its link to n1, where the
clients' connections are, comes up after the one to n2; meanwhile it
adopts the sessions. Meanwhile a publisher on n2 streams QoS 1 to every
session; then n2 is killed. Every client must stay connected (0
disconnects) and receive every acknowledged message, and a message
published on n1 after n2's death.

The waits on a clock: after the adoptions and after n2's death, longer
than the 2 s a connection gives its session to say where it moved
(SESSION_GRACE_MS in apps/mqtt/conn.c) before it closes; a disconnect
would happen inside them.
Every other wait is a bounded guard against hangs (an event, a log
line), never an expectation about speed."""

import os
import sys
import threading
import time
import unittest
import uuid
import warnings

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_sessions_test as cs  # noqa: E402
from mqttkit import WAIT, node_logs, stop_all, wait_for  # noqa: E402
from placement import session_owner  # noqa: E402

CLIENTS = 6  # connected to n1, moving to n3 when it joins
GRACE = 3.0  # seconds: more than the connection's 2 s wait for "moved"


class Watched:
    """A paho client that counts its disconnects; `received` in order."""

    def __init__(self, port, client_id, topic, clean):
        self.received, self.disconnects = [], 0
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id=client_id, clean_session=clean)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = lambda c, u, m: self.received.append(
            m.payload.decode())
        self.c.on_disconnect = self._on_disconnect
        self.topic = topic
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def _on_disconnect(self, client, userdata, rc):
        self.disconnects += 1

    def close(self):
        self.c.on_disconnect = None
        self.c.disconnect()
        self.c.loop_stop()


class Join(unittest.TestCase):

    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)
        self.nodes, self.clients = [], []

    def tearDown(self):
        for c in self.clients:
            c.close()
        stop_all(self.nodes)

    def logs(self, word=None):
        return node_logs(self.nodes, word)

    def test_a_join_disconnects_no_client_of_a_staying_node(self):
        n1 = cs.Node("n1")
        self.nodes.append(n1)
        n2 = cs.Node("n2", join=n1.cluster_addr)
        self.nodes.append(n2)
        for n in (n1, n2):
            self.assertTrue(n.wait_log("): up"), n.log())
        prefix = "jn/" + uuid.uuid4().hex[:8]
        subs = []
        for i in range(CLIENTS):
            now = ["n1", "n2"][i % 2]  # the session's node before the join
            while True:
                cid = "jn%d-%s" % (i, uuid.uuid4().hex[:8])
                if session_owner(cid, ["n1", "n2"]) == now and \
                        session_owner(cid, ["n1", "n2", "n3"]) == "n3":
                    break
            s = Watched(n1.port, cid, "%s/%d" % (prefix, i), clean=i % 4 < 2)
            self.clients.append(s)
            self.assertTrue(wait_for(lambda: s.c.is_connected()))
            s.c.subscribe(s.topic, 1)
            self.assertTrue(s.subscribed.wait(WAIT))
            subs.append(s)
        # Routes from n2 to every session first (filters propagate
        # asynchronously).
        for s in subs:
            self.assertTrue(wait_for(lambda: cs.mosquitto_pub(
                n2.port, s.topic, "probe") or "probe" in s.received),
                self.logs())
        # A QoS 1 stream from n2 to every session while n3 joins through
        # n2 only.
        pub = mqtt.Client(client_id="jpub-" + uuid.uuid4().hex[:8])
        pub.connect("127.0.0.1", n2.port, keepalive=30)
        pub.loop_start()
        stop, acked = threading.Event(), []

        def stream():
            k = 0
            while not stop.is_set():
                infos = [(s, pub.publish(s.topic, "s%d" % k, 1))
                         for s in subs]
                for s, i in infos:
                    i.wait_for_publish(WAIT)
                    if i.is_published():
                        acked.append((s, "s%d" % k))
                k += 1
                time.sleep(0.005)
        t = threading.Thread(target=stream)
        t.start()
        try:
            self.assertTrue(wait_for(lambda: len(acked) > 10 * len(subs)))
            n3 = cs.Node("n3", join=n2.cluster_addr)
            self.nodes.append(n3)
            for s in subs:
                self.assertTrue(n3.wait_log("client %s: session adopted" %
                                            s.c._client_id.decode()),
                                self.logs("MQTT-"))
            self.assertTrue(n3.wait_log("): up", 2), n3.log())
            time.sleep(GRACE)
        finally:
            stop.set()
            t.join(WAIT)
            pub.disconnect()
            pub.loop_stop()
        want = {s: set(p for x, p in acked if x is s) for s in subs}
        wait_for(lambda: all(want[s] <= set(s.received) for s in subs))
        missing = [len(want[s] - set(s.received)) for s in subs]
        # n2, where half the sessions were before the join, dies: a
        # connection that did not hear where its session went takes it
        # as lost with n2 and closes after its 2 s wait.
        n2.kill()
        self.assertTrue(n1.wait_log("MQTT-NODE-GONE member n2"), n1.log())
        time.sleep(GRACE)
        for s in subs:
            cs.mosquitto_pub(n1.port, s.topic, "last")
        wait_for(lambda: all("last" in s.received for s in subs))
        missing = [m + ("last" not in s.received)
                   for m, s in zip(missing, subs)]
        counts = [s.disconnects for s in subs]
        print("\n%d clients on n1 while n3 joined: acknowledged messages "
              "missing %s, disconnects %s; %d adopted before n3's link to "
              "n1 was up" % (len(subs), missing, counts,
                             n3.count("no link to mqtt/conn/n1/")),
              file=sys.stderr)
        self.assertEqual(missing, [0] * len(subs), self.logs("MQTT-"))
        self.assertEqual(counts, [0] * len(subs), self.logs("MQTT-"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
