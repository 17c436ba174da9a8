"""Integration tests of hermes-mqtt, the MQTT 3.1.1 broker.

Each test class starts the real broker binary ($HERMES_MQTT) on a free
loopback port and drives it with real clients: paho-mqtt (Debian's
python3-paho-mqtt), mosquitto_pub/mosquitto_sub, and raw sockets where a
test must send bytes no well-behaved client would (malformed packets, a
bad protocol level) or watch exact flags (DUP, RETAIN, session present).

Test names carry the normative statement they check ([MQTT-x.y.z-n] is
written MQTT_x_y_z_n). Nothing here asserts on time: every wait is for an
event (a message, a CONNACK, a closed socket) with a generous timeout that
only guards against a hang.
"""

import base64
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mqttkit import (BROKER, WAIT, Client, Proc, Raw,  # noqa: E402
                     connect_packet, free_port, mqtt_str, packet,
                     parse_publish, publish_packet, subscribe_packet,
                     unique)

# ---------------------------------------------------------------- broker


class Broker(Proc):
    """The broker process on free ports (mqttkit.Proc). Without `config`,
    it runs with -p PORT; with `config`, a function of (mqtt port,
    websocket port) returning the file's text, with -c."""

    def __init__(self, config=None, listeners=1):
        self.port, self.ws_port = free_port(), free_port()
        args = ["-p", str(self.port)]
        if config:
            self.dir = tempfile.TemporaryDirectory()
            path = os.path.join(self.dir.name, "hermes.conf")
            with open(path, "w") as f:
                f.write(config(self.port, self.ws_port))
            args = ["-c", path]
        super().__init__(args)
        self.started(listeners)


class BrokerTest(unittest.TestCase):
    broker = None

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker()

    @classmethod
    def tearDownClass(cls):
        status = cls.broker.stop()
        reports = cls.broker.sanitizer_reports()
        if reports or status != 0:
            raise AssertionError("broker exit %s:\n%s" % (
                status, cls.broker.log()))

    def setUp(self):
        self.clients = []
        self.raws = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.disconnect()  # before loop_stop(): paho exits at once
            except Exception:
                pass
        for r in self.raws:
            r.close()
        if self._outcome and not all(
                e is None for _, e in getattr(self._outcome, "errors", [])):
            print(self.broker.log())

    def client(self, **kw):
        c = Client(self.broker.port, **kw)
        self.clients.append(c)
        return c

    def raw(self):
        r = Raw(self.broker.port)
        self.raws.append(r)
        return r

    @property
    def port(self):
        return self.broker.port


# ------------------------------------------------------- publish/subscribe


