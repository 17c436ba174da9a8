"""tests/apps/mqtt/mqttkit.py: real hermes-mqtt processes and real clients
for the MQTT integration tests (broker_test.py, cluster_test.py,
cluster_sessions_test.py, persist_test.py).

A Proc is one hermes-mqtt process ($HERMES_MQTT) with its standard error
drained into `lines` by a thread, so a test waits for a log line instead of
sleeping. A Client is a python3-paho-mqtt client on its own network thread
whose received messages land in a queue; CONNACK and SUBACK are awaited. A
Raw is a blocking socket that speaks MQTT packet by packet, for what no
well-behaved client sends (malformed packets, exact flags). Cluster helpers
write the shared secret, wait for the full mesh and wait until a filter has
reached the other nodes (await_route).

Nothing here asserts on time: every wait is for an event (a message, a
CONNACK, a log line, a closed socket) with a generous bound, WAIT, that
only guards against a hang; a wait that runs out fails the test with what
was awaited. Standard library and paho only.
"""

import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho

BROKER = os.environ.get("HERMES_MQTT", "build/hermes-mqtt")
WAIT = 20.0  # seconds: a guard against hangs, never an expectation
SANITIZER_MARKS = ("Sanitizer", "runtime error:")


_GIVEN = set()  # ports free_port() already handed out in this process


def free_port():
    """A loopback port that was free a moment ago, never one this process
    was given before (the kernel may hand one port out twice in a row, and
    two nodes of one test would then collide)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def wait_for(pred, timeout=WAIT):
    """Polls `pred` until it holds or `timeout` passes; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# ---------------------------------------------------------------- process


