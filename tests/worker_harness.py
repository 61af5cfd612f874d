#!/usr/bin/python3
"""Runs popguard-worker alone, as the monitor would start it.

The worker gets a socketpair as its client stream (fd 3) and a
SOCK_SEQPACKET pair as its monitor channel (fd 4), /dev/null on 0-2, an
empty environment and only argv[0].  The harness sends a WorkerInit,
talks POP3 on the client end, then prints the SessionEnd the worker
reported and how it exited (a seccomp kill shows as signal 31, SIGSYS).

    worker_harness.py --maildir /home/u/Maildir --user u STAT "LIST" QUIT
    worker_harness.py --mbox /var/mail/u --user u UIDL "DELE 1" QUIT

With --mbox the harness also plays the monitor's spool service: it makes
the dotlock, the temporary file (passed to the worker) and the rename, as
monitor/spool.cc does, without that file's ownership checks.

Run it as root to have the worker drop to --user first, as the monitor
does; without --user it runs as the caller.  Importable: run_worker()
returns the transcript, the decoded SessionEnd and the wait status.
"""

import argparse
import os
import pwd
import select
import signal
import socket
import struct
import sys
import time

WORKER_INIT = 6
SESSION_END = 7
SPOOL_REQUEST = 10
SPOOL_REPLY = 11
FORMATS = {"maildir": 0, "mbox": 1}
END_REASONS = ["quit", "disconnect", "timeout", "in-use", "mailbox-error",
               "bad-commands", "commit-failed"]
MULTILINE_ALWAYS = {"RETR", "TOP", "CAPA"}
MULTILINE_WITHOUT_ARG = {"LIST", "UIDL"}


def _u32(v):
    return struct.pack("=I", v)


def _str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return _u32(len(b)) + b


def encode_worker_init(session_id, user, mailbox, fmt=0, pipelined=b"",
                       idle_timeout_s=600, max_bad_commands=10,
                       login_delay_s=0, expire="", extra_u32=()):
    """The body of ipc::WorkerInit as common/ipc.cc encodes it.

    extra_u32 carries fields appended after expire, if the message has
    grown some."""
    body = (_str(session_id) + _str(user) + _str(mailbox) + _u32(fmt) +
            _str(pipelined) + _u32(idle_timeout_s) +
            _u32(max_bad_commands) + _u32(login_delay_s) + _str(expire))
    for v in extra_u32:
        body += _u32(v)
    return struct.pack("=H", WORKER_INIT) + body


def decode_session_end(data):
    (kind,) = struct.unpack_from("=H", data)
    if kind != SESSION_END or len(data) != 2 + 4 + 4 + 8 + 4 + 4:
        raise ValueError("not a SessionEnd: %r" % data)
    reason, retrieved, octets, deleted, messages = struct.unpack_from(
        "=IIQII", data, 2)
    return {"reason": END_REASONS[reason], "retrieved": retrieved,
            "octets": octets, "deleted": deleted, "messages": messages}


