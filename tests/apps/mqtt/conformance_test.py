"""MQTT 3.1.1 conformance cases for hermes-mqtt, one per server statement
that broker_test.py did not already prove end to end.

docs/mqtt-conformance.md lists every normative statement of the
specification with the test that proves it; the cases here fill the rows
that had only a unit test (or none). Each speaks raw MQTT over real TCP on
loopback to the real broker binary ($HERMES_MQTT), one broker for the whole
file (broker_test.BrokerTest), because most of these packets are ones no
well-behaved client library sends: wrong flags, packet id 0, a DUP on QoS 0,
a second copy of a QoS 2 PUBLISH before its PUBREL. Test names carry the
statement they check ([MQTT-x.y.z-n] is written MQTT_x_y_z_n).

Nothing here asserts on time. "Nothing else arrived" is proved by sending a
PINGREQ and reading the PINGRESP as the very next packet: the broker handles
a connection's packets in order, so anything it meant to send before would
come first.
"""

import os
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker_test import BrokerTest  # noqa: E402
from mqttkit import (WAIT, connect_packet, mqtt_str, packet,  # noqa: E402
                     parse_publish, publish_packet, subscribe_packet, unique)

PINGREQ, PINGRESP = packet(0xC0), (0xD0, b"")
DISCONNECT = packet(0xE0)


def pid(n):
    return struct.pack("!H", n)


def connect_body(flags=0x02, payload=None, name=b"MQTT", level=4):
    """A CONNECT packet with exactly these flags and payload bytes."""
    if payload is None:
        payload = mqtt_str(unique("c"))
    return packet(0x10, mqtt_str(name) + bytes([level, flags]) +
                  struct.pack("!H", 60) + payload)


def unsubscribe_packet(packet_id, *filters):
    return packet(0xA2, pid(packet_id) + b"".join(mqtt_str(f)
                                                  for f in filters))


class Conformance(BrokerTest):
    def conn(self, **kw):
        """A raw client, connected (CONNACK 0 read) under a fresh id."""
        r = self.raw()
        self.assertEqual(r.connect(kw.pop("client_id", unique("c")), **kw)[1],
                         0)
        return r

    def persistent(self, prefix, qos):
        """(client id, topic, raw client): a CleanSession 0 client
        subscribed to a fresh topic at `qos`."""
        cid, topic = unique(prefix), unique(prefix)
        r = self.raw()
        r.connect(cid, clean=False)
        r.subscribe(topic, qos)
        return cid, topic, r

    def publish_done(self, p, topic, payload, qos, packet_id, retain=False):
        """Publishes from `p` and completes the QoS 1/2 handshake."""
        p.send(publish_packet(topic, payload, qos, packet_id, retain=retain))
        if qos == 1:
            self.assertEqual(p.read(), (0x40, pid(packet_id)))
        elif qos == 2:
            self.assertEqual(p.read(), (0x50, pid(packet_id)))
            p.send(packet(0x62, pid(packet_id)))
            self.assertEqual(p.read(), (0x70, pid(packet_id)))

    def publish_of(self, r):
        """The next packet of `r`, which must be a PUBLISH, parsed."""
        first, body = r.read()
        self.assertEqual(first >> 4, 3, "expected PUBLISH, got %#x" % first)
        return parse_publish(first, body)

    def assert_nothing_more(self, r):
        r.send(PINGREQ)
        self.assertEqual(r.read(), PINGRESP)

    def assert_closes_without_connack(self, data):
        r = self.raw()
        r.send(data)
        self.assertTrue(r.is_closed_by_peer(), data)

    def assert_closes_after_connect(self, data):
        r = self.conn()
        r.send(data)
        self.assertTrue(r.is_closed_by_peer(), data)

    def assert_each_closes_after_connect(self, cases):
        """`cases`: (what, packet) pairs, each sent on its own connection."""
        for what, data in cases:
            with self.subTest(what):
                self.assert_closes_after_connect(data)

    def subscriber(self, prefix, qos=0):
        """(fresh topic, raw clean client subscribed to it at `qos`)."""
        topic = unique(prefix)
        r = self.conn()
        r.subscribe(topic, qos)
        return topic, r


