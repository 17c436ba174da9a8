"""tests/apps/chat/chat_tests.py: the chat end to end, with real server
processes and scripted clients on loopback (run by test_chat.sh).

usage: chat_tests.py BUILD_DIR"""

import json
import os
import pty
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chatkit import BOUND_S, Client, Server, run_tests  # noqa: E402


# ------------------------------------------------------------ one server

def login_is_answered_with_the_user_and_the_node(srv):
    c = Client(srv)
    ans = c.cmd("chat.login", user="ann")
    assert ans["type"] == "chat.ok" and ans["data"]["user"] == "ann", ans
    assert ans["data"]["node"] == srv.node, ans
    c.close()


def a_second_login_with_a_taken_name_is_refused(srv):
    first = Client(srv, "dup")
    second = Client(srv)
    ans = second.cmd("chat.login", user="dup")
    assert ans["type"] == "chat.error", ans
    assert ans["data"]["code"] == "name_taken", ans
    ans = second.cmd("chat.login", user="dup2")  # the connection goes on
    assert ans["type"] == "chat.ok", ans
    first.close()
    second.close()


def a_direct_message_reaches_the_recipient_and_the_sender_learns_it(srv):
    alice, bob = Client(srv, "alice1"), Client(srv, "bob1")
    ans = alice.cmd("chat.msg", to="bob1", text="hello bob")
    assert ans["type"] == "chat.delivered", ans
    assert ans["data"]["to"] == "bob1", ans
    bob.expect_event("chat.dm", **{"from": "alice1", "text": "hello bob"})
    alice.close()
    bob.close()


def a_direct_message_to_nobody_gets_no_such_user(srv):
    alice = Client(srv, "alice2")
    ans = alice.cmd("chat.msg", to="nobody", text="anyone?")
    assert ans["type"] == "chat.error", ans
    assert ans["data"]["code"] == "no_such_user", ans
    alice.close()


def room_members_see_joins_lines_and_leaves(srv):
    a, b, c = Client(srv, "ra"), Client(srv, "rb"), Client(srv, "rc")
    ans = a.cmd("chat.join", room="den")
    assert ans["type"] == "chat.ok" and ans["data"]["users"] == ["ra"], ans
    b.cmd("chat.join", room="den")
    a.expect_event("chat.presence", event="joined", user="rb", room="den")
    ans = c.cmd("chat.say", room="den", text="let me in")
    assert ans["data"].get("code") == "not_member", ans
    ans = b.cmd("chat.say", room="den", text="hi den")
    assert ans["type"] == "chat.ok", ans
    a.expect_event("chat.said", room="den", **{"from": "rb", "text": "hi den"})
    b.expect_event("chat.said", room="den", **{"from": "rb", "text": "hi den"})
    ans = a.cmd("chat.who", room="den")
    assert ans["data"]["users"] == ["ra", "rb"], ans
    assert "den" in a.cmd("chat.rooms")["data"]["rooms"]
    assert b.cmd("chat.leave", room="den")["type"] == "chat.ok"
    a.expect_event("chat.presence", event="left", user="rb", room="den")
    assert a.cmd("chat.leave", room="den")["type"] == "chat.ok"
    ans = a.cmd("chat.leave", room="den")
    assert ans["data"].get("code") == "not_member", ans
    for x in (a, b, c):
        x.close()


def a_room_touched_by_a_stranger_does_not_stay_open(srv):
    c = Client(srv, "stranger")
    assert c.cmd("chat.who", room="ghosttown")["data"]["users"] == []
    c.cmd("chat.leave", room="ghosttown")
    c.cmd("chat.say", room="ghosttown", text="anyone?")
    # Each made the room, which answered and ended: it does not stay open.
    deadline = time.monotonic() + BOUND_S
    while "ghosttown" in c.cmd("chat.rooms")["data"]["rooms"]:
        assert time.monotonic() < deadline, "ghosttown stays open"
        time.sleep(0.02)
    c.close()


def users_see_others_come_online_and_go_offline(srv):
    watcher = Client(srv, "watcher")
    other = Client(srv, "comer")
    watcher.expect_event("chat.presence", event="online", user="comer")
    assert "comer" in watcher.cmd("chat.who")["data"]["users"]
    other.close()  # a dropped connection logs the user out
    watcher.expect_event("chat.presence", event="offline", user="comer")
    watcher.close()


def an_explicit_logout_answers_then_closes_and_frees_the_name(srv):
    c = Client(srv, "leaver")
    assert c.cmd("chat.logout")["type"] == "chat.ok"
    assert c.expect_closed()
    again = Client(srv, "leaver")  # the name is free again
    again.close()


