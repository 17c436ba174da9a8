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
- A member dying during a move, under publish load (ADR 0225): a
  persistent QoS 1 subscriber connected to n2 whose session lives on n1
  and moves to n4 when n4 joins, a publisher streaming on the node whose
  copies the move must keep. The move is held open by stopping n3 with
  SIGSTOP (the old owner waits for n3's cut; n3 is resumed before it can
  be suspected), and during it the new owner n4 is killed (its messages
  published on n1) or the old owner n1 is (published on n4). Then: the
  session is on exactly one live node (session present = 1 on a
  reconnection, one "adopted" or none), and every message the publisher
  had acknowledged arrives. With and without Redis for the first.

Waits are bounded guards against hangs (an event, a log line), never
expectations about speed."""

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
import uuid
import warnings

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import persist_failover_test as pf  # noqa: E402
import cluster_sessions_test as cs  # noqa: E402
from mqttkit import WAIT, Client, wait_for  # noqa: E402
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


class Moves(pf.RedisClusterCase):
    PREFIX = "hermes-moves-"

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

    # ------------------------------------------- a member dies mid-move

    def die_during_move(self, victim, redis=True):
        """A session moving from n1 to n4 (joining) while a publisher
        streams QoS 1 to it; `victim` ("new" or "old") is killed while the
        move is held open. Returns (sent, lost, redelivered, dups)."""
        n1, n2, n3 = self.cluster(redis)
        four = self.NAMES + ["n4"]
        while True:
            cid = "dm-" + uuid.uuid4().hex[:8]
            if session_owner(cid, self.NAMES) == "n1" and \
                    session_owner(cid, four) == "n4":
                break
        topic = "dm/" + uuid.uuid4().hex[:8]
        sub = Client(n2.port, client_id=cid, clean=False)
        sub.subscribe(topic, 1)
        got, dups = [], []
        state = {"pub_node": n1, "stop": False}
        sent, acked = [], set()
        go, idle = threading.Event(), threading.Event()

        def pub_id(node):
            """A publisher whose own session stays on `node`: its attach
            never depends on the member that is stopped."""
            live = [m for m in four if m != ("n1" if node.name == "n4"
                                             else "n4")]
            while True:
                pid = "pub-" + uuid.uuid4().hex[:8]
                if session_owner(pid, live) == node.name and \
                        session_owner(pid, four) == node.name:
                    return pid

        def publish():
            # Streams QoS 1 through state["pub_node"] (None: pauses).
            while not state["stop"]:
                node = state["pub_node"]
                if node is None:
                    idle.set()  # everything before is acknowledged
                    time.sleep(0.01)
                    continue
                pub = Client(node.port, client_id=pub_id(node))
                infos = []
                try:
                    while not state["stop"] and state["pub_node"] is node:
                        if len(sent) - len(got) > 100:
                            time.sleep(0.001)
                            continue
                        k = len(sent)
                        sent.append(k)
                        infos.append((k, pub.c.publish(topic, str(k), 1)))
                        if len(infos) > 40:
                            infos[-40][1].wait_for_publish(WAIT)
                        go.set()
                    for k, i in infos:
                        i.wait_for_publish(WAIT)
                finally:
                    acked.update(k for k, i in infos if i.is_published())
                    pub.disconnect()

        def until(count, bound=WAIT):
            end = time.monotonic() + bound
            while len(got) < count and time.monotonic() < end:
                m = sub.poll(0.2)
                if m is not None and m.topic == topic:
                    got.append(int(m.payload))
                    dups.append(m.dup)

        t = threading.Thread(target=publish)
        t.start()
        try:
            self.assertTrue(go.wait(WAIT))
            until(100)
            if victim == "old":
                # What n1 acknowledges and has not written to a link dies
                # with it (a PUBACK means routed): publish on n4 instead.
                state["pub_node"] = None
                self.assertTrue(idle.wait(WAIT))
                until(len(sent))  # room for n4's publisher (paced)
            n3.proc.send_signal(signal.SIGSTOP)
            try:
                n4 = self.node("n4", join=n1.cluster_addr, redis=redis)
                self.assertTrue(n4.wait_log("client %s: session adopted" %
                                            cid), self.logs("MQTT-"))
                if victim == "new":
                    until(len(got) + 20, 0.5)  # forwarded by n1 to n4
                    ended = n1.count("client %s: every member" % cid)
                    n4.kill()
                    self.assertTrue(n1.wait_log("MQTT-NODE-GONE member n4"),
                                    n1.log())
                else:
                    start = len(sent)
                    state["pub_node"] = n4  # held by n4 until n1's done
                    wait_for(lambda: len(sent) > start + 20, 0.5)
                    ended = n1.count("client %s: every member" % cid)
                    n1.kill()
                    self.assertTrue(n4.wait_log("MQTT-NODE-GONE member n1"),
                                    n4.log())
            finally:
                n3.proc.send_signal(signal.SIGCONT)
            if ended:  # n3 was declared dead meanwhile: no move to test
                self.skipTest("the move ended before the kill (a slow "
                              "machine: n3 stopped too long)")
            until(len(got) + 100)
        finally:
            state["stop"] = True
            t.join(3 * WAIT)
        self.assertFalse(t.is_alive(), "the publisher did not finish")
        home = n1 if victim == "new" else n4
        marks = [0]

        def drain():
            """Everything up to a marker published after the last message
            (the publisher is done: its messages are ahead of it)."""
            marks[0] -= 1
            cs.mosquitto_pub(home.port, topic, str(marks[0]))
            end = time.monotonic() + WAIT
            while time.monotonic() < end:
                m = sub.poll(0.2)
                if m is None or m.topic != topic:
                    continue
                if int(m.payload) == marks[0]:
                    return True
                if int(m.payload) >= 0:
                    got.append(int(m.payload))
                    dups.append(m.dup)
            return False

        if sub.disconnected.is_set() or not drain() or acked - set(got):
            # Back through a survivor: the session must still be there,
            # with what it has not delivered yet.
            sub.c.loop_stop()
            while True:  # what the old connection received is received
                m = sub.poll(0)
                if m is None:
                    break
                if m.topic == topic and int(m.payload) >= 0:
                    got.append(int(m.payload))
                    dups.append(m.dup)
            sub = Client(n2.port, client_id=cid, clean=False)
            self.assertTrue(sub.session_present, self.logs("MQTT-"))
            self.assertTrue(drain(), self.logs("MQTT-"))
        missing = sorted(acked - set(got))
        seen, again, bad = set(), 0, 0
        for k, d in zip(got, dups):
            if k in seen:
                again += d
                bad += not d
            seen.add(k)
        print("\n%s owner killed mid-move%s: %d sent, %d acknowledged, %d "
              "lost, %d redelivered with DUP, %d again without DUP" % (
                  victim, "" if redis else " (no Redis)", len(sent),
                  len(acked), len(missing), again, bad), file=sys.stderr)
        self.assertEqual(missing, [], "%d acknowledged messages lost: %s\n%s"
                         % (len(missing), missing[:20], self.logs("MQTT-")))
        self.assertTrue(home.proc.poll() is None)
        sub.disconnect()

    def test_a_move_survives_the_death_of_its_new_owner(self):
        self.die_during_move("new")

    def test_a_move_survives_the_death_of_its_new_owner_without_redis(self):
        self.die_during_move("new", redis=False)

    def test_a_move_survives_the_death_of_its_old_owner(self):
        self.die_during_move("old")


if __name__ == "__main__":
    unittest.main(verbosity=2)