class PubSub(BrokerTest):
    def counts(self, qos, n):
        topic = unique("count") + "/t"
        sub = self.client()
        sub.subscribe(topic, qos)
        # The marker goes through the same QoS path, so it arrives last.
        sub.subscribe(topic + "/end", qos)
        pub = self.client()
        for i in range(n):
            pub.publish(topic, str(i), qos)
        if qos:
            pub.wait_published(n)
        pub.publish(topic + "/end", "end", qos)
        got = sub.drain_until(topic + "/end")
        return [int(m.payload) for m in got], got

    def test_qos0_messages_all_arrive_on_loopback_MQTT_4_3_1_1(self):
        values, _ = self.counts(0, 200)
        self.assertEqual(sorted(values), list(range(200)))

    def test_qos1_messages_all_arrive_in_order_MQTT_4_3_2_1_and_4_6_0_2(self):
        values, got = self.counts(1, 300)
        self.assertEqual(values, list(range(300)))
        self.assertTrue(all(m.qos == 1 for m in got))

    def test_qos2_messages_arrive_exactly_once_MQTT_4_3_3_1(self):
        values, got = self.counts(2, 300)
        self.assertEqual(values, list(range(300)))
        self.assertTrue(all(m.qos == 2 for m in got))

    def test_delivery_qos_is_min_of_publish_and_granted_MQTT_3_8_4_6(self):
        topic = unique("min")
        sub = self.client()
        sub.subscribe(topic, 1)
        self.client().publish(topic, "x", 2)
        self.assertEqual(sub.next().qos, 1)

    def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos_MQTT_3_3_5_1(self):
        base = unique("ovl")
        sub = self.client()
        sub.subscribe(base + "/#", 0)
        sub.subscribe(base + "/+/c", 2)
        sub.subscribe(base + "/end", 2)
        pub = self.client()
        pub.publish(base + "/b/c", "x", 2)
        pub.publish(base + "/end", "end", 2)
        got = sub.drain_until(base + "/end")
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].qos, 2)

    def test_dollar_topics_are_not_matched_by_leading_wildcards_MQTT_4_7_2_1(self):
        sub = self.client()
        sub.subscribe("#", 0)
        sub.subscribe("+/broker/version", 0)
        marker = unique("marker")
        self.client().publish(marker, "m", 0)
        # $SYS/broker/version is retained: a "#" subscriber would have got
        # it before the marker if leading wildcards matched "$" topics.
        for m in sub.drain_until(marker):
            self.assertFalse(m.topic.startswith("$"), m.topic)

    def test_sys_topics_are_published_for_an_explicit_subscription(self):
        sub = self.client()
        sub.subscribe("$SYS/broker/version", 0)
        m = sub.next()
        self.assertTrue(m.payload.startswith(b"hermes-mqtt"))
        self.assertTrue(m.retain)

    def test_unsubscribe_stops_delivery_MQTT_3_10_4_1(self):
        topic = unique("unsub")
        sub = self.client()
        sub.subscribe(topic, 1)
        sub.subscribe(topic + "/end", 1)
        done = threading.Event()
        sub.c.on_unsubscribe = lambda *a: done.set()
        sub.c.unsubscribe(topic)
        self.assertTrue(done.wait(WAIT))
        pub = self.client()
        pub.publish(topic, "x", 1)
        pub.publish(topic + "/end", "end", 1)
        self.assertEqual(sub.drain_until(topic + "/end"), [])

    def test_publish_right_after_subscribe_is_routed_to_it(self):
        topic = unique("order")
        r = self.raw()
        r.connect(unique("raw"))
        r.send(subscribe_packet(1, topic, 0) + publish_packet(topic, b"me"))
        first, _ = r.read()
        self.assertEqual(first, 0x90)  # SUBACK first
        first, body = r.read()
        self.assertEqual(parse_publish(first, body)[:2], (topic, b"me"))

    def test_mosquitto_clients_interoperate(self):
        topic = unique("mosq")
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(self.port), "-h", "127.0.0.1",
             "-t", topic, "-C", "1", "-q", "1", "-i", unique("msub")],
            stdout=subprocess.PIPE, text=True)
        # A retained message reaches the subscriber whenever it subscribes.
        subprocess.run(["mosquitto_pub", "-p", str(self.port), "-h",
                        "127.0.0.1", "-t", topic, "-m", "hi", "-q", "1",
                        "-r"], check=True, timeout=WAIT)
        out, _ = sub.communicate(timeout=WAIT)
        self.assertEqual(out.strip(), "hi")


# --------------------------------------------------------------- retained


class Retained(BrokerTest):
    def test_retained_message_is_sent_on_subscribe_with_retain_1_MQTT_3_3_1_6_and_8(self):
        topic = unique("ret") + "/a"
        pub = self.client()
        pub.publish(topic, "kept", 1, retain=True)
        pub.wait_published(1)
        sub = self.client()
        sub.subscribe(topic.rsplit("/", 1)[0] + "/+", 1)
        m = sub.next()
        self.assertEqual((m.topic, m.payload, m.retain), (topic, b"kept",
                                                          True))

    def test_a_new_retained_message_replaces_the_old_MQTT_3_3_1_5(self):
        topic = unique("ret")
        pub = self.client()
        pub.publish(topic, "one", 1, retain=True)
        pub.publish(topic, "two", 1, retain=True)
        pub.wait_published(2)
        sub = self.client()
        sub.subscribe(topic, 1)
        self.assertEqual(sub.next().payload, b"two")
        sub.subscribe(topic + "/end", 1)
        pub.publish(topic + "/end", "end", 1)
        self.assertEqual(sub.drain_until(topic + "/end"), [])

    def test_an_empty_retained_payload_clears_it_MQTT_3_3_1_10(self):
        topic = unique("ret")
        pub = self.client()
        pub.publish(topic, "one", 1, retain=True)
        pub.publish(topic, "", 1, retain=True)
        pub.wait_published(2)
        sub = self.client()
        sub.subscribe(topic, 1)
        sub.subscribe(topic + "/end", 1)
        pub.publish(topic + "/end", "end", 1)
        self.assertEqual(sub.drain_until(topic + "/end"), [])

    def test_normal_forwarding_clears_the_retain_flag_MQTT_3_3_1_9(self):
        topic = unique("ret")
        sub = self.client()
        sub.subscribe(topic, 1)
        self.client().publish(topic, "live", 1, retain=True)
        m = sub.next()
        self.assertEqual((m.payload, m.retain), (b"live", False))


