"""Integration tests of hermes-mqtt in cluster mode (issue 8, part A).

Three broker processes ($HERMES_MQTT) on loopback form one cluster (b is
started first, joining a's address before a listens; c joins the address
a logs; the secret file is mode 0600). Real clients
(python3-paho-mqtt, mosquitto_sub) connect to different nodes:

- cross-node publish/subscribe at QoS 0, 1 and 2: 1000 numbered messages
  (binary payloads), counts of lost, duplicated and reordered messages,
  all zero while the links are up;
- a node with no matching subscriber receives nothing (its own
  $SYS/broker/cluster/publishes/received counter);
- overlapping subscriptions on two nodes: one copy per client;
- retained messages set, replaced and cleared on different nodes are the
  same from every node;
- a node killed with SIGKILL: the others see it dead, drop its filters and
  keep serving.

Nothing asserts on time: a subscription is known on the other nodes once
a probe published there reaches it (filter changes from one node travel in
order), and every wait is for an event with a generous guard timeout.
"""

import os
import signal
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqttkit import (WAIT, Client, Proc, await_route,  # noqa: E402
                     free_port, unique, wait_mesh, write_secret)
from placement import client_id_on  # noqa: E402

COUNT = 1000


class Node(Proc):
    """One broker process of the cluster, configured by a file."""

    def __init__(self, tmp, name, secret, join=None, cluster_port=0):
        self.port = free_port()
        conf = os.path.join(tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n"
                    "sys_interval 1\nnode_name %s\n"
                    "cluster_listen 127.0.0.1:%d\ncluster_secret_file %s\n"
                    % (self.port, name, cluster_port, secret))
            if join:
                f.write("cluster_join %s\n" % join)
        super().__init__(["-c", conf], name)
        self.started()
        self.cluster_addr = self.cluster_address()


def sync_filters(pub, sub, probe):
    """Publishes on `probe` through `pub` until `sub` (subscribed to it
    in the same SUBSCRIBE as the filters under test, after them) receives
    it: the publisher's node then knows the earlier filters too."""
    await_route(sub, probe, lambda: pub.publish(probe, b"probe", 0))


def payload(i):
    # Binary on purpose: every byte value, a NUL, and the sequence number.
    return i.to_bytes(4, "big") + bytes(range(256)) + b"\x00end"


def collect(client, n, topic):
    seqs = []
    deadline = time.monotonic() + WAIT + n / 50
    while len(seqs) < n and time.monotonic() < deadline:
        m = client.poll(1.0)
        if m is not None and m.topic == topic:
            assert m.payload[4:] == payload(0)[4:], "payload bytes changed"
            seqs.append(int.from_bytes(m.payload[:4], "big"))
    while True:  # anything more would be a duplicate
        m = client.poll(0.5)
        if m is None:
            return seqs
        if m.topic == topic:
            seqs.append(int.from_bytes(m.payload[:4], "big"))


class SysValue:
    """Follows one $SYS topic of a node."""

    def __init__(self, node, topic):
        self.topic = topic
        # $SYS is node-local: follow it from a session on that node.
        self.client = Client(node, client_id_on(node.name, ["a", "b", "c"]))
        self.client.subscribe(topic, 0)

    def next(self):
        while True:
            m = self.client.next()
            if m.topic == self.topic:
                return m.payload.decode()

    def settled(self):
        """A value seen twice in a row (published a second apart): no
        more traffic is changing it."""
        last = self.next()
        while True:
            v = self.next()
            if v == last:
                return v
            last = v

    def wait_for(self, want):
        deadline = time.monotonic() + WAIT
        v = None
        while time.monotonic() < deadline:
            v = self.next()
            if v == want:
                return v
        return v

    def close(self):
        self.client.close()


class Cluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        secret = write_secret(cls.tmp.name)
        # b starts before its seed a listens: it must keep dialling.
        seed = "127.0.0.1:%d" % free_port()
        cls.b = Node(cls.tmp.name, "b", secret, seed)
        cls.a = Node(cls.tmp.name, "a", secret, None,
                     int(seed.split(":")[1]))
        cls.c = Node(cls.tmp.name, "c", secret, cls.a.cluster_addr)
        cls.nodes = [cls.a, cls.b, cls.c]
        wait_mesh(cls.nodes)  # a full mesh: each sees the two others up

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()
        for n in cls.nodes:
            bad = n.sanitizer_reports()
            if bad:
                raise AssertionError("\n".join(bad))
        cls.tmp.cleanup()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self, node):
        # A session lives on the node placement picks for its client id
        # (ADR 0105); these tests count and route per node, so each
        # client's session lives where it connects.
        c = Client(node, client_id_on(node.name, ["a", "b", "c"]))
        self.clients.append(c)
        return c

    # -------------------------------------------------------- pub/sub

    def cross_node(self, qos):
        topic = "load/q%d/%s" % (qos, uuid.uuid4().hex[:6])
        probe = unique("probe")
        sub = self.client(self.b)
        pub = self.client(self.a)
        sub.subscribe([(topic, qos), (probe, 0)])
        sync_filters(pub, sub, probe)
        infos = [pub.publish(topic, payload(i), qos=qos)
                 for i in range(COUNT)]
        for info in infos:
            info.wait_for_publish(WAIT)
        seqs = collect(sub, COUNT, topic)
        lost = COUNT - len(set(seqs))
        dups = len(seqs) - len(set(seqs))
        self.assertEqual((lost, dups), (0, 0),
                         "qos %d: %d lost, %d duplicated" % (qos, lost, dups))
        self.assertEqual(seqs, sorted(seqs), "order per publisher and topic")

    def test_cross_node_qos0_none_lost_or_duplicated(self):
        self.cross_node(0)

    def test_cross_node_qos1_none_lost_or_duplicated(self):
        self.cross_node(1)

    def test_cross_node_qos2_none_lost_or_duplicated(self):
        self.cross_node(2)

    def test_a_node_without_a_subscriber_receives_nothing(self):
        only_b = unique("onlyb")
        mark = unique("mark")
        probe_b, probe_c = unique("pb"), unique("pc")
        sub_b = self.client(self.b)
        sub_c = self.client(self.c)
        pub = self.client(self.a)
        sub_b.subscribe([(only_b, 1), (probe_b, 0)])
        sub_c.subscribe([(mark, 1), (probe_c, 0)])
        sync_filters(pub, sub_b, probe_b)
        sync_filters(pub, sub_c, probe_c)
        received = SysValue(self.c, "$SYS/broker/cluster/publishes/received")
        try:
            before = int(received.settled())
            infos = [pub.publish(only_b, payload(i), qos=1)
                     for i in range(200)]
            pub.publish(mark, b"after", qos=1).wait_for_publish(WAIT)
            for info in infos:
                info.wait_for_publish(WAIT)
            self.assertEqual(len(collect(sub_b, 200, only_b)), 200)
            m = sub_c.next()
            self.assertEqual((m.topic, m.payload), (mark, b"after"))
            after = int(received.settled())
        finally:
            received.close()
        # The mark crossed to c; the 200 publishes went to b only.
        self.assertEqual(after - before, 1)

    def test_overlapping_subscriptions_on_two_nodes(self):
        base = unique("ov")
        topic = base + "/a/x"
        b1, b2, c1 = (self.client(self.b), self.client(self.b),
                      self.client(self.c))
        pub = self.client(self.a)
        pb1, pb2, pc1 = unique("p"), unique("p"), unique("p")
        b1.subscribe([(base + "/#", 1), (pb1, 0)])
        b2.subscribe([(base + "/+/x", 2), (pb2, 0)])
        # Two filters of one client match: still one copy [MQTT-3.3.5-1].
        c1.subscribe([(base + "/#", 1), (topic, 2), (pc1, 0)])
        for s, p in ((b1, pb1), (b2, pb2), (c1, pc1)):
            sync_filters(pub, s, p)
        infos = [pub.publish(topic, payload(i), qos=1) for i in range(100)]
        for info in infos:
            info.wait_for_publish(WAIT)
        for s in (b1, b2, c1):
            seqs = collect(s, 100, topic)
            self.assertEqual(seqs, list(range(100)))

    def test_a_publish_too_big_to_cross_stays_on_its_node(self):
        topic, probe = unique("big"), unique("pb")
        local, remote = self.client(self.a), self.client(self.b)
        pub = self.client(self.a)
        local.subscribe(topic, 1)
        remote.subscribe([(topic, 1), (probe, 0)])
        sync_filters(pub, remote, probe)
        big = bytes(range(256)) * 3000  # 750 KiB: no cluster line holds it
        pub.publish(topic, big, qos=1).wait_for_publish(WAIT)
        pub.publish(topic, b"small", qos=1).wait_for_publish(WAIT)
        self.assertEqual(local.next().payload, big)
        self.assertEqual(local.next().payload, b"small")
        # The small one came after the big one on the same path.
        self.assertEqual(remote.next().payload, b"small")
        self.assertTrue(self.a.wait_log(lambda l: "MQTT-CL-TOO-BIG" in l))

    # ------------------------------------------------------- retained

    def retained_seen(self, node, filt, sentinel):
        """The retained messages a new subscription on `node` to `filt`
        gets, collected up to the retained `sentinel` (subscribed after
        `filt`, so its retained message comes after those of `filt`)."""
        c = self.client(node)
        c.subscribe(filt, 1)
        c.subscribe(sentinel, 1)
        got = {}
        while True:
            m = c.next()
            if m.topic == sentinel:
                return got
            self.assertTrue(m.retain,
                            "sent because of the subscription: RETAIN=1")
            got[m.topic] = m.payload

    def wait_retained(self, node, filt, sentinel, want):
        deadline = time.monotonic() + WAIT
        got = None
        while time.monotonic() < deadline:
            got = self.retained_seen(node, filt, sentinel)
            if got == want:
                return got
            time.sleep(0.1)
        return got

    def test_retained_is_the_same_from_every_node(self):
        base = unique("ret")
        sentinel = unique("sentinel")
        pa, pc, pb = (self.client(self.a), self.client(self.c),
                      self.client(self.b))
        binary = bytes(range(256)) * 4
        pa.publish(base + "/one", b"from a", qos=1,
                     retain=True).wait_for_publish(WAIT)
        pa.publish(base + "/bin", binary, qos=1,
                     retain=True).wait_for_publish(WAIT)
        pa.publish(sentinel, b"s", qos=1, retain=True).wait_for_publish(WAIT)
        want = {base + "/one": b"from a", base + "/bin": binary}
        for n in self.nodes:
            self.assertEqual(self.wait_retained(n, base + "/#", sentinel,
                                                want), want, n.name)
        # Replaced on c, cleared on b: every node converges to the result.
        pc.publish(base + "/one", b"from c", qos=1,
                     retain=True).wait_for_publish(WAIT)
        pb.publish(base + "/bin", b"", qos=1,
                     retain=True).wait_for_publish(WAIT)
        want = {base + "/one": b"from c"}
        for n in self.nodes:
            self.assertEqual(self.wait_retained(n, base + "/#", sentinel,
                                                want), want, n.name)

    # ------------------------------------------------------ node death

    def test_zz_a_killed_node_is_dropped_and_the_others_keep_serving(self):
        # Runs last (name order): the cluster has two nodes after it.
        doomed = unique("doomed")
        sub_c = self.client(self.c)
        pub = self.client(self.a)
        probe = unique("pc")
        sub_c.subscribe([(doomed + "/#", 1), (probe, 0)])
        sync_filters(pub, sub_c, probe)
        status = SysValue(self.a, "$SYS/broker/cluster/nodes/c/status")
        remote = SysValue(self.a, "$SYS/broker/cluster/filters/remote")
        b_local = SysValue(self.b, "$SYS/broker/cluster/filters/local")
        try:
            self.c.proc.send_signal(signal.SIGKILL)
            self.c.proc.wait(WAIT)
            self.assertEqual(status.wait_for("dead"), "dead")
            # a keeps b's filters only.
            want = b_local.settled()
            self.assertEqual(remote.wait_for(want), want)
        finally:
            for s in (status, remote, b_local):
                s.close()
        # a and b still serve each other.
        topic, probe_b = unique("after"), unique("pb")
        sub_b = self.client(self.b)
        sub_b.subscribe([(topic, 1), (probe_b, 0)])
        sync_filters(pub, sub_b, probe_b)
        infos = [pub.publish(topic, payload(i), qos=1) for i in range(100)]
        for info in infos:
            info.wait_for_publish(WAIT)
        self.assertEqual(collect(sub_b, 100, topic), list(range(100)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