class Proc:
    """A hermes-mqtt process started with `args`; stderr lines are drained
    into `lines` (the last one is "(exited)" once the process is gone)."""

    def __init__(self, args, name="broker"):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([BROKER, *args],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.drainer = threading.Thread(target=self._drain, daemon=True)
        self.drainer.start()

    def _drain(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip())
                self.cond.notify_all()
        with self.cond:
            self.lines.append("(exited)")
            self.cond.notify_all()

    def count(self, word):
        return sum(word in l for l in self.lines)

    def wait_log(self, what, count=1, timeout=WAIT):
        """Waits until `count` lines contain `what` (a string) or satisfy
        it (a function of the line); False if the bound ran out or the
        process exited first."""
        match = what if callable(what) else (lambda l: what in l)

        def seen():
            return sum(1 for l in self.lines if match(l)) >= count
        with self.cond:
            self.cond.wait_for(lambda: seen() or "(exited)" in self.lines,
                               timeout)
            return seen()

    def started(self, listeners=1):
        """Waits for its `listeners` MQTT-LISTEN lines; raises with the log
        if they do not come or the process exits."""
        if not self.wait_log("MQTT-LISTEN", listeners) or \
                self.proc.poll() is not None:
            raise RuntimeError("%s did not start:\n%s" % (self.name,
                                                          self.log()))
        return self

    def cluster_address(self):
        """The cluster address it logged (MQTT-CLUSTER ... address A)."""
        for l in self.lines:
            if "cluster address " in l:
                return l.split("cluster address ")[1].split()[0]
        raise RuntimeError("%s logged no cluster address:\n%s"
                           % (self.name, self.log()))

    def log(self, last=40):
        return "\n".join(self.lines[-last:])

    def stop(self, sig=signal.SIGTERM):
        """Sends `sig` (SIGKILL after WAIT); returns the exit status, None
        if it had to be killed. Every line is drained when it returns."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = None
        self.drainer.join(WAIT)
        self.proc.stderr.close()
        return status

    def kill(self):
        return self.stop(signal.SIGKILL)

    def sanitizer_reports(self):
        """Lines of sanitizer reports (an instrumented build reports at
        exit, so call after stop())."""
        return [l for l in self.lines if any(m in l for m in SANITIZER_MARKS)]


# ---------------------------------------------------------------- cluster


def write_secret(directory):
    """A fresh cluster secret in `directory`, mode 0600; its path."""
    path = os.path.join(directory, "secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, uuid.uuid4().hex.encode() * 2)
    os.close(fd)
    return path


def wait_mesh(nodes, timeout=3 * WAIT):
    """Waits until every node has logged every other one up (nodes have
    `name`). Raises with the log of the first that has not. The bound is
    wider than WAIT: under a loaded machine (or a sanitizer build) a start
    of three processes and their handshakes can take a while."""
    for n in nodes:
        for o in nodes:
            if o is n:
                continue
            if not n.wait_log(lambda l, o=o.name:
                              "MQTT-MEMBER member %s (" % o in l and
                              l.endswith("): up"), timeout=timeout):
                raise RuntimeError("no mesh: %s never saw %s up:\n%s"
                                   % (n.name, o.name, n.log()))


def await_route(sub, probe, publish, timeout=WAIT, settle=0.3):
    """Calls publish() every 0.2 s until `sub` receives a message on topic
    `probe`: the publisher's node then knows the filter (and every filter
    `sub` made before it: filter changes travel in order). The probes still
    on their way are drained (`settle` seconds of quiet; 0: only what has
    arrived) so they do not mix with the test's messages; any other message
    received meanwhile is dropped too."""
    end = time.monotonic() + timeout
    while True:
        assert time.monotonic() < end, "the probe %s never arrived" % probe
        publish()
        m = sub.poll(0.2)
        if m is not None and m.topic == probe:
            break
    sub.drain(quiet=settle)


# ------------------------------------------------------------ raw packets


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body=b""):
    return bytes([first]) + remaining_length(len(body)) + body


def connect_packet(client_id, clean=True, keepalive=60, level=4,
                   will=None, name="MQTT", user=None, password=None):
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will:
        topic, message, qos = will
        flags |= 0x04 | (qos << 3)
        payload += mqtt_str(topic) + mqtt_str(message)
    if user is not None:
        flags |= 0x80
        payload += mqtt_str(user)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    body = mqtt_str(name) + bytes([level, flags]) + \
        struct.pack("!H", keepalive) + payload
    return packet(0x10, body)


def subscribe_packet(pid, topic, qos):
    return packet(0x82, struct.pack("!H", pid) + mqtt_str(topic) +
                  bytes([qos]))


def publish_packet(topic, payload, qos=0, pid=0, retain=False):
    body = mqtt_str(topic) + (struct.pack("!H", pid) if qos else b"")
    return packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload)


def parse_publish(first, body):
    """(topic, payload, qos, dup, retain, packet id)."""
    qos = (first >> 1) & 3
    (tlen,) = struct.unpack("!H", body[:2])
    topic = body[2:2 + tlen].decode()
    pos, pid = 2 + tlen, 0
    if qos:
        (pid,) = struct.unpack("!H", body[pos:pos + 2])
        pos += 2
    return topic, body[pos:], qos, bool(first & 8), bool(first & 1), pid


def stop_all(nodes, resume=False):
    """Stops every node (SIGCONT first with `resume`: a test may have left
    one stopped), then raises with the sanitizer reports, if any (an
    instrumented build reports at exit)."""
    for n in nodes:
        if resume and n.proc.poll() is None:
            n.proc.send_signal(signal.SIGCONT)
        n.stop()
    bad = [l for n in nodes for l in n.sanitizer_reports()]
    if bad:
        raise AssertionError("\n".join(bad[:400]))


def node_logs(nodes, word=None):
    """Every node's lines (those with `word`), each tagged with its node."""
    return "\n".join("[%s] %s" % (n.name, l) for n in nodes
                      for l in n.lines if not word or word in l)