# ------------------------------------------------------------------ wills


class Wills(BrokerTest):
    def test_will_is_published_on_abrupt_close_MQTT_3_1_2_8(self):
        topic = unique("will")
        watcher = self.client()
        watcher.subscribe(topic, 1)
        dying = self.raw()
        dying.connect(unique("dying"), will=(topic, "gone", 1))
        dying.close()  # no DISCONNECT
        m = watcher.next()
        self.assertEqual((m.topic, m.payload, m.qos), (topic, b"gone", 1))

    def test_no_will_after_disconnect_MQTT_3_14_4_3(self):
        topic = unique("will")
        watcher = self.client()
        watcher.subscribe(topic, 1)
        watcher.subscribe(topic + "/end", 1)
        leaving = Client(self.port, will=(topic, "gone", 1, False))
        leaving.disconnect()
        self.client().publish(topic + "/end", "end", 1)
        self.assertEqual(watcher.drain_until(topic + "/end"), [])

    def test_will_is_published_on_a_protocol_violation_MQTT_3_1_2_8(self):
        topic = unique("will")
        watcher = self.client()
        watcher.subscribe(topic, 0)
        r = self.raw()
        r.connect(unique("bad"), will=(topic, "violated", 0))
        r.send(connect_packet(unique("again")))  # [MQTT-3.1.0-2]
        self.assertTrue(r.is_closed_by_peer())
        self.assertEqual(watcher.next().payload, b"violated")

    def test_will_retain_flag_stores_the_will(self):
        topic = unique("will")
        # A watcher sees the will go out, after the store took it: a
        # subscription made before the broker noticed the close would get
        # it live, with RETAIN=0 (seen under load).
        watcher = self.client()
        watcher.subscribe(topic, 0)
        r = self.raw()
        body = mqtt_str("MQTT") + bytes([4, 0x02 | 0x04 | 0x20]) + \
            struct.pack("!H", 60) + mqtt_str(unique("w")) + \
            mqtt_str(topic) + mqtt_str("last")
        r.send(packet(0x10, body))
        self.assertEqual(r.read()[0], 0x20)
        r.close()
        self.assertEqual(watcher.next().payload, b"last")
        sub = self.client()
        sub.subscribe(topic, 0)
        m = sub.next()
        self.assertEqual((m.payload, m.retain), (b"last", True))


# ------------------------------------------------------ sessions, takeover


