"""Session moves at their edges (issue 8; docs/adr/0165, 0225, 0260), end
to end: three or four hermes-mqtt nodes clustered on loopback (free ports,
no persistence), real clients (paho, and a raw socket where the test needs
a client that does not acknowledge), kill -9 and SIGSTOP as in
cluster_moves_test.py.

Run by test_cluster_moves.sh with HERMES_MQTT set to the broker
binary.

- A clean leave whose new owner dies during the move: a persistent QoS 1
  session placed on n1 with messages queued; n3 is stopped (SIGSTOP) so
  that n1's move waits for its cut, n1 stops cleanly (SIGTERM) and hands
  the session to n2, and n2 is killed before the move is over; n3 is
  resumed. The session must continue on n3: session present = 1 and every
  queued message.
- A node that joins and leaves at once: four persistent sessions placed on
  n1 with messages queued move to n4 when it joins, and n4 is stopped
  cleanly (SIGTERM) as soon as n1 hands over the first: some states reach
  n4 after its leave has collected its sessions. Each session must come
  back (session present = 1, its whole queue).
- A session with no subscriptions moving, on a join and on a clean leave:
  it has QoS 1 messages in flight (received by a client that did not
  acknowledge them, then unsubscribed). After the move a reconnection gets
  session present = 1 and the messages again with DUP.

Waits are bounded guards against hangs (an event, a log line), never
expectations about speed."""

import os
import signal
import struct
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import persist_failover_test as pf  # noqa: E402
import cluster_sessions_test as cs  # noqa: E402
from mqttkit import (WAIT, Client, Raw, mqtt_str,  # noqa: E402
                     packet, wait_for)
from placement import session_owner  # noqa: E402

BACKLOG = 20  # QoS 1 messages queued for the session before the move
INFLIGHT = 3  # QoS 1 messages in flight in the session without filters


def cid_where(prefix, *placements):
    """A fresh client id placed on node p among members ms for every
    (ms, p) in `placements`."""
    while True:
        cid = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
        if all(session_owner(cid, ms) == p for ms, p in placements):
            return cid


def stop(node):
    """SIGSTOP, and wait until every thread of `node` is stopped (on a busy
    machine a thread may run on for a while after the signal)."""
    node.proc.send_signal(signal.SIGSTOP)
    tasks = "/proc/%d/task" % node.proc.pid

    def state(tid):
        try:
            with open("%s/%s/stat" % (tasks, tid)) as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "T"  # gone
    return wait_for(lambda: all(state(t) in "Tt" for t in os.listdir(tasks)))


