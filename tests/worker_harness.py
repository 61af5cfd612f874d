#!/usr/bin/python3
"""Runs popguard-worker alone, as the monitor would start it.

The worker gets a socketpair as its client stream (fd 3) and a
SOCK_SEQPACKET pair as its monitor channel (fd 4), /dev/null on 0-2, an
empty environment and only argv[0].  The harness sends a WorkerInit,
talks POP3 on the client end, then prints the SessionEnd the worker
reported and how it exited (a seccomp kill shows as signal 31, SIGSYS).

    worker_harness.py --maildir /home/u/Maildir --user u STAT "LIST" QUIT

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

WORKER_INIT = 6
SESSION_END = 7
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
                       extra_u32=()):
    """The body of ipc::WorkerInit as common/ipc.cc encodes it.

    extra_u32 carries fields appended after max_bad_commands, if the
    message has grown some."""
    body = (_str(session_id) + _str(user) + _str(mailbox) + _u32(fmt) +
            _str(pipelined) + _u32(idle_timeout_s) +
            _u32(max_bad_commands))
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


def _read_response(sock, multiline, timeout):
    buf = b""
    while True:
        if buf.startswith(b"-ERR") and buf.endswith(b"\r\n"):
            return buf
        if buf.startswith(b"+OK") and buf.endswith(b"\r\n"):
            if not multiline or buf.endswith(b"\r\n.\r\n"):
                return buf
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            return buf
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk


def run_worker(worker, maildir, commands, user=None, pipelined=b"",
               idle_timeout_s=600, max_bad_commands=10, extra_u32=(),
               timeout=10.0, hang_up=True):
    """Starts the worker, sends commands one at a time (each waits for its
    full answer), then hangs up (or, with hang_up=False, stays silent
    until the worker ends the session) and collects the report."""
    client, client_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ipc, ipc_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = _start(worker, user, client_end, ipc_end)
    client_end.close()
    ipc_end.close()

    ipc.send(encode_worker_init("harness-1", user or "", maildir,
                                pipelined=pipelined,
                                idle_timeout_s=idle_timeout_s,
                                max_bad_commands=max_bad_commands,
                                extra_u32=extra_u32))
    transcript = [(None, _read_response(client, False, timeout))]
    for cmd in commands:
        client.sendall(cmd.encode() + b"\r\n")
        words = cmd.split()
        verb = words[0].upper() if words else ""
        multi = verb in MULTILINE_ALWAYS or (
            verb in MULTILINE_WITHOUT_ARG and len(words) == 1)
        transcript.append((cmd, _read_response(client, multi, timeout)))
    if hang_up:
        client.shutdown(socket.SHUT_WR)
    else:
        transcript.append((None, _read_response(client, False, timeout)))

    end = None
    ready, _, _ = select.select([ipc], [], [], timeout)
    if ready:
        data = ipc.recv(65536)
        if data:
            end = decode_session_end(data)
    _, status = os.waitpid(pid, 0)
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
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--user")
    ap.add_argument("--pipelined", default="")
    ap.add_argument("--idle", type=int, default=600)
    ap.add_argument("--max-bad", type=int, default=10)
    ap.add_argument("--extra-u32", type=int, action="append", default=[],
                    help="fields appended to WorkerInit, in order")
    ap.add_argument("commands", nargs="*")
    args = ap.parse_args()

    transcript, end, status = run_worker(
        args.worker, args.maildir, args.commands, user=args.user,
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