class Spool:
    """The monitor's spool operations on one mbox (monitor/spool.h)."""

    def __init__(self, mailbox, user=None):
        self.mailbox = mailbox
        self.lock = mailbox + ".lock"
        self.temp = None
        self.locked = False
        self.ops = []
        self.owner = pwd.getpwnam(user).pw_uid if user else None

    def handle(self, op):
        """Performs op; returns (ok, fd or None)."""
        self.ops.append(op)
        if op == 0:
            for _ in range(50):
                try:
                    fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT |
                                 os.O_EXCL, 0o644)
                except FileExistsError:
                    time.sleep(0.1)
                    continue
                os.write(fd, b"%d\n" % os.getpid())
                os.close(fd)
                self.locked = True
                return True, None
            return False, None
        if op == 1:
            if self.locked:
                os.unlink(self.lock)
            self.locked = False
            return True, None
        if op == 2:
            if not self.locked or self.temp:
                return False, None
            st = os.lstat(self.mailbox)
            self.temp = "%s.popguard.%s" % (self.mailbox, os.urandom(8).hex())
            fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                         0o600)
            if os.geteuid() == 0:
                os.fchown(fd, self.owner if self.owner is not None
                          else st.st_uid, st.st_gid)
            os.fchmod(fd, st.st_mode & 0o777)
            return True, fd
        if op == 3:
            if not self.locked or not self.temp:
                return False, None
            os.rename(self.temp, self.mailbox)
            self.temp = None
            dfd = os.open(os.path.dirname(self.mailbox) or ".", os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
            return True, None
        if op == 4:
            if self.temp:
                os.unlink(self.temp)
            self.temp = None
            return True, None
        return False, None

    def close(self):
        self.handle(4)
        self.handle(1)


def _serve_ipc(ipc, spool, state):
    """Answers one message from the worker: a spool request, or the
    SessionEnd, which is kept in state["end"]."""
    data = ipc.recv(65536)
    if not data:
        state["closed"] = True
        return
    (kind,) = struct.unpack_from("=H", data)
    if kind == SESSION_END:
        state["end"] = decode_session_end(data)
        return
    if kind != SPOOL_REQUEST or spool is None or len(data) != 6:
        raise ValueError("unexpected message from the worker: %r" % data)
    (op,) = struct.unpack_from("=I", data, 2)
    ok, fd = spool.handle(op)
    reply = struct.pack("=H", SPOOL_REPLY) + _u32(1 if ok else 0) + _str("")
    if fd is None:
        ipc.send(reply)
    else:
        socket.send_fds(ipc, [reply], [fd])
        os.close(fd)


def _start(worker, user, client_end, ipc_end):
    pid = os.fork()
    if pid:
        return pid
    try:
        os.dup2(client_end.fileno(), 3, inheritable=True)
        os.dup2(ipc_end.fileno(), 4, inheritable=True)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(5, 1024)
        if user:
            pw = pwd.getpwnam(user)
            os.setgroups([pw.pw_gid])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        os.execve(worker, ["popguard-worker"], {})
    finally:
        os._exit(127)


def _read_response(sock, multiline, timeout, ipc=None, spool=None,
                   state=None):
    buf = b""
    while True:
        if buf.startswith(b"-ERR") and buf.endswith(b"\r\n"):
            return buf
        if buf.startswith(b"+OK") and buf.endswith(b"\r\n"):
            if not multiline or buf.endswith(b"\r\n.\r\n"):
                return buf
        watch = [sock]
        if ipc is not None and not state.get("closed"):
            watch.append(ipc)
        ready, _, _ = select.select(watch, [], [], timeout)
        if not ready:
            return buf
        if ipc in ready:
            _serve_ipc(ipc, spool, state)
            continue
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def run_worker(worker, maildir, commands, user=None, pipelined=b"",
               idle_timeout_s=600, max_bad_commands=10, extra_u32=(),
               timeout=10.0, hang_up=True, fmt="maildir"):
    """Starts the worker, sends commands one at a time (each waits for its
    full answer), then hangs up (or, with hang_up=False, stays silent
    until the worker ends the session) and collects the report.  With
    fmt="mbox", `maildir` is the mbox file and spool requests are served."""
    spool = Spool(maildir, user) if fmt == "mbox" else None
    state = {}
    client, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ipc, ipc_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = _start(worker, user, client_end, ipc_end)
    client_end.close()
    ipc_end.close()

    ipc.send(encode_worker_init("harness-1", user or "", maildir,
                                fmt=FORMATS[fmt], pipelined=pipelined,
                                idle_timeout_s=idle_timeout_s,
                                max_bad_commands=max_bad_commands,
                                extra_u32=extra_u32))

    def answer(multi):
        return _read_response(client, multi, timeout, ipc, spool, state)

    transcript = [(None, answer(False))]
    for cmd in commands:
        client.sendall(cmd.encode() + b"\r\n")
        words = cmd.split()
        verb = words[0].upper() if words else ""
        multi = verb in MULTILINE_ALWAYS or (
            verb in MULTILINE_WITHOUT_ARG and len(words) == 1)
        transcript.append((cmd, answer(multi)))
    if hang_up:
        client.shutdown(socket.SHUT_WR)
    else:
        transcript.append((None, answer(False)))

    deadline = time.monotonic() + timeout
    while "end" not in state and not state.get("closed"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([ipc], [], [], max(left, 0))
        if not ready:
            break
        _serve_ipc(ipc, spool, state)
    end = state.get("end")
    _, status = os.waitpid(pid, 0)
    if spool is not None:
        spool.close()
    client.close()
    ipc.close()
    return transcript, end, status


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_worker = os.path.join(
        os.environ.get("POPGUARD_BUILD", os.path.join(here, "..", "build")),
        "worker", "popguard-worker")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", default=default_worker)
    box = ap.add_mutually_exclusive_group(required=True)
    box.add_argument("--maildir")
    box.add_argument("--mbox")
    ap.add_argument("--user")
    ap.add_argument("--pipelined", default="")
    ap.add_argument("--idle", type=int, default=600)
    ap.add_argument("--max-bad", type=int, default=10)
    ap.add_argument("--extra-u32", type=int, action="append", default=[],
                    help="fields appended to WorkerInit, in order")
    ap.add_argument("commands", nargs="*")
    args = ap.parse_args()

    transcript, end, status = run_worker(
        args.worker, args.mbox or args.maildir, args.commands, user=args.user,
        fmt="mbox" if args.mbox else "maildir",
        pipelined=args.pipelined.encode().replace(b"\\r\\n", b"\r\n"),
        idle_timeout_s=args.idle, max_bad_commands=args.max_bad,
        extra_u32=args.extra_u32)
    for cmd, answer in transcript:
        if cmd is not None:
            print("C: " + cmd)
        for line in answer.decode("latin-1").split("\r\n")[:-1]:
            print("S: " + line)
    print("session end:", end)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        print("worker killed by signal %d (%s)" % (
            sig, signal.Signals(sig).name))
        return 1
    print("worker exit status", os.WEXITSTATUS(status))
    return 0 if os.WEXITSTATUS(status) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