def a_name_logged_out_and_in_again_at_once_is_always_free(srv):
    # The old user may still be ending when the client logs in again (its
    # hook closed the connection before the runtime released the name):
    # the login waits for it instead of failing.
    for _ in range(40):
        c = Client(srv, "quick")
        assert c.cmd("chat.logout")["type"] == "chat.ok"
        assert c.expect_closed()
    Client(srv, "quick").close()


def malformed_lines_get_errors_and_nobody_else_is_disturbed(srv):
    bad, bystander, friend = Client(srv), Client(srv, "calm"), None
    bad.send_raw(b"this is not json\n")
    assert bad.expect(lambda m: m["type"] == "error")["data"]["code"] == \
        "invalid_json"
    bad.send_raw(b'{"v":1,"type":"msg","id":5,"body":{"type":"chat.msg",'
                 b'"data":{"to":"calm","text":"x"}}}\n')
    ans = bad.expect(lambda m: m.get("id") == 5)
    assert ans["data"]["code"] == "not_logged_in", ans
    bad.send_raw(b'[1,2,3]\n')
    assert bad.expect(lambda m: m["type"] == "error")["data"]["code"] == \
        "not_object"
    assert bad.cmd("chat.dance")["data"]["code"] == "unknown_command"
    assert bad.cmd("chat.login", user="no spaces")["data"]["code"] == "bad_name"
    assert bad.cmd("chat.login")["data"]["code"] == "bad_request"
    assert bad.cmd("chat.login", user="bad")["type"] == "chat.ok"
    ans = bad.cmd("chat.msg", to="calm", text="x" * 1001)
    assert ans["data"]["code"] == "text_too_long", ans
    friend = Client(srv, "friend")
    assert friend.cmd("chat.msg", to="calm", text="still here?")["type"] == \
        "chat.delivered"
    bystander.expect_event("chat.dm", text="still here?")
    ans = bad.cmd("chat.msg", to="calm", text="sorry")  # bad still works
    assert ans["type"] == "chat.delivered", ans
    for x in (bad, bystander, friend):
        x.close()


def a_line_over_the_limit_closes_that_connection_only(srv):
    bad, calm = Client(srv, "flooder"), Client(srv, "calm2")
    bad.send_raw(b"x" * (17 * 1024) + b"\n")
    err = bad.expect(lambda m: m["type"] == "error")
    assert err["data"]["code"] == "line_too_long", err
    assert bad.expect_closed()
    calm.expect_event("chat.presence", event="offline", user="flooder")
    assert calm.cmd("chat.who")["type"] == "chat.ok"
    calm.close()


def a_silent_client_is_logged_out(build):
    srv = Server(build, "idle", "--idle-timeout-ms", "400")
    try:
        watcher = Client(srv, "watcher")
        sleeper = Client(srv, "sleeper")  # logs in, then says nothing
        watcher.expect_event("chat.presence", event="online", user="sleeper")
        # The watcher keeps itself alive with pings while it waits.
        deadline = time.monotonic() + BOUND_S
        while True:
            watcher.send({"v": 1, "type": "ping", "id": watcher.new_id()})
            try:
                m = watcher.expect(lambda m: m["type"] == "chat.presence" and
                                   m["data"]["user"] == "sleeper" and
                                   m["data"]["event"] == "offline",
                                   bound_s=0.1)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        assert m
        srv.wait_log("CHAT-IDLE")
        assert sleeper.expect_event("chat.bye", reason="idle_timeout")
        assert sleeper.expect_closed()
        watcher.close()
    finally:
        srv.stop()