class Sessions(BrokerTest):
    def test_clean_session_connack_has_session_present_0_MQTT_3_2_2_1(self):
        r = self.raw()
        present, rc = r.connect(unique("clean"), clean=True)
        self.assertEqual((present, rc), (False, 0))

    def test_new_connection_with_same_id_closes_the_old_MQTT_3_1_4_2(self):
        cid = unique("take")
        old = self.raw()
        old.connect(cid)
        new = self.raw()
        self.assertEqual(new.connect(cid), (False, 0))
        self.assertTrue(old.is_closed_by_peer())
        new.send(packet(0xC0))  # the new one works: PINGREQ -> PINGRESP
        self.assertEqual(new.read()[0], 0xD0)

    def test_takeover_publishes_the_old_connections_will_MQTT_3_1_4_2(self):
        cid, topic = unique("take"), unique("will")
        watcher = self.client()
        watcher.subscribe(topic, 1)
        old = self.raw()
        old.connect(cid, will=(topic, "taken", 1))
        self.raw().connect(cid)
        self.assertEqual(watcher.next().payload, b"taken")

    def test_persistent_session_queues_qos1_while_offline_MQTT_3_1_2_4_and_3_2_2_2(self):
        cid, topic = unique("persist"), unique("q")
        c = Client(self.port, client_id=cid, clean=False)
        self.assertFalse(c.session_present)
        c.subscribe(topic, 1)
        c.disconnect()
        pub = self.client()
        for i in range(5):
            pub.publish(topic, str(i), 1)
        pub.wait_published(5)
        c = self.client(client_id=cid, clean=False)
        self.assertTrue(c.session_present)
        got = [int(c.next().payload) for _ in range(5)]
        self.assertEqual(got, list(range(5)))

    def test_clean_session_discards_a_persistent_one_MQTT_3_1_2_6(self):
        cid, topic = unique("persist"), unique("q")
        Client(self.port, client_id=cid, clean=False).disconnect()
        c = Client(self.port, client_id=cid, clean=True)
        self.assertFalse(c.session_present)
        c.disconnect()
        c = self.client(client_id=cid, clean=False)
        self.assertFalse(c.session_present)

    def test_unacknowledged_qos1_is_resent_with_dup_on_reconnect_MQTT_4_4_0_1(self):
        cid, topic = unique("dup"), unique("d")
        r = self.raw()
        r.connect(cid, clean=False)
        r.send(subscribe_packet(1, topic, 1))
        self.assertEqual(r.read()[0], 0x90)
        self.client().publish(topic, "once", 1)
        t, payload, qos, dup, _, pid = parse_publish(*r.read())
        self.assertEqual((payload, qos, dup), (b"once", 1, False))
        r.close()  # no PUBACK
        r2 = self.raw()
        self.assertEqual(r2.connect(cid, clean=False), (True, 0))
        t, payload, qos, dup, _, pid2 = parse_publish(*r2.read())
        self.assertEqual((payload, dup, pid2), (b"once", True, pid))

    def test_qos2_resend_after_reconnect_is_not_delivered_twice_MQTT_4_3_3_2(self):
        cid, topic = unique("q2"), unique("d")
        sub = self.client()
        sub.subscribe(topic, 2)
        sub.subscribe(topic + "/end", 0)
        r = self.raw()
        r.connect(cid, clean=False)
        r.send(publish_packet(topic, b"one", qos=2, pid=7))
        self.assertEqual(r.read(), (0x50, struct.pack("!H", 7)))  # PUBREC
        r.close()  # no PUBREL
        r2 = self.raw()
        r2.connect(cid, clean=False)
        r2.send(bytes([0x3C]) + publish_packet(topic, b"one", 2, 7)[1:])
        self.assertEqual(r2.read(), (0x50, struct.pack("!H", 7)))
        r2.send(packet(0x62, struct.pack("!H", 7)))  # PUBREL
        self.assertEqual(r2.read(), (0x70, struct.pack("!H", 7)))  # PUBCOMP
        self.client().publish(topic + "/end", "end", 0)
        got = sub.drain_until(topic + "/end")
        self.assertEqual([m.payload for m in got], [b"one"])

    def test_qos2_resend_after_takeover_is_not_delivered_twice_MQTT_4_3_3_2(self):
        cid, topic = unique("q2t"), unique("d")
        sub = self.client()
        sub.subscribe(topic, 2)
        sub.subscribe(topic + "/end", 2)
        old = self.raw()
        old.connect(cid, clean=False)
        old.send(publish_packet(topic, b"one", qos=2, pid=9))
        self.assertEqual(old.read(), (0x50, struct.pack("!H", 9)))
        new = self.raw()  # takes over while the old one is still open
        self.assertEqual(new.connect(cid, clean=False), (True, 0))
        new.send(bytes([0x3C]) + publish_packet(topic, b"one", 2, 9)[1:])
        self.assertEqual(new.read(), (0x50, struct.pack("!H", 9)))
        new.send(packet(0x62, struct.pack("!H", 9)))
        self.assertEqual(new.read(), (0x70, struct.pack("!H", 9)))
        self.client().publish(topic + "/end", "end", 2)
        got = sub.drain_until(topic + "/end")
        self.assertEqual([m.payload for m in got], [b"one"])

    def test_inflight_window_holds_back_messages_until_acked(self):
        cid, topic = unique("win"), unique("w")
        r = self.raw()
        r.connect(cid)
        r.send(subscribe_packet(1, topic, 1))
        self.assertEqual(r.read()[0], 0x90)
        pub = self.client()
        for i in range(25):  # the default window is 20
            pub.publish(topic, str(i), 1)
        pub.wait_published(25)
        pids = [parse_publish(*r.read())[5] for _ in range(20)]
        r.send(packet(0x40, struct.pack("!H", pids[0])))  # PUBACK one
        t, payload, *_ = parse_publish(*r.read())
        self.assertEqual(payload, b"20")