class Connect(Conformance):
    def test_other_protocol_name_closes_without_connack_MQTT_3_1_2_1(self):
        self.assert_closes_without_connack(connect_body(name=b"MQTX"))

    def test_name_mqtt_with_level_3_gets_connack_1_MQTT_3_1_2_2(self):
        r = self.raw()
        r.send(connect_body(level=3))
        self.assertEqual(r.read(), (0x20, bytes([0, 1])))  # [MQTT-3.2.2-4]
        self.assertTrue(r.is_closed_by_peer())  # [MQTT-3.2.2-5]

    def test_mqtt_3_1_mqisdp_level_3_is_accepted(self):
        r = self.raw()
        r.send(connect_body(name=b"MQIsdp", level=3))
        self.assertEqual(r.read(), (0x20, bytes([0, 0])))

    def test_reserved_connect_flag_closes_MQTT_3_1_2_3(self):
        self.assert_closes_without_connack(connect_body(flags=0x03))

    def test_inconsistent_will_and_user_flags_close_MQTT_3_1_4_1(self):
        cid = mqtt_str(unique("w"))
        will = mqtt_str("will/t") + mqtt_str("m")
        cases = {
            "[MQTT-3.1.2-13] will QoS without will": (0x02 | 0x08, cid),
            "[MQTT-3.1.2-15] will retain without will": (0x02 | 0x20, cid),
            "[MQTT-3.1.2-14] will QoS 3": (0x02 | 0x04 | 0x18, cid + will),
            "[MQTT-3.1.2-9] will flag, no will topic": (0x02 | 0x04, cid),
            "[MQTT-3.1.2-11] will fields without will flag": (0x02,
                                                              cid + will),
            "[MQTT-3.1.2-19] user name flag, no user name": (0x02 | 0x80, cid),
            "[MQTT-3.1.2-21] password flag, no password": (0x02 | 0xC0,
                                                           cid + mqtt_str("u")),
            "[MQTT-3.1.2-22] password without user name": (
                0x02 | 0x40, cid + mqtt_str("pw")),
            "[MQTT-3.3.2-2] will topic with a wildcard": (
                0x02 | 0x04, cid + mqtt_str("w/#") + mqtt_str("m")),
        }
        for what, (flags, payload) in cases.items():
            with self.subTest(what):
                self.assert_closes_without_connack(
                    connect_body(flags=flags, payload=payload))

    def test_no_will_is_published_without_the_will_flag_MQTT_3_1_2_12(self):
        watcher = self.conn()
        watcher.subscribe("#", 0)  # whatever a will could be published on
        cid, marker = unique("nowill"), unique("marker")
        self.conn(client_id=cid).close()  # no DISCONNECT, no will flag
        # The same id again: its CONNACK waits for the old connection to
        # be gone, which is when a will would have been published.
        self.conn(client_id=cid).send(publish_packet(marker, b"m"))
        self.assertEqual(self.publish_of(watcher)[0], marker)

    def test_ill_formed_utf8_in_connect_strings_closes_MQTT_3_1_3_4_and_11(self):
        bad = mqtt_str(b"a\xed\xa0\x80")  # an encoded surrogate, U+D800
        for what, flags, payload in [
                ("client id [MQTT-3.1.3-4]", 0x02, bad),
                ("client id with U+0000 [MQTT-1.5.3-2]", 0x02,
                 mqtt_str(b"a\x00b")),
                ("will topic [MQTT-3.1.3-10]", 0x06,
                 mqtt_str("c") + bad + mqtt_str("m")),
                ("user name [MQTT-3.1.3-11]", 0x82, mqtt_str("c") + bad)]:
            with self.subTest(what):
                self.assert_closes_without_connack(
                    connect_body(flags=flags, payload=payload))

    def test_client_ids_of_1_to_23_letters_and_digits_are_accepted_MQTT_3_1_3_5(self):
        for cid in ["a", "0123456789abcdefghijklm", "ABCDEFGHIJKLMNOPQRSTUVW"]:
            with self.subTest(cid):
                r = self.conn(client_id=cid)
                r.send(DISCONNECT)

    def test_a_client_id_the_server_cannot_hold_gets_connack_2_MQTT_3_1_3_9(self):
        r = self.raw()
        r.send(connect_packet("x" * 1100))  # longer than a receiver's name
        self.assertEqual(r.read(), (0x20, bytes([0, 2])))  # [MQTT-3.2.2-4]
        self.assertTrue(r.is_closed_by_peer())

    def test_data_after_a_refused_connect_is_not_processed_MQTT_3_1_4_5(self):
        topic, watcher = self.subscriber("refused", 0)
        r = self.raw()
        r.send(connect_packet(unique("v5"), level=5) +
               publish_packet(topic, b"must not arrive"))
        self.assertEqual(r.read(), (0x20, bytes([0, 1])))
        self.assertTrue(r.is_closed_by_peer())
        self.assert_nothing_more(watcher)

    def test_session_present_follows_the_stored_state_MQTT_3_2_2_2_and_3(self):
        cid = unique("present")
        seen = []
        for clean in [False, False, True, False]:
            r = self.raw()
            seen.append(r.connect(cid, clean=clean))
            r.send(DISCONNECT)
            self.assertTrue(r.is_closed_by_peer())
        # New: 0 [MQTT-3.2.2-3]; stored: 1 [MQTT-3.2.2-2]; clean: 0
        # [MQTT-3.2.2-1]; after a clean one nothing is stored [MQTT-3.1.2-6].
        self.assertEqual(seen, [(False, 0), (True, 0), (False, 0), (False, 0)])

    def test_connack_comes_before_queued_messages_MQTT_3_2_0_1(self):
        cid, topic, r = self.persistent("first", 1)
        r.send(DISCONNECT)
        self.assertTrue(r.is_closed_by_peer())
        self.publish_done(self.conn(), topic, b"waiting", 1, 1)
        r = self.raw()
        r.send(connect_packet(cid, clean=False))
        self.assertEqual(r.read(), (0x20, bytes([1, 0])))
        self.assertEqual(self.publish_of(r)[1], b"waiting")