def the_terminal_client_sends_and_prints_over_a_pipe(srv):
    bob = Client(srv, "tbob")
    cli = subprocess.Popen(
        [os.path.join(BUILD, "hermes-chat"), "client", "--connect",
         "127.0.0.1:%d" % srv.port, "--user", "tann"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert "logged in as tann" in read_until(cli, "logged in")
        cli.stdin.write("/msg tbob hi from the terminal\n")
        cli.stdin.flush()
        assert "delivered to tbob" in read_until(cli, "delivered")
        bob.expect_event("chat.dm", text="hi from the terminal")
        bob.cmd("chat.msg", to="tann", text="hello back")
        assert "tbob -> you: hello back" in read_until(cli, "hello back")
        cli.stdin.write("/join hall\nhi hall\n")
        cli.stdin.flush()
        assert "[hall] tann: hi hall" in read_until(cli, "hi hall")
        cli.stdin.write("/quit\n")
        cli.stdin.flush()
        assert cli.wait(timeout=BOUND_S) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        bob.close()


def the_nc_session_in_docs_chat_md_is_true(build):
    """Replays the session between the nc-session markers of docs/chat.md:
    sends each "> " line, and compares each "< " line (as JSON) with the
    next line the server sends."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "..", "..")
    with open(os.path.join(root, "docs", "chat.md")) as f:
        doc = f.read()
    session = doc.split("<!-- nc-session -->")[1].split(
        "<!-- /nc-session -->")[0]
    srv = Server(build, "doc")
    try:
        c = Client.raw(srv)
        for line in session.splitlines():
            if line.startswith("> "):
                c.send_raw(line[2:].encode() + b"\n")
            elif line.startswith("< "):
                got = c.next_json()
                want = json.loads(line[2:])
                assert got == want, "expected %s\n got %s" % (want, got)
        c.close()
    finally:
        srv.stop()


def pty_until(fd, seen, needle):
    """Reads the pseudo-terminal `fd` into `seen` (a bytearray) until
    `needle` is in it (bounded)."""
    deadline = time.monotonic() + BOUND_S
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError("terminal never showed %r; it showed %r"
                                 % (needle, bytes(seen)))
        seen += os.read(fd, 4096)


def an_incoming_line_prints_above_what_the_user_is_typing(srv):
    bob = Client(srv, "pbob")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the client on a real terminal
        os.execv(os.path.join(BUILD, "hermes-chat"),
                 ["hermes-chat", "client", "--connect",
                  "127.0.0.1:%d" % srv.port, "--user", "pann"])
    seen = bytearray()
    try:
        pty_until(fd, seen, b"logged in as pann")
        os.write(fd, b"hel")  # typed, not sent
        pty_until(fd, seen, b"> hel")
        bob.cmd("chat.msg", to="pann", text="ping from bob")
        # Clear the line, print the message, redraw the prompt and "hel".
        pty_until(fd, seen,
                  b"\r\x1b[Kpbob -> you: ping from bob\r\n\r\x1b[K> hel")
        os.write(fd, b"lo\x1b[D\x1b[D\x7f")  # "hello", left twice, backspace
        pty_until(fd, seen, b"> helo\x1b[2D")
        os.write(fd, b"\x03")  # Ctrl-C quits and restores the terminal
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
        bob.close()


def read_until(proc, text):
    """Reads the client's output lines until one contains `text`."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("client output ended before %r" % text)
        if text in line:
            return line


# -------------------------------------------------------- three servers

def start_cluster(build, secret_path):
    """Three clustered servers, n2 and n3 joining n1; returns them once
    each has seen the two others come up."""
    def flags(name, join):
        f = ["--node", name, "--cluster-listen", "127.0.0.1:0",
             "--cluster-secret-file", secret_path]
        return f + (["--join", join] if join else [])
    started = []
    try:
        started.append(Server(build, "n1", cluster=flags("n1", None)))
        seed = started[0].cluster_addr
        started.append(Server(build, "n2", cluster=flags("n2", seed)))
        started.append(Server(build, "n3", cluster=flags("n3", seed)))
        for n in started:
            n.wait_log("CHAT-MEMBER member n", 2)
    except BaseException:
        for n in started:
            n.kill()
            n.stop()
        raise
    return tuple(started)


def until_ok(fn, what):
    """Retries `fn` (which returns an answer) until it is not an error: for
    what the cluster learns asynchronously (a login elsewhere)."""
    deadline = time.monotonic() + BOUND_S
    while True:
        ans = fn()
        if ans["type"] != "chat.error":
            return ans
        if time.monotonic() > deadline:
            raise AssertionError("%s: still %s" % (what, ans))
        time.sleep(0.05)


def until_who(client, user, room, listed):
    """Asks `who` (of `room`, or everyone) until `user` is listed or not,
    as `listed` says (bounded)."""
    deadline = time.monotonic() + BOUND_S
    while True:
        args = {"room": room} if room else {}
        ans = client.cmd("chat.who", **args)
        if ans["type"] == "chat.ok" and \
                (user in ans["data"]["users"]) == listed:
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s %slisted: %s" % (
                user, "not " if listed else "still ", ans))
        time.sleep(0.05)


def until_gone(client, user, room):
    until_who(client, user, room, False)


def until_listed(client, user, room):
    until_who(client, user, room, True)


def users_on_different_nodes_exchange_direct_messages(c):
    alice, bob = Client(c.n1, "alice"), Client(c.n2, "bob")
    c.clients += [alice, bob]
    ans = until_ok(lambda: alice.cmd("chat.msg", to="bob", text="hi bob"),
                   "n1 learns bob")
    assert ans["type"] == "chat.delivered", ans
    bob.expect_event("chat.dm", **{"from": "alice", "text": "hi bob"})
    ans = bob.cmd("chat.msg", to="alice", text="hi alice")
    assert ans["type"] == "chat.delivered", ans
    alice.expect_event("chat.dm", **{"from": "bob", "text": "hi alice"})
    c.alice, c.bob = alice, bob