# ----------------------------------------------------- CONNECT and faults


class Faults(BrokerTest):
    def test_unacceptable_protocol_level_gets_connack_1_and_close_MQTT_3_1_2_2(self):
        r = self.raw()
        r.send(connect_packet(unique("v5"), level=5))
        self.assertEqual(r.read(), (0x20, bytes([0, 1])))
        self.assertTrue(r.is_closed_by_peer())

    def test_empty_client_id_without_clean_session_gets_connack_2_MQTT_3_1_3_8(self):
        r = self.raw()
        r.send(connect_packet("", clean=False))
        self.assertEqual(r.read(), (0x20, bytes([0, 2])))
        self.assertTrue(r.is_closed_by_peer())

    def test_empty_client_id_with_clean_session_is_accepted_MQTT_3_1_3_6(self):
        self.assertEqual(self.raw().connect(""), (False, 0))

    def test_first_packet_other_than_connect_closes_MQTT_3_1_0_1(self):
        r = self.raw()
        r.send(packet(0xC0))  # PINGREQ
        self.assertTrue(r.is_closed_by_peer())

    def test_second_connect_closes_the_connection_MQTT_3_1_0_2(self):
        r = self.raw()
        r.connect(unique("twice"))
        r.send(connect_packet(unique("twice")))
        self.assertTrue(r.is_closed_by_peer())

    def test_malformed_packet_closes_only_that_connection_MQTT_4_8_0_1(self):
        topic = unique("alive")
        bystander = self.client()
        bystander.subscribe(topic, 1)
        cases = [
            b"\x30\xff\xff\xff\xff\x01",          # remaining length > 4 bytes
            b"\x32\x03\x00\x01a",                 # PUBLISH QoS 1, no id
            b"\x82\x06\x00\x01\x00\x01\xff\x00",  # invalid UTF-8 filter
            b"\x80\x02\x00\x01",                  # SUBSCRIBE flags not 0010
            publish_packet("a/#", b"x"),          # wildcard in a topic name
        ]
        for bad in cases:
            r = self.raw()
            r.connect(unique("bad"))
            r.send(bad)
            self.assertTrue(r.is_closed_by_peer(), bad)
        self.client().publish(topic, "still here", 1)
        self.assertEqual(bystander.next().payload, b"still here")

    def test_connection_without_packets_is_closed_after_1_5_keepalive_MQTT_3_1_2_24(self):
        topic = unique("ka")
        watcher = self.client()
        watcher.subscribe(topic, 1)
        r = self.raw()
        r.connect(unique("ka"), keepalive=1, will=(topic, "timed out", 1))
        self.assertTrue(r.is_closed_by_peer())
        self.assertEqual(watcher.next().payload, b"timed out")

    def test_connection_without_connect_is_closed_after_the_timeout(self):
        # The CONNECT timeout is 10 s: this test waits for it (the one
        # slow test), with a guard above it.
        r = self.raw()
        r.sock.settimeout(WAIT + 10)
        self.assertTrue(r.is_closed_by_peer())

    def test_pingreq_gets_pingresp_MQTT_3_12_4_1(self):
        r = self.raw()
        r.connect(unique("ping"))
        r.send(packet(0xC0))
        self.assertEqual(r.read(), (0xD0, b""))


# ------------------------------------- configuration, passwords, ACL, WS