class Edges(pf.RedisClusterCase):
    PREFIX = "hermes-move-edges-"

    def assert_queue_kept(self, node, cid, topic, acked):
        """`cid` reconnects through `node`: session present, and every
        message of `acked` (once at least, in order) before a marker."""
        sub = Client(node.port, client_id=cid, clean=False)
        self.clients.append(sub)
        self.assertTrue(sub.session_present, "%s\n%s" %
                        (cid, self.logs("MQTT-")))
        cs.mosquitto_pub(node.port, topic, "end")
        got = []
        while True:
            m = sub.next()
            if m.payload == b"end":
                break
            got.append(m.payload.decode())
        self.assertEqual(sorted(set(got), key=got.index), acked,
                         self.logs("MQTT-"))
        sub.disconnect()

    # ------------------------------ a leave whose new owner dies mid-move

    def test_a_leave_survives_the_death_of_its_new_owner(self):
        n1, n2, n3 = self.cluster(redis=False)
        cid = cid_where("lv", (self.NAMES, "n1"), (["n2", "n3"], "n2"))
        topic = "lv/" + uuid.uuid4().hex[:8]
        sub = Client(n3.port, client_id=cid, clean=False)
        sub.subscribe(topic, 1)
        sub.disconnect()
        # Through n1: a PUBACK there means queued in the session.
        acked = pf.publish_all(n1.port, topic, 1,
                               ["q%d" % k for k in range(BACKLOG)])
        self.assertEqual(len(acked), BACKLOG)
        # n3 stopped: n1's move to n2 waits for n3's cut.
        try:
            self.assertTrue(stop(n3))
            n1.proc.send_signal(signal.SIGTERM)
            self.assertTrue(n2.wait_log("client %s: state held here" % cid),
                            self.logs("MQTT-"))
            n2.kill()
            self.assertTrue(n1.wait_log("MQTT-NODE-GONE member n2"),
                            self.logs("MQTT-"))
        finally:
            n3.proc.send_signal(signal.SIGCONT)
        self.assertTrue(n3.wait_log("MQTT-NODE-GONE member n1"),
                        self.logs("MQTT-"))
        n3.wait_log("client %s: session adopted" % cid, timeout=5)
        self.assert_queue_kept(n3, cid, topic, acked)
        # The kill came before n1 was gone.
        self.assertEqual(n1.count("client %s: its new owner n2 is gone"
                                  % cid), 1, self.logs("MQTT-"))

    # ----------------------------------- a node that joins and leaves at once

    def test_a_join_and_a_leave_at_once_keep_the_state(self):
        n1, n2, n3 = self.cluster(redis=False)
        cids = [cid_where("jl%d" % i, (self.NAMES, "n1"),
                          (self.NAMES + ["n4"], "n4")) for i in range(4)]
        topic = "jl/" + uuid.uuid4().hex[:8]
        for cid in cids:
            sub = Client(n2.port, client_id=cid, clean=False)
            sub.subscribe("%s/%s" % (topic, cid), 1)
            sub.disconnect()
        acked = {cid: pf.publish_all(n1.port, "%s/%s" % (topic, cid), 1,
                                     ["q%d" % k for k in range(10)])
                 for cid in cids}
        # n4 stops as soon as n1 hands it the first session: some of the
        # states reach it after its leave has begun.
        n4 = self.node("n4", join=n1.cluster_addr, redis=False)
        self.assertTrue(n1.wait_log("session moves to its new owner"),
                        self.logs("MQTT-"))
        n4.proc.send_signal(signal.SIGTERM)
        n4.proc.wait(WAIT)
        for n in (n1, n2, n3):  # those that saw it come see it go
            if n is n1 or n.count("MQTT-MEMBER member n4"):
                self.assertTrue(n.wait_log("MQTT-NODE-GONE member n4"),
                                self.logs("MQTT-"))
        for cid in cids:
            n1.wait_log("client %s: session adopted" % cid, timeout=8)
        for cid in cids:
            self.assert_queue_kept(n2, cid, "%s/%s" % (topic, cid),
                                   acked[cid])

    # ------------------------------------ a session without subscriptions

    def park_inflight(self, node, cid, topic):
        """Session `cid` (persistent) left with INFLIGHT QoS 1 messages in
        flight and no subscription. Returns their payloads."""
        r = Raw(node.port)
        self.assertEqual(r.connect(cid, clean=False), (False, 0))
        r.subscribe(topic, 1)
        r.close()
        sent = ["f%d" % k for k in range(INFLIGHT)]
        for p in sent:
            cs.mosquitto_pub(node.port, topic, p)
        r = Raw(node.port)
        self.assertEqual(r.connect(cid, clean=False), (True, 0))
        got = []
        while len(got) < INFLIGHT:  # read, never acknowledged
            first, body = r.read()
            if first >> 4 == 3:
                got.append(body[2 + len(topic) + 2:].decode())
        self.assertEqual(got, sent)
        r.send(packet(0xA2, struct.pack("!H", 7) + mqtt_str(topic)))
        while r.read()[0] != 0xB0:  # UNSUBACK
            pass
        r.close()
        return sent

    def assert_inflight_kept(self, node, cid, sent):
        r = Raw(node.port)
        try:
            try:
                present, rc = r.connect(cid, clean=False)
            except (OSError, AssertionError, TypeError) as e:
                raise AssertionError("no CONNACK (%s)\n%s" %
                                     (e, self.logs("MQTT-")))
            self.assertEqual((present, rc), (True, 0), self.logs("MQTT-"))
            got = []
            while len(got) < len(sent):
                first, body = r.read()
                if first >> 4 == 3:
                    self.assertTrue(first & 8, "resent without DUP")
                    (tl,) = struct.unpack("!H", body[:2])
                    got.append(body[2 + tl + 2:].decode())
            self.assertEqual(got, sent)
        finally:
            r.close()

    def test_a_session_without_subscriptions_moves_on_a_join(self):
        n1, n2, n3 = self.cluster(redis=False)
        cid = cid_where("nj", (self.NAMES, "n1"),
                        (self.NAMES + ["n4"], "n4"))
        topic = "nj/" + uuid.uuid4().hex[:8]
        sent = self.park_inflight(n2, cid, topic)
        n4 = self.node("n4", join=n1.cluster_addr, redis=False)
        self.assertTrue(n4.wait_log("client %s: session adopted" % cid),
                        self.logs("MQTT-"))
        for n in (n1, n2, n3, n4):
            self.assertTrue(n.wait_log("): up", 3), self.logs("MQTT-"))
        self.assert_inflight_kept(n2, cid, sent)

    def test_a_session_without_subscriptions_moves_on_a_leave(self):
        n1, n2, n3 = self.cluster(redis=False)
        cid = cid_where("nl", (self.NAMES, "n1"), (["n2", "n3"], "n2"))
        topic = "nl/" + uuid.uuid4().hex[:8]
        sent = self.park_inflight(n3, cid, topic)
        n1.stop()
        self.assertTrue(n3.wait_log("MQTT-NODE-GONE member n1"),
                        self.logs("MQTT-"))
        self.assert_inflight_kept(n3, cid, sent)


if __name__ == "__main__":
    unittest.main(verbosity=2)
