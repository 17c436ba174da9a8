"""Session moves across membership changes that involve a death (issue 8,
docs/adr/0165 and 0225), end to end.

Run by test_cluster_moves.sh with HERMES_MQTT set to the broker binary.
One redis-server (persist_failover_test.Redis: a free loopback port,
nothing written to disk) and three hermes-mqtt nodes clustered on
loopback, all with `persistence_redis` on it, driven by python3-paho-mqtt.

- Rejoin: persistent QoS 1 sessions placed on n1 with messages queued;
  n1 is killed with SIGKILL; the survivors restore the sessions from Redis
  (ADR 0160) and queue more; n1 restarts (a new incarnation, the same
  name) and placement moves the sessions back to it, live: every session
  must be adopted there, and a client reconnecting to n1 gets session
  present = 1 and every acknowledged message, in order.

Waits are bounded guards against hangs (an event, a log line), never
expectations about speed."""

import os
import shutil
import sys
import tempfile
import unittest
import uuid
import warnings

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import persist_failover_test as pf  # noqa: E402
from mqttkit import WAIT, wait_for  # noqa: E402
from placement import session_owner  # noqa: E402

SESSIONS = int(os.environ.get("MOVES_SESSIONS", "4"))  # placed on n1
BACKLOG = 20  # QoS 1 messages queued for each before the kill
AFTER = 10  # and after it, on its survivor


def publish_all(port, topics, payloads):
    """Publishes `payloads` at QoS 1 on each of `topics`; the acknowledged
    (topic, payload) pairs."""
    c = mqtt.Client(client_id="pub-" + uuid.uuid4().hex[:8])
    c.max_inflight_messages_set(50)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    infos = [(t, p, c.publish(t, p, 1)) for t in topics for p in payloads]
    for _, _, i in infos:
        i.wait_for_publish(WAIT)
    acked = [(t, p) for t, p, i in infos if i.is_published()]
    c.disconnect()
    c.loop_stop()
    return acked


class Moves(unittest.TestCase):
    NAMES = ["n1", "n2", "n3"]

    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)
        self.tmp = tempfile.mkdtemp(prefix="hermes-moves-")
        self.redis = pf.Redis(self.tmp)
        self.nodes, self.clients = [], []

    def tearDown(self):
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        for n in self.nodes:
            n.stop()
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        bad = pf.sanitizer_reports(self.nodes)
        if bad:
            raise AssertionError("\n".join(bad[:400]))

    def logs(self, word=None):
        return "\n".join("[%s] %s" % (n.name, l) for n in self.nodes
                         for l in n.lines if not word or word in l)

    def node(self, name, port=None, join=None):
        n = pf.Node(self.tmp, name, self.redis.port, port, join)
        self.nodes.append(n)
        return n

    def cluster(self):
        n1 = self.node("n1")
        n2 = self.node("n2", join=n1.cluster_addr)
        n3 = self.node("n3", join=n1.cluster_addr)
        for n in (n1, n2, n3):
            self.assertTrue(n.wait_log("): up", 2), n.log())
        return n1, n2, n3

    def test_sessions_return_to_a_restarted_node_with_their_queue(self):
        n1, n2, n3 = self.cluster()
        by = {"n2": n2, "n3": n3}
        topic = "rj/" + uuid.uuid4().hex[:8]
        subs = {}
        for i in range(SESSIONS):
            while True:
                cid = "rj%d-%s" % (i, uuid.uuid4().hex[:8])
                if session_owner(cid, self.NAMES) == "n1":
                    break
            s = pf.Subscriber(n1.port, cid, "%s/%d" % (topic, i), 1)
            self.clients.append(s)
            s.c.subscribe(s.topic, 1)
            self.assertTrue(s.subscribed.wait(WAIT))
            s.close()
            subs[cid] = s
        acked = {cid: [] for cid in subs}
        for t, p in publish_all(n1.port, [s.topic for s in subs.values()],
                                ["b%d" % k for k in range(BACKLOG)]):
            acked[next(c for c, s in subs.items() if s.topic == t)].append(p)
        self.assertEqual(sum(map(len, acked.values())), SESSIONS * BACKLOG)
        n1.kill()
        # The survivors restore them from Redis and queue more there.
        for cid, s in subs.items():
            heir = by[session_owner(cid, ["n2", "n3"])]
            self.assertTrue(heir.wait_log("client %s: session restored" %
                                          cid), heir.log())
            more = publish_all(heir.port, [s.topic],
                               ["a%d" % k for k in range(AFTER)])
            self.assertEqual(len(more), AFTER)
            acked[cid] += [p for _, p in more]
        # n1 again, a new incarnation: placement moves them back, live.
        n1b = self.node("n1", port=n1.port, join=n2.cluster_addr)
        self.assertTrue(n1b.wait_log("): up", 2), self.logs())
        for cid in subs:
            self.assertTrue(
                n1b.wait_log("client %s: session adopted" % cid),
                "%s never adopted on the new n1:\n%s" %
                (cid, self.logs("MQTT-")))
        for cid, s in subs.items():
            s.received.clear()
            s.connect(n1b.port)
        self.assertTrue(wait_for(lambda: all(
            len(s.present) == 2 for s in subs.values())), self.logs())
        for cid, s in subs.items():
            self.assertEqual(s.present[-1], 1, cid)
            self.assertTrue(wait_for(lambda: len(s.received) >=
                                     len(acked[cid])),
                            "%s: got %d of %d\n%s" % (
                                cid, len(s.received), len(acked[cid]),
                                self.logs("MQTT-")))
            self.assertEqual(s.received[:len(acked[cid])], acked[cid], cid)


if __name__ == "__main__":
    unittest.main(verbosity=2)
