"""tests/apps/chat/chatkit.py: real chat servers and scripted clients.

A Server is a real `hermes-chat server` process on loopback (ephemeral
ports, read back from its first stdout line); a Client is a plain TCP socket
speaking the chat protocol on HP v1, line by line, exactly as `nc` would.
Clients never sleep to wait for something: `expect` reads lines until one
matches, keeping the others for later expectations, and fails after a
generous bound (a bound on failure, never a timing assertion).
Standard library only."""

import json
import os
import socket
import subprocess
import sys
import time

BOUND_S = 10.0  # how long anything may take before the test fails
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "WARNING: ThreadSanitizer")


class Server:
    def __init__(self, build, name, *args, cluster=None, log="info"):
        self.name = name
        self.err_path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                     "chat-%d-%s.err" % (os.getpid(), name))
        cmd = [os.path.join(build, "hermes-chat"), "server",
               "--listen", "127.0.0.1:0", "--log-level", log, "--threads", "2"]
        cmd += list(args)
        if cluster:
            cmd += cluster
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        line = self.proc.stdout.readline().split()
        # "hermes-chat: node NAME port PORT cluster ADDR"
        if len(line) != 7:
            self.kill()
            raise AssertionError("%s did not start: %s" % (name, self.log()))
        self.node, self.port, self.cluster_addr = line[2], int(line[4]), line[6]

    def log(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_log(self, text, count=1):
        """Waits until `text` appears `count` times in the server's log."""
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.02)
        raise AssertionError("%s never logged %r:\n%s" % (self.name, text,
                                                          self.log()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """Stops the server (SIGTERM: a clean shutdown) and checks that it
        exited cleanly and that no sanitizer complained."""
        killed = self.proc.poll() is not None
        if not killed:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=BOUND_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        log = self.log()
        os.unlink(self.err_path)
        for bad in SANITIZER_REPORTS:
            if bad in log:
                print(log, file=sys.stderr)
                raise AssertionError("%s: %s" % (self.name, bad))
        if not killed and self.proc.returncode != 0:
            print(log, file=sys.stderr)
            raise AssertionError("%s exited with %d" % (
                self.name, self.proc.returncode))


class Client:
    def __init__(self, server, user=None, greet=True):
        self.sock = socket.create_connection(("127.0.0.1", server.port),
                                             timeout=BOUND_S)
        self.buf = b""
        self.backlog = []
        self.next_id = 0
        self.closed = False
        if not greet:
            return
        self.send({"v": 1, "type": "hello", "id": self.new_id(),
                   "body": {"min": 1, "max": 1}})
        self.expect(lambda m: m["type"] == "welcome")
        if user:
            ans = self.cmd("chat.login", user=user)
            assert ans["type"] == "chat.ok", ans

    @classmethod
    def raw(cls, server):
        """A connection that has sent nothing yet (not even hello)."""
        return cls(server, greet=False)

    def next_json(self):
        """The next line, parsed as it is (no flattening)."""
        line = self._read_line(time.monotonic() + BOUND_S)
        if line is None:
            raise AssertionError("no line came")
        return json.loads(line)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw((json.dumps(obj) + "\n").encode())

    def request(self, type_, **data):
        """Sends a chat command; returns its id."""
        i = self.new_id()
        self.send({"v": 1, "type": "msg", "id": i,
                   "body": {"type": type_, "data": data}})
        return i

    def cmd(self, type_, **data):
        """Sends a chat command and returns its answer as
        {"type": body type, "data": ..., "id": ...}."""
        i = self.request(type_, **data)
        return self.expect(lambda m: m.get("id") == i and m["type"] != "welcome")

    def _read_line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    @staticmethod
    def _flatten(line):
        """An HP line as a dict: chat messages are flattened to their body
        type and data; other HP types keep their envelope type."""
        m = json.loads(line)
        if m.get("type") == "msg":
            body = m.get("body", {})
            return {"type": body.get("type"), "data": body.get("data") or {},
                    "id": m.get("id")}
        return {"type": m.get("type"), "data": m.get("body") or {},
                "id": m.get("id")}

    def expect(self, pred, what="a matching line", bound_s=BOUND_S):
        for i, m in enumerate(self.backlog):
            if pred(m):
                return self.backlog.pop(i)
        deadline = time.monotonic() + bound_s
        while True:
            line = self._read_line(deadline)
            if line is None:
                raise AssertionError("never got %s; got %r%s" % (
                    what, self.backlog, " (connection closed)" if self.closed
                    else ""))
            if not line.strip():
                continue
            m = self._flatten(line)
            if pred(m):
                return m
            self.backlog.append(m)

    def expect_event(self, type_, **fields):
        def match(m):
            return m["type"] == type_ and all(
                m["data"].get(k) == v for k, v in fields.items())
        return self.expect(match, "%s %r" % (type_, fields))

    def expect_closed(self):
        deadline = time.monotonic() + BOUND_S
        while self._read_line(deadline) is not None or not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("connection stayed open")
        return True

    def close(self):
        self.sock.close()


def run_tests(tests, *args):
    """Runs each test function (its name is the sentence it checks) and
    prints one line per test. Returns the number of failures."""
    failures = 0
    for t in tests:
        start = time.monotonic()
        try:
            t(*args)
            status = "ok"
        except Exception as e:  # a failed assertion or a broken socket
            failures += 1
            status = "FAILED: %s" % e
        print("%-70s %5.2fs %s" % (t.__name__.replace("_", " "),
                                   time.monotonic() - start, status),
              flush=True)
    return failures