def pbkdf2_entry(user, password, iterations=101):
    """A mosquitto_passwd 2 line: $7$ITERATIONS$SALT$HASH (base64)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt,
                                 iterations)
    return "%s:$7$%d$%s$%s\n" % (user, iterations,
                                  base64.b64encode(salt).decode(),
                                  base64.b64encode(digest).decode())


ACL = """user alice
topic readwrite alice/#
topic read shared/#
user bob
topic readwrite shared/#
"""


class Configured(BrokerTest):
    """A broker from a mosquitto-style file: two listeners (MQTT and
    WebSocket), no anonymous clients, a password file and an ACL."""

    @classmethod
    def setUpClass(cls):
        cls.files = tempfile.TemporaryDirectory()
        cls.passwd = os.path.join(cls.files.name, "passwd")
        acl = os.path.join(cls.files.name, "acl")
        with open(cls.passwd, "w") as f:
            f.write(pbkdf2_entry("alice", "secret") +
                    pbkdf2_entry("bob", "hunter2"))
        with open(acl, "w") as f:
            f.write(ACL)

        def config(port, ws_port):
            return ("# hermes-mqtt test configuration\n"
                    "listener %d 127.0.0.1\n"
                    "listener %d 127.0.0.1\n"
                    "protocol websockets\n"
                    "allow_anonymous false\n"
                    "password_file %s\n"
                    "acl_file %s\n"
                    "max_inflight_messages 10\n"
                    "max_keepalive 100\n"
                    % (port, ws_port, cls.passwd, acl))
        cls.broker = Broker(config=config, listeners=2)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.files.cleanup()

    def test_anonymous_connect_gets_connack_5_when_not_allowed(self):
        r = self.raw()
        r.send(connect_packet(unique("anon")))
        self.assertEqual(r.read(), (0x20, bytes([0, 5])))
        self.assertTrue(r.is_closed_by_peer())

    def test_wrong_password_gets_connack_5_as_from_mosquitto(self):
        r = self.raw()
        r.send(connect_packet(unique("a"), user="alice", password="nope"))
        self.assertEqual(r.read(), (0x20, bytes([0, 5])))

    def test_unknown_user_gets_connack_5_as_from_mosquitto(self):
        r = self.raw()
        r.send(connect_packet(unique("a"), user="mallory", password="x"))
        self.assertEqual(r.read(), (0x20, bytes([0, 5])))

    def test_keepalive_above_max_keepalive_gets_connack_2(self):
        r = self.raw()
        r.send(connect_packet(unique("a"), user="alice", password="secret",
                              keepalive=200))
        self.assertEqual(r.read(), (0x20, bytes([0, 2])))

    def test_right_password_is_accepted(self):
        r = self.raw()
        self.assertEqual(r.connect(unique("a"), user="alice",
                                   password="secret"), (False, 0))

    def test_subscription_the_acl_forbids_gets_suback_0x80_MQTT_3_9_3_2(self):
        alice = self.client(user="alice", password="secret")
        self.assertEqual(alice.subscribe("bob/#", 1), 128)
        self.assertEqual(alice.subscribe("alice/#", 1), 1)

    def test_publish_the_acl_forbids_is_not_delivered(self):
        bob = self.client(user="bob", password="hunter2")
        bob.subscribe("shared/#", 1)
        alice = self.client(user="alice", password="secret")
        alice.publish("shared/x", "from alice", 1)  # alice may only read
        alice.wait_published(1)
        bob.publish("shared/end", "end", 1)
        self.assertEqual(bob.drain_until("shared/end"), [])

    def test_allowed_publish_is_delivered_to_a_reader(self):
        alice = self.client(user="alice", password="secret")
        alice.subscribe("shared/#", 1)
        bob = self.client(user="bob", password="hunter2")
        bob.publish("shared/news", "hello", 1)
        self.assertEqual(alice.next().payload, b"hello")

    def test_websocket_client_publishes_to_a_tcp_client_MQTT_6_0_0_2(self):
        tcp = self.client(user="alice", password="secret")
        tcp.subscribe("alice/ws", 1)
        ws = Client(self.broker.ws_port, user="alice", password="secret",
                    transport="websockets")
        self.clients.append(ws)
        ws.publish("alice/ws", "over websocket", 1)
        self.assertEqual(tcp.next().payload, b"over websocket")

    def test_tcp_client_publishes_to_a_websocket_client(self):
        ws = Client(self.broker.ws_port, user="alice", password="secret",
                    transport="websockets")
        self.clients.append(ws)
        ws.subscribe("alice/to-ws", 2)
        self.client(user="alice", password="secret").publish(
            "alice/to-ws", "x" * 70000, 2)
        self.assertEqual(ws.next().payload, b"x" * 70000)

    def test_sighup_reloads_the_password_file(self):
        with open(self.passwd, "a") as f:
            f.write(pbkdf2_entry("carol", "pw"))
        reloads = sum("MQTT-RELOAD" in l for l in self.broker.lines)
        self.broker.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.broker.wait_log("MQTT-RELOAD", reloads + 1))
        r = self.raw()
        self.assertEqual(r.connect(unique("c"), user="carol", password="pw"),
                         (False, 0))


class ConnectionLimit(BrokerTest):
    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(config=lambda port, ws: (
            "listener %d 127.0.0.1\nallow_anonymous true\n"
            "max_connections 2\n" % port))

    def test_connections_past_max_connections_are_closed(self):
        a, b = self.raw(), self.raw()
        a.connect(unique("a"))
        b.connect(unique("b"))
        c = self.raw()
        self.assertTrue(c.is_closed_by_peer())


class QueueLimit(BrokerTest):
    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(config=lambda port, ws: (
            "listener %d 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 3\nmax_inflight_messages 1\n" % port))

    def test_offline_queue_keeps_at_most_max_queued_messages(self):
        cid, topic = unique("q"), unique("t")
        r = self.raw()
        r.connect(cid, clean=False)
        r.send(subscribe_packet(1, topic, 1))
        self.assertEqual(r.read()[0], 0x90)
        r.send(packet(0xE0))  # DISCONNECT
        self.assertTrue(r.is_closed_by_peer())
        r.close()
        self.raws.remove(r)
        pub = self.raw()
        pub.connect(unique("p"))
        for i in range(6):
            pub.send(publish_packet(topic, str(i).encode(), 1, pid=i + 1))
            self.assertEqual(pub.read()[0], 0x40)  # PUBACK
        pub.close()
        self.raws.remove(pub)
        r2 = self.raw()
        self.assertEqual(r2.connect(cid, clean=False), (True, 0))
        got = []
        for _ in range(3):  # the window is 1: acknowledge each
            _, payload, _, _, _, pid = parse_publish(*r2.read())
            got.append(payload)
            r2.send(packet(0x40, struct.pack("!H", pid)))
        self.assertEqual(got, [b"0", b"1", b"2"])
        r2.send(packet(0xC0))  # nothing more queued: PINGRESP comes next
        self.assertEqual(r2.read()[0], 0xD0)


# ------------------------------------------------------------- the process


class Process(unittest.TestCase):
    def test_sigterm_closes_clients_and_exits_0(self):
        b = Broker()
        r = Raw(b.port)
        r.connect(unique("term"))
        status = b.stop()
        self.assertTrue(r.is_closed_by_peer())
        r.close()
        self.assertEqual(status, 0, b.log())

    def test_unknown_configuration_option_is_an_error_with_its_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("listener %d 127.0.0.1\nno_such_option 1\n" % free_port())
            f.flush()
            out = subprocess.run([BROKER, "-c", f.name], capture_output=True,
                                 text=True, timeout=WAIT)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(f.name + ":2", out.stderr)

    def test_help_exits_0(self):
        out = subprocess.run([BROKER, "-h"], capture_output=True, text=True,
                             timeout=WAIT)
        self.assertEqual(out.returncode, 0)
        self.assertIn("-p", out.stdout)

    def test_port_in_use_fails_with_a_message(self):
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            s.listen()
            port = s.getsockname()[1]
            out = subprocess.run([BROKER, "-p", str(port)],
                                 capture_output=True, text=True,
                                 timeout=WAIT)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("MQTT-LISTEN", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