def a_name_logged_in_on_one_node_is_refused_on_another(c):
    carol = Client(c.n3, "carol")
    c.clients.append(carol)
    until_ok(lambda: carol.cmd("chat.msg", to="alice", text="there?"),
             "n3 learns alice")
    c.alice.expect_event("chat.dm", text="there?")
    twin = Client(c.n3)
    ans = twin.cmd("chat.login", user="alice")
    assert ans["type"] == "chat.error", ans
    assert ans["data"]["code"] == "name_taken", ans
    twin.close()
    c.carol = carol


def a_room_spans_the_nodes_of_its_members(c):
    for x in (c.alice, c.bob, c.carol):
        assert x.cmd("chat.join", room="plaza")["type"] == "chat.ok"
    c.alice.expect_event("chat.presence", event="joined", user="carol",
                         room="plaza")
    assert c.carol.cmd("chat.say", room="plaza", text="hello plaza")[
        "type"] == "chat.ok"
    for x in (c.alice, c.bob, c.carol):
        x.expect_event("chat.said", room="plaza",
                       **{"from": "carol", "text": "hello plaza"})
    users = c.alice.cmd("chat.who", room="plaza")["data"]["users"]
    assert sorted(users) == ["alice", "bob", "carol"], users
    online = c.bob.cmd("chat.who")["data"]["users"]
    assert {"alice", "bob", "carol"} <= set(online), online


