"""Fail-over of persistent MQTT sessions through a shared Redis (issue 10,
docs/adr/0160), end to end.

Run by test_persist.sh with HERMES_MQTT set to the broker binary.
One redis-server (started here, on a free loopback port, nothing written
to disk) and three hermes-mqtt nodes clustered on loopback, all three with
`persistence_redis` on it. Two persistent paho subscribers (QoS 1 and
QoS 2) whose sessions live on n1, and will live on n2 once n1 is gone
(placement.py computes the cluster's rendezvous hash to pick such client
ids), get a backlog queued on n1 while they are away, start draining it on
n1, and n1 is killed with SIGKILL while messages are still queued and in
flight. Then messages are published on the survivors, and the same paho
clients (their in-flight QoS 2 state kept, as a client's is) reconnect with
clean session 0 to n2: session present = 1, every message acknowledged to
a publisher arrives, QoS 2 exactly once. The store then files the sessions
under n2 (the next fail-over finds them), and n1, restarted on the same
store, does not restore them a second time.

Then n1 killed and started again at once (docs/adr/0265): six sessions
placed on n1, a backlog acknowledged, session present = 1 and every message
back wherever the survivors' fail-over and the new incarnation leave them;
and the same with Redis paused for writes across the kill and the restart
(CLIENT PAUSE WRITE: a slow store), so that the new incarnation restores
records the survivors restored too, and messages published on the survivors
meanwhile must survive the sessions' return to n1.

Waits are bounded guards against hangs (an event, a log line), never
expectations about speed."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import uuid
import warnings

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_sessions_test  # noqa: E402  (its Node, its secret)
from persist_test import free_port, wait_for  # noqa: E402
from placement import session_owner  # noqa: E402

WAIT = 30.0  # seconds: a guard against hangs, never an expectation
BACKLOG = 300  # per QoS, queued on n1 before the kill
AFTER = 100  # per QoS and per surviving node, published after the kill
RESTART_SESSIONS = 6  # persistent sessions on n1 when it is restarted
RESTART_BACKLOG = 20  # acknowledged for each before the kill


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", tmp, "--save", "", "--appendonly", "no"],
            stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if "Ready to accept connections" in line:
                break
        self.proc.stdout.close()

    def cli(self, *args):
        return subprocess.run(
            ["redis-cli", "-p", str(self.port)] + list(args),
            capture_output=True, text=True, timeout=WAIT).stdout.strip()

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Node(cluster_sessions_test.Node):
    """One hermes-mqtt cluster node, persistence on the shared Redis."""

    def __init__(self, tmp, name, redis_port, port=None, join=None):
        conf = os.path.join(tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write("allow_anonymous true\nsys_interval 0\n"
                    "persistence true\npersistence_redis 127.0.0.1:%d\n" %
                    redis_port)
        super().__init__(name, join=join, port=port, extra=["-c", conf])


class Subscriber:
    """A persistent paho client; `received` in arrival order."""

    def __init__(self, port, client_id, topic, qos):
        self.received, self.present = [], []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id=client_id, clean_session=False)
        self.c.on_connect = lambda c, u, flags, rc: self.present.append(
            flags.get("session present"))
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = lambda c, u, m: self.received.append(
            m.payload.decode())
        self.topic, self.qos = topic, qos
        self.connect(port)

    def connect(self, port):
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def pause(self):
        """Stops reading: what the broker sends now stays in flight."""
        self.c.loop_stop()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def publish_all(port, topic, qos, payloads):
    """Publishes `payloads` and waits for every acknowledgement."""
    c = mqtt.Client(client_id="pub-" + uuid.uuid4().hex[:8])
    c.max_inflight_messages_set(50)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    infos = [c.publish(topic, p, qos) for p in payloads]
    for i in infos:
        i.wait_for_publish(WAIT)
    acked = [p for p, i in zip(payloads, infos) if i.is_published()]
    c.disconnect()
    c.loop_stop()
    return acked


def sanitizer_reports(nodes):
    bad = []
    for n in nodes:
        for i, l in enumerate(n.lines):
            if "WARNING: ThreadSanitizer" in l or "ERROR: " in l and \
                    "Sanitizer" in l or "runtime error:" in l:
                bad += ["[%s]" % n.name] + n.lines[i:i + 60]
    return bad


class RedisClusterCase(unittest.TestCase):
    """Three-node clusters over one redis-server of their own, with the
    clean-up and the sanitizer check every test here needs (also the base of
    cluster_moves_test.py's cases). No tests of its own."""
    NAMES = ["n1", "n2", "n3"]
    PREFIX = "hermes-redis-cluster-"

    def setUp(self):
        # paho leaves the socket of a killed connection to the collector.
        warnings.simplefilter("ignore", ResourceWarning)
        self.tmp = tempfile.mkdtemp(prefix=self.PREFIX)
        self.redis = Redis(self.tmp)
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
        bad = sanitizer_reports(self.nodes)
        if bad:
            raise AssertionError("\n".join(bad[:400]))

    def logs(self, word=None):
        return "\n".join("[%s] %s" % (n.name, l) for n in self.nodes
                         for l in n.lines if not word or word in l)

    def node(self, name, port=None, join=None, redis=True):
        """A node persisting to our Redis, or (redis=False) one without
        persistence."""
        if redis:
            n = Node(self.tmp, name, self.redis.port, port, join)
        else:
            n = cluster_sessions_test.Node(name, join=join, port=port)
        self.nodes.append(n)
        return n

    def cluster(self, redis=True):
        n1 = self.node("n1", redis=redis)
        n2 = self.node("n2", join=n1.cluster_addr, redis=redis)
        n3 = self.node("n3", join=n1.cluster_addr, redis=redis)
        for n in (n1, n2, n3):
            # On a failure, every node's log and exit status: a mesh that
            # did not form (seen once in ~15 runs, cause not found) needs
            # the joiner's side too.
            self.assertTrue(n.wait_log("): up", 2), "%s lacks a member\n%s" % (
                n.name, "\n".join("[%s exit %s]\n%s" % (
                    m.name, m.proc.poll(), m.log(80)) for m in (n1, n2, n3))))
        return n1, n2, n3


class Failover(RedisClusterCase):
    PREFIX = "hermes-failover-"

    def cid(self, prefix):
        """A client id whose session lives on n1, and on n2 without n1."""
        while True:
            cid = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
            if session_owner(cid, self.NAMES) == "n1" and \
                    session_owner(cid, ["n2", "n3"]) == "n2":
                return cid

    def test_sessions_of_a_killed_node_continue_on_the_survivor(self):
        n1, n2, n3 = self.cluster()
        topic = "fo/" + uuid.uuid4().hex[:8]
        s1 = Subscriber(n1.port, self.cid("fo-q1"), topic + "/q1", 1)
        s2 = Subscriber(n1.port, self.cid("fo-q2"), topic + "/q2", 2)
        self.clients += [s1, s2]
        for s in (s1, s2):
            s.c.subscribe(s.topic, s.qos)
            self.assertTrue(s.subscribed.wait(WAIT))
        self.assertEqual([s1.present, s2.present], [[0], [0]])
        # Away: a backlog, acknowledged (committed to Redis: the sessions
        # live on the publisher's node) and not delivered.
        for s in (s1, s2):
            s.close()
        acked = {}
        for s in (s1, s2):
            acked[s] = publish_all(
                n1.port, s.topic, s.qos,
                ["b%d" % i for i in range(BACKLOG)])
            self.assertEqual(len(acked[s]), BACKLOG)
        # Back on n1: the backlog starts to flow; stop reading once some
        # arrived, so that messages are in flight (packet ids, PUBREL
        # stages) and queued when n1 dies.
        for s in (s1, s2):
            s.connect(n1.port)
        self.assertTrue(wait_for(lambda: len(s1.received) > 0 and
                                 len(s2.received) > 0), n1.log())
        for s in (s1, s2):
            s.pause()
        self.assertEqual([s1.present[-1], s2.present[-1]], [1, 1])
        got_before = (len(s1.received), len(s2.received))
        print("\nreceived before the kill: QoS 1 %d, QoS 2 %d of %d" %
              (got_before + (BACKLOG,)), file=sys.stderr)
        n1.kill()
        # n2 restores both from Redis; n3 restores none of them.
        for s in (s1, s2):
            self.assertTrue(n2.wait_log("client %s: session restored" %
                                        s.c._client_id.decode()), n2.log())
        self.assertTrue(n3.wait_log("MQTT-FAILOVER"), n3.log())
        self.assertEqual(n3.count("session restored"), 0, n3.log())
        # Published after the death, on both survivors. A watcher on n2
        # makes n3 route the topic there (filters propagate
        # asynchronously); the sessions' own subscriptions do the rest.
        while True:  # its session (hence its filter) must be on n2 too
            wid = "watch-" + uuid.uuid4().hex[:6]
            if session_owner(wid, ["n2", "n3"]) == "n2":
                break
        watcher = Subscriber(n2.port, wid, topic + "/#", 0)
        self.clients.append(watcher)
        watcher.c.subscribe(watcher.topic, 0)
        self.assertTrue(watcher.subscribed.wait(WAIT))
        probe = topic + "/probe"
        self.assertTrue(wait_for(lambda: publish_all(
            n3.port, probe, 0, ["p"]) and "p" in watcher.received,
            timeout=WAIT), "no route from n3 to n2")
        for s in (s1, s2):
            for node in (n2, n3):
                more = publish_all(node.port, s.topic, s.qos,
                                   ["%s%d" % (node.name, i)
                                    for i in range(AFTER)])
                self.assertEqual(len(more), AFTER)
                acked[s] += more
        # The same clients (their in-flight QoS 2 state kept) come back,
        # clean session 0, to a survivor.
        for s in (s1, s2):
            s.connect(n2.port)
        self.assertTrue(wait_for(lambda: len(s1.present) == 3 and
                                 len(s2.present) == 3), n2.log())
        self.assertEqual([s1.present[-1], s2.present[-1]], [1, 1],
                         "session present after the fail-over")
        for s in (s1, s2):
            want = set(acked[s])
            self.assertTrue(
                wait_for(lambda: want <= set(s.received)),
                "%s: %d of %d acknowledged messages missing (had %d before "
                "the kill), e.g. %s\n%s" % (
                    s.topic, len(want - set(s.received)), len(want),
                    got_before[s is s2], sorted(want - set(s.received))[:5],
                    n2.log()))
        # QoS 2: exactly once, the backlog in order.
        dups = [m for m in set(s2.received) if s2.received.count(m) > 1]
        self.assertEqual(dups, [], "QoS 2 duplicates")
        backlog = [m for m in s2.received if m.startswith("b")]
        self.assertEqual(backlog, ["b%d" % i for i in range(BACKLOG)])
        # The store files them under n2 now: the next fail-over finds them.
        for s in (s1, s2):
            cid = s.c._client_id.decode()
            self.assertTrue(wait_for(lambda: self.redis.cli(
                "HGET", "hermes-mqtt:holder", cid) == "n2"),
                self.redis.cli("HGET", "hermes-mqtt:holder", cid))
        # n1 comes back (a new incarnation, the same name) on the same
        # store: the sessions are filed under n2 now, so it restores none
        # of them (no second copy); placement moves them to it later,
        # live, from n2 (ADR 0105's handoff, not tested here).
        for s in (s1, s2):
            s.close()
        n1b = self.node("n1", port=n1.port, join=n2.cluster_addr)
        restored = [l for l in n1b.lines if "sessions and" in l]
        self.assertTrue(restored and " 0 sessions and" in restored[0],
                        self.logs())
        self.assertTrue(n1b.wait_log("): up", 2), self.logs())

    def parked_on_n1(self, prefix, count, n1, via):
        """`count` persistent QoS 1 sessions placed on n1 (on n2 and n3 in
        turn without it), subscribed through `via`, then offline with
        RESTART_BACKLOG messages each acknowledged on n1 (committed to
        Redis: the sessions live there). Returns (subscribers, {subscriber:
        acknowledged payloads})."""
        topic = "%s/%s" % (prefix, uuid.uuid4().hex[:8])
        subs = []
        for i in range(count):
            want = "n2" if i % 2 == 0 else "n3"
            while True:
                cid = "%s%d-%s" % (prefix, i, uuid.uuid4().hex[:8])
                if session_owner(cid, self.NAMES) == "n1" and \
                        session_owner(cid, ["n2", "n3"]) == want:
                    break
            s = Subscriber(via.port, cid, "%s/%d" % (topic, i), 1)
            self.clients.append(s)
            s.c.subscribe(s.topic, 1)
            self.assertTrue(s.subscribed.wait(WAIT))
            s.close()
            subs.append(s)
        acked = {s: publish_all(n1.port, s.topic, 1,
                                ["m%d" % j for j in range(RESTART_BACKLOG)])
                 for s in subs}
        for s in subs:
            self.assertEqual(len(acked[s]), RESTART_BACKLOG)
        return subs, acked

    def test_a_killed_node_restarted_at_once_keeps_its_sessions(self):
        """n1 is killed and started again at once (same name, same client
        port): the survivors' fail-over and the new incarnation race for
        the sessions n1 held; a restore a survivor sends to a session's
        name may reach n1's new incarnation (issue 8, docs/adr/0265).
        Whoever ends up with each session, every acknowledged message
        arrives and session present = 1."""
        n1, n2, n3 = self.cluster()
        subs, acked = self.parked_on_n1("rs", RESTART_SESSIONS, n1, n2)
        n1.kill()
        n1b = self.node("n1", port=n1.port, join=n2.cluster_addr)
        self.assertTrue(n1b.wait_log("): up", 2), self.logs())
        for n in (n2, n3):  # each has seen n1 go and n1b come
            self.assertTrue(wait_for(lambda: n.count("): up") >= 3),
                            self.logs())
        for s in subs:
            s.connect(n3.port)
        self.assertTrue(wait_for(lambda: all(len(s.present) == 2
                                             for s in subs)), self.logs())
        self.assertEqual([s.present[-1] for s in subs],
                         [1] * len(subs), "session present after the "
                         "restart\n" + self.logs("MQTT-FAILOVER"))
        for s in subs:
            want = set(acked[s])
            self.assertTrue(
                wait_for(lambda: want <= set(s.received)),
                "%s: %d of %d acknowledged messages missing\n%s" % (
                    s.topic, len(want - set(s.received)), len(want),
                    self.logs()))

    def test_a_restarted_node_does_not_keep_an_older_copy(self):
        """n1 is killed; Redis stops taking writes for a while (CLIENT
        PAUSE WRITE: a slow store), so the survivors restore n1's sessions
        and queue what is published then, but cannot file them under
        themselves yet; n1 restarts meanwhile and restores the same
        records, still filed under it. When placement moves the sessions
        back to n1, the survivors' copies (newer) must not be dropped for
        n1's start-up copies: every acknowledged message arrives."""
        n1, n2, n3 = self.cluster()
        subs, acked = self.parked_on_n1("rc", 4, n1, n2)
        self.redis.cli("CLIENT", "PAUSE", "4000", "WRITE")
        n1.kill()
        for s in subs:
            heir = n2 if subs.index(s) % 2 == 0 else n3
            self.assertTrue(heir.wait_log("client %s: session restored" %
                                          s.c._client_id.decode()),
                            heir.log())
        # Published on the heirs while the store is paused: acknowledged
        # once it takes writes again.
        pubs = []
        for s in subs:
            heir = n2 if subs.index(s) % 2 == 0 else n3
            r = {}
            t = threading.Thread(target=lambda r=r, s=s, heir=heir: r.update(
                acked=publish_all(heir.port, s.topic, 1,
                                  ["a%d" % j for j in range(10)])))
            t.start()
            pubs.append((s, t, r))
        n1b = self.node("n1", port=n1.port, join=n2.cluster_addr)
        self.assertTrue(n1b.wait_log("): up", 2), self.logs())
        for s, t, r in pubs:
            t.join(2 * WAIT)
            acked[s] += r.get("acked", [])
        for s in subs:
            s.connect(n1b.port)
        self.assertTrue(wait_for(lambda: all(len(s.present) == 2
                                             for s in subs)), self.logs())
        self.assertEqual([s.present[-1] for s in subs], [1] * len(subs))
        wait_for(lambda: all(set(acked[s]) <= set(s.received)
                             for s in subs))
        missing = [len(set(acked[s]) - set(s.received)) for s in subs]
        print("\nrestart during a paused store: %d acknowledged, missing "
              "%s" % (sum(map(len, acked.values())), missing),
              file=sys.stderr)
        self.assertEqual(missing, [0] * len(subs), self.logs("MQTT-"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
