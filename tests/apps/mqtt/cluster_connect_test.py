"""A CONNECT gets its CONNACK and a SUBSCRIBE its SUBACK while the
cluster's membership changes (issue 8, docs/adr/0295), end to end.

Run by test_cluster_sessions.sh with HERMES_MQTT set to the broker binary.
Three hermes-mqtt nodes n1, n2, n3 clustered on loopback (no persistence;
MQTT ports below the ephemeral range); a fourth, n4, joins through one of
them only (so the other two hear of it later: for a moment their view of
the members lags) and leaves cleanly, a few times. Meanwhile one thread per staying node
connects python3-paho-mqtt clients to that node in a loop, half of them
persistent sessions reused from a small pool (so the attach meets
sessions that move), half clean with fresh ids, waits for each CONNACK,
then subscribes and waits for the SUBACK.

The bound: a CONNACK or SUBACK that has not come within BOUND seconds is
a hang (a client waiting on a message nobody will answer), not a slow
answer; the time itself is printed, never asserted. A connection the broker closes
instead of answering is counted apart (a clean refusal the client
retries) and allowed. Every other wait is a guard against hangs."""

import os
import socket
import sys
import threading
import time
import unittest
import uuid
import warnings

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_sessions_test as cs  # noqa: E402
from mqttkit import stop_all, wait_mesh  # noqa: E402

BOUND = 5.0    # seconds without CONNACK that make a hang
CYCLES = 3     # joins and leaves of n4
POOL = 12      # persistent client ids per connecting thread


def quiet_port(k):
    """A free port below the ephemeral range, derived from the pid and `k`:
    the thousands of client connections here use ephemeral ports, so one
    of them could take a port free_port() had picked before the broker
    binds it."""
    for attempt in range(200):
        port = 20000 + (os.getpid() * 13 + k * 101 + attempt * 997) % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below 32000")


def connect_once(port, cid, clean):
    """Connects a paho client, driving its network loop on this thread,
    and subscribes; (the longer of the seconds to CONNACK and to SUBACK, or
    None if one did not come, closed by the broker without one)."""
    got, closed = [], []
    c = mqtt.Client(client_id=cid, clean_session=clean,
                    protocol=mqtt.MQTTv311)
    c.on_connect = lambda *a: got.append(True)
    c.on_disconnect = lambda *a: closed.append(True)
    start = time.monotonic()
    try:
        c.connect("127.0.0.1", port, keepalive=60)
        while not got and not closed and \
                time.monotonic() - start < 6 * BOUND:
            if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                closed.append(True)
        took = time.monotonic() - start if got else None
        if got:
            # And a SUBSCRIBE: it crosses to the session the same way.
            acked = []
            c.on_subscribe = lambda *a: acked.append(True)
            c.subscribe("cc/" + cid, 1)
            begin = time.monotonic()
            while not acked and not closed and \
                    time.monotonic() - begin < 6 * BOUND:
                if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                    closed.append(True)
            if not acked:  # counted as a hang, with the SUBACK's time
                return None, bool(closed)
            took = max(took, time.monotonic() - begin)
            c.disconnect()
            c.loop(0.01)
        return took, took is None and bool(closed)
    except OSError:
        return None, True
    finally:
        c.on_disconnect = None
        if c.socket():
            c.socket().close()


class Connect(unittest.TestCase):

    def setUp(self):
        warnings.simplefilter("ignore", ResourceWarning)
        self.nodes = []

    def tearDown(self):
        stop_all(self.nodes)

    def test_connack_while_a_node_joins_and_leaves(self):
        n1 = cs.Node("n1", port=quiet_port(1))
        self.nodes.append(n1)
        for name in ("n2", "n3"):
            self.nodes.append(cs.Node(name, join=n1.cluster_addr,
                                      port=quiet_port(int(name[1]))))
        staying = list(self.nodes)
        wait_mesh(staying)
        stop = threading.Event()
        results = []  # (node, client id, seconds or None, closed)
        lock = threading.Lock()

        def loop(node, k):
            pool = ["cc%d%d-%s" % (k, i, uuid.uuid4().hex[:6])
                    for i in range(POOL)]
            i = 0
            while not stop.is_set():
                clean = i % 2 == 1
                cid = "cf-" + uuid.uuid4().hex[:8] if clean else \
                    pool[(i // 2) % POOL]
                took, closed = connect_once(node.port, cid, clean)
                with lock:
                    results.append((node.name, cid, took, closed))
                i += 1

        threads = [threading.Thread(target=loop, args=(n, k))
                   for k, n in enumerate(staying)]
        for t in threads:
            t.start()
        try:
            for cycle in range(CYCLES):
                seed = staying[cycle % len(staying)]
                n4 = cs.Node("n4", join=seed.cluster_addr,
                             port=quiet_port(4 + cycle))
                self.nodes.append(n4)
                try:
                    wait_mesh(staying + [n4])
                except RuntimeError as e:
                    raise AssertionError("%s\n%s" % (e, n4.log()))
                time.sleep(1.0)  # sessions placed on n4 now, connecting
                n4.stop()
                for n in staying:
                    n.wait_log(lambda l: "MQTT-MEMBER member n4 (" in l and
                               l.endswith("): left"), cycle + 1)
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(8 * BOUND)
        hung = [r for r in results if r[2] is None and not r[3]]
        late = [r for r in results if r[2] is not None and r[2] > BOUND]
        closed = [r for r in results if r[3]]
        times = sorted(r[2] for r in results if r[2] is not None)
        print("\n%d CONNECTs over %d joins and leaves: %d hung (no CONNACK "
              "in %.0f s), %d answered after %.0f s, %d closed without "
              "CONNACK; slowest CONNACK %.2f s; attaches tried again %d, "
              "takeovers of a gone connection %d" %
              (len(results), CYCLES, len(hung), 6 * BOUND, len(late), BOUND,
               len(closed), times[-1] if times else -1,
               sum(n.count("MQTT-ATTACH-RETRY") for n in self.nodes),
               sum(n.count("old connection is gone") for n in self.nodes)),
              file=sys.stderr)
        for r in (hung + late)[:10]:
            print("  %s %s %s" % r[:3], file=sys.stderr)
        self.assertGreater(len(times), 10 * CYCLES)
        self.assertEqual(hung + late, [], "\n".join(
            "[%s] %s" % (n.name, l) for n in self.nodes for l in n.lines
            if "MQTT-MEMBER" in l or any(r[1] in l for r in hung + late)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