class FixedHeader(Conformance):
    def test_wrong_reserved_flags_close_MQTT_2_2_2_2(self):
        self.assert_each_closes_after_connect([
                ("PUBREL 0000 [MQTT-3.6.1-1]", packet(0x60, pid(1))),
                ("SUBSCRIBE 0000 [MQTT-3.8.1-1]",
                 packet(0x80, pid(1) + mqtt_str("a") + b"\0")),
                ("UNSUBSCRIBE 0000 [MQTT-3.10.1-1]",
                 packet(0xA0, pid(1) + mqtt_str("a"))),
                ("PUBACK 0001", packet(0x41, pid(1))),
                ("PINGREQ 0010", packet(0xC2)),
                ("DISCONNECT 0001 [MQTT-3.14.1-1]", packet(0xE1)),
                ("reserved type 0", packet(0x00)),
                ("reserved type 15", packet(0xF0))])

    def test_a_disconnect_with_bad_flags_still_publishes_the_will_MQTT_3_14_1_1(self):
        topic, watcher = self.subscriber("will", 0)
        r = self.conn(will=(topic, "bad disconnect", 0))
        r.send(packet(0xE1))
        self.assertTrue(r.is_closed_by_peer())
        self.assertEqual(self.publish_of(watcher)[1], b"bad disconnect")

    def test_packets_only_a_server_sends_close_MQTT_4_8_0_1(self):
        self.assert_each_closes_after_connect([
            ("CONNACK", packet(0x20, b"\0\0")),
            ("SUBACK", packet(0x90, pid(1) + b"\0")),
            ("UNSUBACK", packet(0xB0, pid(1))),
            ("PINGRESP", packet(0xD0))])

    def test_packet_id_zero_closes_MQTT_2_3_1_1(self):
        self.assert_each_closes_after_connect([
                ("PUBLISH QoS 1", publish_packet("a", b"x", 1, 0)),
                ("PUBLISH QoS 2", publish_packet("a", b"x", 2, 0)),
                ("SUBSCRIBE", subscribe_packet(0, "a", 0)),
                ("UNSUBSCRIBE", unsubscribe_packet(0, "a"))])


