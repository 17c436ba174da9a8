"""Persistence of the MQTT broker (docs/mqtt.md, ADR 0111), end to end.

Run by test_persist.sh with HERMES_MQTT set to the broker binary. Each test
starts the real broker on a free loopback port with a store in a temporary
directory, drives it with python3-paho-mqtt clients, kills it with SIGKILL
in the middle of a stream, starts it again on the same store and checks
what the clients see: every message the publisher had acknowledged reaches
the persistent subscribers (QoS 2 exactly once, QoS 1 at least once), the
subscriptions and retained messages survive, and damaged store files are
refused at start with the file named and a non-zero exit, not a crash.
Waits are bounded guards against hangs, never expectations."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqttkit import WAIT, Proc, free_port, wait_for  # noqa: E402

STREAM = int(os.environ.get("PERSIST_STREAM", "1500"))


class Broker(Proc):
    """The broker with `extra` configuration lines, on `port`."""

    def __init__(self, port, extra):
        self.dir = tempfile.mkdtemp(prefix="hermes-persist-conf-")
        self.path = os.path.join(self.dir, "hermes.conf")
        with open(self.path, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n"
                    "sys_interval 0\n%s\n" % (port, extra))
        super().__init__(["-c", self.path])

    def started(self):
        return self.wait_log("MQTT-LISTEN") and self.proc.poll() is None

    def finish(self, sig):
        """Stops it with `sig`; its exit status (None: killed after WAIT)."""
        rc = self.stop(sig)
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class Subscriber:
    """A persistent paho client that subscribes once, on its first
    connection, and reconnects by itself: after a restart it gets its
    messages only if the broker kept its session."""

    def __init__(self, port, client_id, topic, qos):
        self.received = []
        self.connects = 0
        self.present = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(client_id=client_id, clean_session=False)
        self.c.reconnect_delay_set(0.05, 0.3)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = lambda c, u, m: self.received.append(
            m.payload.decode())
        self.topic, self.qos = topic, qos
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, rc):
        self.connects += 1
        self.present.append(flags.get("session present"))
        if self.connects == 1:
            c.subscribe(self.topic, self.qos)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Publisher:
    """Publishes 0..n-1 on `topic` at `qos` as fast as its window allows;
    `acked` holds the numbers whose PUBACK/PUBCOMP came back. It never
    reconnects: what it did not see acknowledged may be lost."""

    def __init__(self, port, topic, qos, n):
        self.acked = set()
        self.mids = {}
        self.gone = threading.Event()
        self.c = mqtt.Client(client_id="pub-" + uuid.uuid4().hex[:8])
        self.c.max_inflight_messages_set(20)
        self.c.max_queued_messages_set(0)
        self.c.on_publish = lambda c, u, mid: self.acked.add(self.mids[mid])
        self.c.on_disconnect = lambda *a: self.gone.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.thread = threading.Thread(
            target=self._run, args=(topic, qos, n), daemon=True)
        self.thread.start()

    def _run(self, topic, qos, n):
        for i in range(n):
            if self.gone.is_set():
                return
            info = self.c.publish(topic, str(i), qos)
            self.mids[info.mid] = i
            # A bounded window of unacknowledged messages.
            while len(self.mids) - len(self.acked) > 20 and \
                    not self.gone.is_set():
                time.sleep(0.0005)

    def stop(self):
        self.c.loop_stop()
        self.thread.join(WAIT)


class PersistTest(unittest.TestCase):
    def setUp(self):
        self.store = tempfile.mkdtemp(prefix="hermes-persist-")
        self.port = free_port()
        self.brokers = []
        self.all_brokers = []
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        for b in self.brokers:
            b.finish(signal.SIGTERM)
        shutil.rmtree(self.store, ignore_errors=True)
        # An instrumented build reports here (at the latest at exit).
        reports = [l for b in self.all_brokers for l in b.lines
                   if "Sanitizer" in l or "runtime error:" in l]
        self.assertEqual(reports, [])

    def start(self, extra=None):
        if extra is None:
            extra = "persistence true\npersistence_location %s" % self.store
        b = Broker(self.port, extra)
        self.brokers.append(b)
        self.all_brokers.append(b)
        self.assertTrue(b.started(), "broker did not start:\n" + b.log())
        return b

    def kill_mid_stream(self, broker, pubs, at):
        """SIGKILL once every publisher has `at` acknowledged messages."""
        self.assertTrue(wait_for(lambda: all(len(p.acked) >= at
                                             for p in pubs)),
                        "the stream did not flow:\n" + broker.log())
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait(WAIT)
        for p in pubs:
            p.gone.wait(WAIT)
            p.stop()

    def check_stream(self, sub, pub, exactly_once):
        acked = set(pub.acked)
        got = lambda: {int(x) for x in sub.received if x != "after"}
        self.assertTrue(wait_for(lambda: acked <= got()),
                        "lost %d acknowledged messages (qos %d), e.g. %s" %
                        (len(acked - got()), sub.qos,
                         sorted(acked - got())[:10]))
        self.assertLess(len(acked), STREAM, "the kill came after the end")
        if exactly_once:
            dups = [x for x in set(sub.received)
                    if sub.received.count(x) > 1]
            self.assertEqual(dups, [], "QoS 2 delivered twice")

    def stream_survives_kill(self, extra=None):
        b = self.start(extra)
        s1 = Subscriber(self.port, "p-sub-q1-" + uuid.uuid4().hex[:6],
                        "stream/q1", 1)
        s2 = Subscriber(self.port, "p-sub-q2-" + uuid.uuid4().hex[:6],
                        "stream/q2", 2)
        self.clients += [s1, s2]
        self.assertTrue(s1.subscribed.wait(WAIT) and s2.subscribed.wait(WAIT))
        keep = mqtt.Client()
        keep.connect("127.0.0.1", self.port)
        keep.loop_start()
        keep.publish("keep/me", "retained-1", 1, retain=True).wait_for_publish()
        keep.loop_stop()
        p1 = Publisher(self.port, "stream/q1", 1, STREAM)
        p2 = Publisher(self.port, "stream/q2", 2, STREAM)
        self.kill_mid_stream(b, [p1, p2], STREAM // 4)
        b2 = self.start(extra)
        self.check_stream(s1, p1, exactly_once=False)
        self.check_stream(s2, p2, exactly_once=True)
        self.assertTrue(wait_for(lambda: s1.connects >= 2 and
                                 s2.connects >= 2),
                        "the subscribers did not reconnect:\n" + b2.log())
        self.assertEqual(s1.present[-1], 1, "session present after restart")
        # They subscribed once, before the kill: a new message reaches
        # them only if their subscriptions were restored.
        after = mqtt.Client()
        after.connect("127.0.0.1", self.port)
        after.loop_start()
        after.publish("stream/q1", "after", 1).wait_for_publish()
        after.publish("stream/q2", "after", 2).wait_for_publish()
        after.disconnect()
        after.loop_stop()
        self.assertTrue(wait_for(lambda: "after" in s1.received and
                                 "after" in s2.received),
                        "subscriptions lost in the restart")
        # The retained message survived too.
        got = []
        r = mqtt.Client()
        r.on_message = lambda c, u, m: got.append(m.payload.decode())
        r.connect("127.0.0.1", self.port)
        r.subscribe("keep/#", 1)
        r.loop_start()
        self.assertTrue(wait_for(lambda: got == ["retained-1"]),
                        "retained message lost: %s\n%s" % (got, b2.log()))
        r.disconnect()
        r.loop_stop()
        return b2

    def test_always_every_acknowledged_message_survives_kill_9(self):
        self.stream_survives_kill()

    def test_interval_sessions_and_retained_survive_a_clean_stop(self):
        extra = ("persistence true\npersistence_location %s\n"
                 "autosave_interval 0" % self.store)
        b = self.start(extra)
        s = Subscriber(self.port, "p-int-" + uuid.uuid4().hex[:6], "i/t", 2)
        self.clients.append(s)
        self.assertTrue(s.subscribed.wait(WAIT))
        s.close()
        self.clients.remove(s)
        pub = mqtt.Client()
        pub.connect("127.0.0.1", self.port)
        pub.loop_start()
        for i in range(5):
            pub.publish("i/t", str(i), 2).wait_for_publish()
        pub.publish("i/keep", "r", 1, retain=True).wait_for_publish()
        pub.disconnect()
        pub.loop_stop()
        self.assertEqual(b.finish(signal.SIGTERM), 0)
        self.brokers.remove(b)
        self.start(extra)
        s2 = Subscriber(self.port, s.c._client_id.decode(), "i/t", 2)
        self.clients.append(s2)
        self.assertTrue(wait_for(lambda: s2.received == [str(i)
                                                         for i in range(5)]),
                        "queued messages: %s" % s2.received)

    def refused(self, extra=None):
        """Starts a broker that must refuse the store; its log."""
        b = Broker(self.port, extra or "persistence true\n"
                   "persistence_location %s" % self.store)
        rc = b.proc.wait(WAIT)
        b.drainer.join(WAIT)
        log = "\n".join(b.lines)
        b.finish(signal.SIGKILL)
        self.assertEqual(rc, 1, "exit status %s (a crash is negative):\n%s"
                         % (rc, log))
        self.assertIn("hermes-mqtt.db", log)
        return log

    def make_store(self):
        """A store holding one persistent session and a retained message,
        closed cleanly."""
        b = self.start()
        s = Subscriber(self.port, "p-file-" + uuid.uuid4().hex[:6], "f/#", 1)
        self.assertTrue(s.subscribed.wait(WAIT))
        s.close()
        pub = mqtt.Client()
        pub.connect("127.0.0.1", self.port)
        pub.loop_start()
        for i in range(50):
            pub.publish("f/%d" % i, "x" * 200, 1, retain=True)
        pub.publish("f/end", "end", 1).wait_for_publish()
        pub.disconnect()
        pub.loop_stop()
        self.assertEqual(b.finish(signal.SIGTERM), 0)
        self.brokers.remove(b)
        return os.path.join(self.store, "hermes-mqtt.db")

    def test_a_truncated_store_is_refused_with_a_clear_error(self):
        db = self.make_store()
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            f.truncate(size // 2)
        log = self.refused()
        self.assertRegex(log, "hermes-mqtt.db: .*(corrupt|malformed|"
                         "not a readable database|disk image)")

    def test_a_corrupted_store_is_refused_with_a_clear_error(self):
        db = self.make_store()
        with open(db, "r+b") as f:  # the second page's b-tree header
            f.seek(4096)
            f.write(b"\x55" * 64)
        self.refused()

    def test_a_file_that_is_not_a_database_is_refused(self):
        os.makedirs(self.store, exist_ok=True)
        with open(os.path.join(self.store, "hermes-mqtt.db"), "wb") as f:
            f.write(b"this is not SQLite at all" * 200)
        self.assertIn("not a readable database", self.refused())

    def test_a_damaged_session_record_is_refused_with_its_reason(self):
        db = self.make_store()
        con = sqlite3.connect(db)
        rec, = con.execute("SELECT record FROM mqtt_session").fetchone()
        con.execute("UPDATE mqtt_session SET record = ?", (rec[:-3],))
        con.commit()
        con.close()
        self.assertIn("truncated record", self.refused())

    @unittest.skipUnless(shutil.which("redis-server"), "no redis-server")
    def test_redis_store_every_acknowledged_message_survives_kill_9(self):
        rport = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
             "--dir", self.store, "--save", "", "--appendonly", "no"],
            stdout=subprocess.PIPE, text=True)
        try:
            for line in redis.stdout:
                if "Ready to accept connections" in line:
                    break
            redis.stdout.close()
            self.stream_survives_kill(
                "persistence true\npersistence_redis 127.0.0.1:%d" % rport)
        finally:
            redis.kill()
            redis.wait()


if __name__ == "__main__":
    unittest.main(verbosity=2)