class Raw:
    """A blocking socket client that reads whole MQTT packets."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), WAIT)
        self.sock.settimeout(WAIT)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def read(self):
        """The next packet as (first byte, body), or None at end of stream
        (a reset counts as the end too)."""
        try:
            if not self._fill(2):
                return None
            length, mult, i = 0, 1, 1
            while True:
                if not self._fill(i + 1):
                    return None
                byte = self.buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
            if not self._fill(i + length):
                return None
        except ConnectionResetError:
            return None
        first, body = self.buf[0], self.buf[i:i + length]
        self.buf = self.buf[i + length:]
        return first, body

    def connect(self, client_id, **kw):
        """CONNECT; returns (session present, return code)."""
        self.send(connect_packet(client_id, **kw))
        first, body = self.read()
        assert first == 0x20, "expected CONNACK, got %#x" % first
        return bool(body[0] & 1), body[1]

    def subscribe(self, topic, qos=1, pid=1):
        """SUBSCRIBE one filter and read its SUBACK."""
        self.send(subscribe_packet(pid, topic, qos))
        first, _ = self.read()
        assert first == 0x90, "expected SUBACK, got %#x" % first

    def is_closed_by_peer(self):
        """Reads until the broker closes; True if it did (no other packet
        may arrive first)."""
        return self.read() is None

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ paho


class Client:
    """A paho client on its own network thread; received messages (paho's
    MQTTMessage: topic, payload, qos, retain) land in a queue, CONNACK and
    SUBACK are awaited. `port` is a number or anything with a `port`."""

    def __init__(self, port, client_id=None, clean=True, will=None,
                 keepalive=60, user=None, password=None,
                 transport="tcp"):
        port = getattr(port, "port", port)
        self.client_id = client_id or unique("c")
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.published = 0
        self.published_cond = threading.Condition()
        self.session_present = None
        c = paho.Client(client_id=self.client_id, clean_session=clean,
                        protocol=paho.MQTTv311, transport=transport)
        if user is not None:
            c.username_pw_set(user, password)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        if will:
            c.will_set(*will)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.disconnected.set()
        c.on_message = lambda cl, ud, m: self.messages.put(m)
        c.on_publish = self._on_publish
        self.c = c
        c.connect("127.0.0.1", port, keepalive)
        c.loop_start()
        if not self.connected.wait(WAIT):
            c.loop_stop()
            raise AssertionError("no CONNACK from port %d" % port)
        assert self.rc == 0, "CONNACK %d" % self.rc

    def _on_connect(self, client, userdata, flags, rc):
        self.session_present = bool(flags.get("session present"))
        self.rc = rc
        self.connected.set()

    def _on_publish(self, client, userdata, mid):
        with self.published_cond:
            self.published += 1
            self.published_cond.notify_all()

    def subscribe(self, topic, qos=0):
        """Subscribes to one filter (returns its granted QoS, 128 when
        refused) or to a list of (filter, qos) in one SUBSCRIBE (returns
        the list); waits for the SUBACK."""
        granted = []
        self.subscribed.clear()
        self.c.on_subscribe = lambda cl, ud, mid, qos: (
            granted.extend(qos), self.subscribed.set())
        result, _ = self.c.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        assert self.subscribed.wait(WAIT), "no SUBACK"
        return granted if isinstance(topic, list) else granted[0]

    def publish(self, topic, payload, qos=0, retain=False):
        """Publishes; returns paho's MQTTMessageInfo."""
        return self.c.publish(topic, payload, qos, retain)

    def wait_published(self, count):
        """Waits until `count` publishes completed their handshake."""
        with self.published_cond:
            ok = self.published_cond.wait_for(
                lambda: self.published >= count, WAIT)
        assert ok, "only %d of %d publishes completed" % (
            self.published, count)

    def poll(self, timeout):
        """The next message, or None if none comes within `timeout`."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def next(self, timeout=WAIT):
        """The next message; fails if none comes within `timeout`."""
        m = self.poll(timeout)
        if m is None:
            raise AssertionError("no message arrived")
        return m

    def drain_until(self, marker_topic):
        """Every message before the one on `marker_topic` (exclusive)."""
        got = []
        while True:
            m = self.next()
            if m.topic == marker_topic:
                return got
            got.append(m)

    def drain(self, quiet=0.0):
        """Drops the messages received so far and those that keep coming
        until none has for `quiet` seconds; how many it dropped."""
        n = 0
        while self.poll(quiet) is not None:
            n += 1
        return n

    def disconnect(self):
        if not self.disconnected.is_set():
            self.c.disconnect()
            self.disconnected.wait(WAIT)
        self.c.loop_stop()

    close = disconnect