class Publish(Conformance):
    def test_invalid_publish_packets_close(self):
        self.assert_each_closes_after_connect([
                ("QoS 3 [MQTT-3.3.1-4]",
                 packet(0x36, mqtt_str("a") + pid(1) + b"x")),
                ("DUP on QoS 0 [MQTT-3.3.1-2]",
                 packet(0x38, mqtt_str("a") + b"x")),
                ("+ in the topic [MQTT-3.3.2-2]", publish_packet("a/+", b"x")),
                ("# in the topic [MQTT-4.7.1-1]", publish_packet("#", b"x")),
                ("empty topic [MQTT-4.7.3-1]", publish_packet("", b"x")),
                ("U+0000 in the topic [MQTT-4.7.3-2]",
                 publish_packet("a\0b", b"x")),
                ("surrogate in the topic [MQTT-1.5.3-1]",
                 packet(0x30, mqtt_str(b"a\xed\xa0\x80") + b"x"))])

    def test_incoming_dup_is_not_propagated_MQTT_3_3_1_3(self):
        topic, sub = self.subscriber("dup", 1)
        p = self.conn()
        p.send(packet(0x3A, mqtt_str(topic) + pid(3) + b"x"))  # QoS 1, DUP
        self.assertEqual(p.read(), (0x40, pid(3)))
        _, payload, qos, dup, retain, _ = self.publish_of(sub)
        self.assertEqual((payload, qos, dup, retain), (b"x", 1, False, False))

    def test_zero_width_no_break_space_is_kept_MQTT_1_5_3_3(self):
        topic = "\ufeff" + unique("bom")
        sub = self.conn()
        sub.subscribe(topic, 0)
        self.conn().send(publish_packet(topic, b"b"))
        self.assertEqual(self.publish_of(sub)[0], topic)

    def test_matching_does_not_normalise_topics_MQTT_4_7_3_4(self):
        topic = unique("Case") + "/T"
        sub = self.conn()
        sub.subscribe(topic.lower(), 0, pid=1)
        sub.subscribe(topic + "/", 0, pid=2)
        sub.subscribe(topic, 0, pid=3)
        self.conn().send(publish_packet(topic, b"x"))
        self.assertEqual(self.publish_of(sub)[0], topic)
        self.assert_nothing_more(sub)

    def test_qos1_same_id_after_puback_is_a_new_message_MQTT_4_3_2_2(self):
        topic, sub = self.subscriber("q1", 0)
        p = self.conn()
        for payload in [b"one", b"two"]:
            p.send(publish_packet(topic, payload, 1, 5))
            self.assertEqual(p.read(), (0x40, pid(5)))
            self.assertEqual(self.publish_of(sub)[1], payload)

    def test_qos2_copy_before_pubrel_is_delivered_once_MQTT_4_3_3_2(self):
        topic, sub = self.subscriber("q2", 0)
        p = self.conn()
        p.send(publish_packet(topic, b"one", 2, 5))
        self.assertEqual(p.read(), (0x50, pid(5)))  # PUBREC
        p.send(packet(0x3C, mqtt_str(topic) + pid(5) + b"one"))  # DUP copy
        self.assertEqual(p.read(), (0x50, pid(5)))  # PUBREC again
        p.send(packet(0x62, pid(5)))
        self.assertEqual(p.read(), (0x70, pid(5)))  # PUBCOMP
        # After PUBCOMP the id is free: the same id is a new message.
        p.send(publish_packet(topic, b"two", 2, 5))
        self.assertEqual(p.read(), (0x50, pid(5)))
        self.assertEqual([self.publish_of(sub)[1] for _ in range(2)],
                         [b"one", b"two"])
        self.assert_nothing_more(sub)

    def test_pubrel_for_an_unknown_id_gets_pubcomp_MQTT_3_6_4_1(self):
        r = self.conn()
        r.send(packet(0x62, pid(77)))
        self.assertEqual(r.read(), (0x70, pid(77)))

    def test_qos2_delivery_resends_pubrel_not_publish_MQTT_4_3_3_1_and_4_4_0_1(self):
        cid, topic, sub = self.persistent("q2out", 2)
        self.publish_done(self.conn(), topic, b"x", 2, 9)
        _, _, qos, dup, _, out_id = self.publish_of(sub)
        self.assertEqual((qos, dup), (2, False))
        sub.close()  # no PUBREC: the PUBLISH is resent, with DUP
        sub = self.raw()
        self.assertEqual(sub.connect(cid, clean=False), (True, 0))
        _, payload, qos, dup, _, again = self.publish_of(sub)
        self.assertEqual((payload, qos, dup, again), (b"x", 2, True, out_id))
        sub.send(packet(0x50, pid(out_id)))  # PUBREC
        self.assertEqual(sub.read(), (0x62, pid(out_id)))  # PUBREL
        sub.close()  # no PUBCOMP: PUBREL is resent, never the PUBLISH
        sub = self.raw()
        self.assertEqual(sub.connect(cid, clean=False), (True, 0))
        self.assertEqual(sub.read(), (0x62, pid(out_id)))
        sub.send(packet(0x70, pid(out_id)))
        self.assert_nothing_more(sub)

    def test_resent_messages_keep_their_order_and_ids_MQTT_4_6_0_1(self):
        cid, topic, sub = self.persistent("order", 2)
        p = self.conn()
        for i in range(6):
            self.publish_done(p, topic, str(i).encode(), 1 + i % 2, 10 + i)
        first = [self.publish_of(sub) for _ in range(6)]
        ids = [m[5] for m in first]
        self.assertEqual(len(set(ids)), 6)  # unused ids [MQTT-2.3.1-4]
        self.assertNotIn(0, ids)
        sub.close()
        sub = self.raw()
        sub.connect(cid, clean=False)
        again = [self.publish_of(sub) for _ in range(6)]
        self.assertEqual([(m[1], m[2], m[5]) for m in again],
                         [(m[1], m[2], m[5]) for m in first])
        self.assertTrue(all(m[3] for m in again))  # DUP [MQTT-3.3.1-1]