def a_killed_server_s_users_go_offline_and_log_in_elsewhere(c):
    dave = subprocess.Popen(
        [os.path.join(BUILD, "hermes-chat"), "client", "--connect",
         "127.0.0.1:%d" % c.n2.port, "--connect", "127.0.0.1:%d" % c.n3.port,
         "--user", "dave"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        read_until(dave, "logged in as dave on node n2")
        dave.stdin.write("/join plaza\n")
        dave.stdin.flush()
        c.alice.expect_event("chat.presence", event="joined", user="dave",
                             room="plaza")
        for x in (c.alice, c.carol):  # everyone knows dave is online...
            x.expect_event("chat.presence", event="online", user="dave")
        c.n2.kill()  # mid-conversation: bob and dave were on n2
        # Everywhere else, bob goes offline (each node's chat/local says so,
        # even if the directory lived on n2) and leaves the room's list
        # (the room may itself have lived on n2 and be rebuilt elsewhere).
        # (Dave may not: his client can fail over to n3 before n1 and n3
        # have declared n2 dead, and then he simply stays online.)
        for x in (c.alice, c.carol):
            x.expect_event("chat.presence", event="offline", user="bob")
        until_gone(c.alice, "bob", "plaza")
        until_gone(c.carol, "bob", None)
        read_until(dave, "logged in as dave on node n3")  # failed over
        until_listed(c.alice, "dave", "plaza")  # and rejoined its room
        bob = Client(c.n3)
        c.clients.append(bob)
        until_ok(lambda: bob.cmd("chat.login", user="bob"), "bob again")
        assert bob.cmd("chat.join", room="plaza")["type"] == "chat.ok"
        c.alice.expect_event("chat.presence", event="joined", user="bob",
                             room="plaza")
        ans = c.alice.cmd("chat.msg", to="bob", text="welcome back")
        assert ans["type"] == "chat.delivered", ans
        bob.expect_event("chat.dm", text="welcome back")
        dave.stdin.write("/quit\n")
        dave.stdin.flush()
        assert dave.wait(timeout=BOUND_S) == 0
    finally:
        if dave.poll() is None:
            dave.kill()
            dave.wait()


def placement_owner(addr, members):
    """The member rendezvous hashing gives `addr` (cluster/placement.c:
    FNV-1a over the member's name and its NUL, then the address, mixed by
    MurmurHash3's fmix64; the highest weight wins)."""
    mask = (1 << 64) - 1

    def fnv(h, data):
        for b in data:
            h = ((h ^ b) * 0x100000001b3) & mask
        return h

    def fmix(k):
        k ^= k >> 33
        k = (k * 0xff51afd7ed558ccd) & mask
        k ^= k >> 33
        k = (k * 0xc4ceb9fe1a85ec53) & mask
        return k ^ (k >> 33)

    def weight(m):
        return fmix(fnv(fnv(0xcbf29ce484222325, m.encode() + b"\0"),
                        addr.encode()))
    return max(sorted(members), key=weight)


def a_room_moves_with_its_members_when_a_node_joins(build):
    secret = make_secret()
    servers = []

    def flags(name, join):
        f = ["--node", name, "--cluster-listen", "127.0.0.1:0",
             "--cluster-secret-file", secret]
        return f + (["--join", join] if join else [])
    # A room that n1 or n2 holds until n3 joins, and n3 holds after.
    room = next(r for r in ("attic%d" % i for i in range(100))
                if placement_owner("chat/room/" + r, ["n1", "n2", "n3"])
                == "n3")
    try:
        servers.append(Server(build, "m1", cluster=flags("n1", None)))
        seed = servers[0].cluster_addr
        servers.append(Server(build, "m2", cluster=flags("n2", seed)))
        for n in servers:
            n.wait_log("CHAT-MEMBER member n", 1)
        alice, bob = Client(servers[0], "malice"), Client(servers[1], "mbob")
        until_ok(lambda: alice.cmd("chat.msg", to="mbob", text="x"), "mbob")
        for x in (alice, bob):
            assert x.cmd("chat.join", room=room)["type"] == "chat.ok"
        servers.append(Server(build, "m3", cluster=flags("n3", seed)))
        servers[2].wait_log("CHAT-ROOM-OPEN room %s is active on node n3"
                            % room)
        # Every node must have seen n3 come up before all route to it: a
        # say that reaches the old owner first is refused (one hop only).
        for n in servers:
            n.wait_log("CHAT-MEMBER member n", 2)
        until_ok(lambda: bob.cmd("chat.say", room=room, text="after the move"),
                 "say after the move")
        alice.expect_event("chat.said", room=room, text="after the move")
        users = alice.cmd("chat.who", room=room)["data"]["users"]
        assert sorted(users) == ["malice", "mbob"], users
        alice.close()
        bob.close()
    finally:
        for n in servers:
            n.stop()
        os.unlink(secret)


CLUSTER = [
    users_on_different_nodes_exchange_direct_messages,
    a_name_logged_in_on_one_node_is_refused_on_another,
    a_room_spans_the_nodes_of_its_members,
    a_killed_server_s_users_go_offline_and_log_in_elsewhere,
]


class ClusterState:
    """The servers and clients the cluster tests share, in order."""
    def __init__(self, servers):
        self.n1, self.n2, self.n3 = servers
        self.clients = []


def make_secret():
    """A fresh cluster secret file (mode 0600); the caller unlinks it."""
    secret = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                          "chat-%d-%d.secret" % (os.getpid(),
                                                 int(time.monotonic() * 1e6)))
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    return secret


def run_cluster(build):
    secret = make_secret()
    servers = ()
    try:
        servers = start_cluster(build, secret)
        c = ClusterState(servers)
        failures = run_tests(CLUSTER, c)
        for x in c.clients:
            x.close()
        return failures
    finally:
        for s in servers:
            s.stop()
        os.unlink(secret)


def has_cluster(build):
    out = subprocess.run([os.path.join(build, "hermes-chat")],
                         capture_output=True, text=True).stderr
    return "--cluster-listen" in out


SINGLE = [
    login_is_answered_with_the_user_and_the_node,
    a_second_login_with_a_taken_name_is_refused,
    a_direct_message_reaches_the_recipient_and_the_sender_learns_it,
    a_direct_message_to_nobody_gets_no_such_user,
    room_members_see_joins_lines_and_leaves,
    a_room_touched_by_a_stranger_does_not_stay_open,
    users_see_others_come_online_and_go_offline,
    an_explicit_logout_answers_then_closes_and_frees_the_name,
    a_name_logged_out_and_in_again_at_once_is_always_free,
    malformed_lines_get_errors_and_nobody_else_is_disturbed,
    a_line_over_the_limit_closes_that_connection_only,
    the_terminal_client_sends_and_prints_over_a_pipe,
    an_incoming_line_prints_above_what_the_user_is_typing,
]


def main():
    global BUILD
    BUILD = sys.argv[1]
    failures = 0
    srv = Server(BUILD, "single")
    try:
        failures += run_tests(SINGLE, srv)
    finally:
        srv.stop()
    failures += run_tests([a_silent_client_is_logged_out,
                           the_nc_session_in_docs_chat_md_is_true], BUILD)
    if has_cluster(BUILD):
        failures += run_cluster(BUILD)
        failures += run_tests([a_room_moves_with_its_members_when_a_node_joins],
                              BUILD)
    else:
        print("chat: this build has no cluster layer: cluster tests skipped")
    print("chat: %d failed" % failures if failures else "chat: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