class Retain(Conformance):
    def test_retain_0_neither_stores_nor_replaces_MQTT_3_3_1_12(self):
        topic = unique("ret")
        p = self.conn()
        self.publish_done(p, topic, b"kept", 1, 1, retain=True)
        self.publish_done(p, topic, b"plain", 1, 2)
        sub = self.conn()
        sub.subscribe(topic, 1)
        self.assertEqual(self.publish_of(sub)[1:5], (b"kept", 1, False, True))
        self.assert_nothing_more(sub)

    def test_qos0_retained_message_replaces_the_old_MQTT_3_3_1_7(self):
        topic = unique("ret")
        p = self.conn()
        self.publish_done(p, topic, b"one", 1, 1, retain=True)
        p.send(publish_packet(topic, b"two", 0, retain=True))
        self.assert_nothing_more(p)
        sub = self.conn()
        sub.subscribe(topic, 1)
        self.assertEqual(self.publish_of(sub)[1:5], (b"two", 0, False, True))

    def test_empty_retained_goes_to_subscribers_and_is_not_stored_MQTT_3_3_1_10_and_11(self):
        topic, sub = self.subscriber("ret", 0)
        p = self.conn()
        p.send(publish_packet(topic, b"one", 0, retain=True))
        self.assertEqual(self.publish_of(sub)[1], b"one")
        p.send(publish_packet(topic, b"", 0, retain=True))
        self.assertEqual(self.publish_of(sub)[1:5], (b"", 0, False, False))
        late = self.conn()
        late.subscribe(topic, 0)
        self.assert_nothing_more(late)

    def test_a_retained_publish_racing_a_subscribe_arrives_once_MQTT_3_3_1_6(self):
        """Retained messages are published to topics while one SUBSCRIBE
        adds filters for them: each must arrive exactly once, from the
        store (RETAIN=1, published first) or from the route (RETAIN=0,
        subscribed first), never both (a QoS 0 message twice) and never
        neither. The SUBSCRIBE's first filter matches a thousand stored
        messages, which keeps a broker that adds the filters and reads the
        store in two steps busy between them: publishes made meanwhile (even
        after the SUBACK) then reach the client twice."""
        base, n = unique("race"), 100
        p = self.conn()
        for i in range(1000):
            p.send(publish_packet("%s/pre/%d" % (base, i), b"p" * 1024,
                                  retain=True))
        self.assert_nothing_more(p)  # routed in order: all stored now
        sub, marker = self.conn(), base + "/end"
        sub.subscribe(marker, 0, pid=2)
        filters = [base + "/pre/#"] + ["%s/t/%d" % (base, i) for i in range(n)]
        sub.send(packet(0x82, pid(1) + b"".join(mqtt_str(f) + b"\0"
                                                for f in filters)))
        for i in range(n // 2):  # racing the SUBSCRIBE
            p.send(publish_packet("%s/t/%d" % (base, i), b"r", retain=True))
        copies = {}
        while True:
            first, body = sub.read()
            if first == 0x90:
                self.assertEqual(body, pid(1) + bytes(len(filters)))
                # Subscribed: from now on only the route may deliver them,
                # while the stored ones may still be on their way out.
                for i in range(n // 2, n):
                    p.send(publish_packet("%s/t/%d" % (base, i), b"r",
                                          retain=True))
                p.send(publish_packet(marker, b"end"))  # the last
                continue
            topic = parse_publish(first, body)[0]
            if topic == marker:
                break
            copies[topic] = copies.get(topic, 0) + 1
        self.assertEqual({t: c for t, c in copies.items() if c != 1}, {})
        self.assertEqual(len(copies), 1000 + n)

    def test_retained_messages_outlive_the_session_MQTT_3_1_2_7(self):
        topic = unique("ret")
        p = self.conn()
        self.publish_done(p, topic, b"stays", 1, 1, retain=True)
        p.send(DISCONNECT)
        self.assertTrue(p.is_closed_by_peer())
        sub = self.conn()
        sub.subscribe(topic, 0)
        self.assertEqual(self.publish_of(sub)[1], b"stays")

    def test_will_retain_0_is_published_but_not_stored_MQTT_3_1_2_16(self):
        topic, watcher = self.subscriber("will", 0)
        self.conn(will=(topic, "bye", 0)).close()
        self.assertEqual(self.publish_of(watcher)[1:5], (b"bye", 0, False,
                                                         False))
        late = self.conn()
        late.subscribe(topic, 0)
        self.assert_nothing_more(late)


class Subscribe(Conformance):
    def test_invalid_subscribe_and_unsubscribe_packets_close(self):
        self.assert_each_closes_after_connect([
                ("SUBSCRIBE without filters [MQTT-3.8.3-3]",
                 packet(0x82, pid(1))),
                ("UNSUBSCRIBE without filters [MQTT-3.10.3-2]",
                 packet(0xA2, pid(1))),
                ("requested QoS 3 [MQTT-3-8.3-4]",
                 subscribe_packet(1, "a", 3)),
                ("reserved bits in the QoS byte [MQTT-3-8.3-4]",
                 subscribe_packet(1, "a", 0x41)),
                ("# not last [MQTT-4.7.1-2]", subscribe_packet(1, "a/#/b", 0)),
                ("+ not a whole level [MQTT-4.7.1-3]",
                 subscribe_packet(1, "a+", 0)),
                ("empty filter [MQTT-4.7.3-1]", subscribe_packet(1, "", 0)),
                ("ill-formed UTF-8 filter [MQTT-3.8.3-1]",
                 packet(0x82, pid(1) + mqtt_str(b"\xc0\xaf") + b"\0")),
                ("ill-formed UTF-8 in UNSUBSCRIBE [MQTT-3.10.3-1]",
                 packet(0xA2, pid(1) + mqtt_str(b"\xc0\xaf")))])

    def test_suback_has_one_code_per_filter_in_order_MQTT_3_8_4_4_and_5(self):
        base = unique("multi")
        r = self.conn()
        r.send(packet(0x82, pid(0x1234) +
                      mqtt_str(base + "/a") + b"\2" +
                      mqtt_str(base + "/b") + b"\0" +
                      mqtt_str(base + "/c") + b"\1" +
                      mqtt_str(base + "/a") + b"\1"))  # the same filter again
        # Same id [MQTT-3.8.4-2], codes in order [MQTT-3.9.3-1].
        self.assertEqual(r.read(), (0x90, pid(0x1234) + bytes([2, 0, 1, 1])))
        p = self.conn()
        p.send(publish_packet(base + "/a", b"x", 2, 1))
        self.assertEqual(p.read(), (0x50, pid(1)))
        # Handled as a sequence: the last "a" (QoS 1) replaced the first.
        self.assertEqual(self.publish_of(r)[2], 1)
        self.assert_nothing_more(r)

    def test_resubscribing_replaces_and_resends_retained_MQTT_3_8_4_3(self):
        topic = unique("resub")
        p = self.conn()
        self.publish_done(p, topic, b"kept", 1, 1, retain=True)
        r = self.conn()
        r.subscribe(topic, 1, pid=1)
        _, payload, qos, dup, retain, out_id = self.publish_of(r)
        self.assertEqual((payload, qos, dup, retain), (b"kept", 1, False, True))
        r.send(packet(0x40, pid(out_id)))
        r.subscribe(topic, 0, pid=2)
        self.assertEqual(self.publish_of(r)[1:5], (b"kept", 0, False, True))
        self.publish_done(p, topic, b"live", 1, 2)
        # One subscription, now at QoS 0: one copy, not two.
        self.assertEqual(self.publish_of(r)[1:5], (b"live", 0, False, False))
        self.assert_nothing_more(r)


class Unsubscribe(Conformance):
    def test_unsuback_even_when_nothing_matched_MQTT_3_10_4_5(self):
        r = self.conn()
        r.send(unsubscribe_packet(0x4321, unique("never")))
        self.assertEqual(r.read(), (0xB0, pid(0x4321)))  # [MQTT-3.10.4-4]

    def test_filters_are_compared_exactly_not_matched_MQTT_3_10_4_1(self):
        base = unique("exact")
        r = self.conn()
        r.subscribe(base + "/+", 0, pid=1)
        r.subscribe(base + "/b", 0, pid=2)
        r.send(unsubscribe_packet(3, base + "/+"))
        self.assertEqual(r.read(), (0xB0, pid(3)))
        p = self.conn()
        p.send(publish_packet(base + "/c", b"gone"))
        p.send(publish_packet(base + "/b", b"kept"))
        self.assertEqual(self.publish_of(r)[1], b"kept")
        self.assert_nothing_more(r)

    def test_several_filters_get_one_unsuback_MQTT_3_10_4_6(self):
        base = unique("several")
        r = self.conn()
        r.subscribe(base + "/a", 0, pid=1)
        r.subscribe(base + "/b", 0, pid=2)
        r.send(unsubscribe_packet(3, base + "/a", base + "/b", base + "/x"))
        self.assertEqual(r.read(), (0xB0, pid(3)))
        p = self.conn()
        p.send(publish_packet(base + "/a", b"no"))
        p.send(publish_packet(base + "/b", b"no"))
        self.assert_nothing_more(p)
        self.assert_nothing_more(r)

    def test_a_message_in_flight_is_completed_MQTT_3_10_4_2_and_3(self):
        cid, topic, r = self.persistent("inflight", 1)
        p = self.conn()
        self.publish_done(p, topic, b"first", 1, 1)
        _, payload, _, _, _, out_id = self.publish_of(r)
        r.send(unsubscribe_packet(2, topic))
        self.assertEqual(r.read(), (0xB0, pid(2)))
        self.publish_done(p, topic, b"after", 1, 2)  # [MQTT-3.10.4-2]
        r.close()  # the first is still unacknowledged: it is resent
        r = self.raw()
        self.assertEqual(r.connect(cid, clean=False), (True, 0))
        self.assertEqual(self.publish_of(r)[1:6:4], (b"first", out_id))
        r.send(packet(0x40, pid(out_id)))
        self.assert_nothing_more(r)


class Transient(Conformance):
    def test_a_client_that_does_not_read_is_closed_MQTT_4_8_0_2(self):
        """The broker cannot write to a subscriber that stopped reading
        (its write queue is full): it closes that connection, and the
        unacknowledged message waits in the session (resent on reconnect)
        rather than stalling the publisher."""
        topic = unique("stalled")
        stalled = self.raw()
        stalled.sock.close()
        stalled.sock = socket.socket()
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sock.settimeout(WAIT)
        stalled.sock.connect(("127.0.0.1", self.port))
        stalled.connect(unique("stalled"))
        stalled.subscribe(topic, 1)
        p = self.conn()
        big = b"x" * (1 << 20)
        for i in range(1, 21):  # 20 MiB: past the 4 MiB queue and buffers
            p.send(publish_packet(topic, big, 1, i))
            self.assertEqual(p.read(), (0x40, pid(i)))
        self.assertTrue(self.broker.wait_log("MQTT-SLOW-CLIENT"))
        self.assert_nothing_more(p)


if __name__ == "__main__":
    unittest.main(verbosity=2)
