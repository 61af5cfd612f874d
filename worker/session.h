// The TRANSACTION and UPDATE states of RFC 1939 on one open mailbox.
//
// Session is the state machine: it is fed command lines and writes whole
// responses to a Sink, so tests drive it without sockets.  Serve() is the
// loop around it for a real stream: pipelined bytes first, then poll and
// read with the idle timeout.
//
// Responses are buffered and flushed when no further command is waiting,
// so pipelined commands (RFC 2449 PIPELINING) are answered in one write,
// and a multi-line response always leaves with its ".\r\n" terminator in
// the same write as the data before it: a terminator sent alone waits for
// the client's delayed ACK under Nagle's algorithm.  A RETR streams the
// message in chunks and never holds it whole.
//
// Bad commands (unknown, out of state, malformed arguments, over-long
// lines) are counted; the one that reaches the limit is answered
// "-ERR too many bad commands" and ends the session (a limit of 0 acts as
// 1: the first bad command ends it).  Negative answers to
// well-formed commands ("no such message") are not bad commands.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipc.h"
#include "common/pop3.h"
#include "worker/mailbox.h"

namespace popguard::worker {

// Where responses go.  Send writes all of `bytes` or fails (the client is
// gone or stopped reading).
class Sink {
 public:
  virtual ~Sink() = default;
  virtual bool Send(std::string_view bytes) = 0;
};

// Writes to a descriptor.  If the descriptor is non-blocking, a full
// socket buffer is waited on for at most timeout_ms.
class FdSink final : public Sink {
 public:
  FdSink(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
  bool Send(std::string_view bytes) override;

 private:
  int fd_;
  int timeout_ms_;
};

class Session {
 public:
  Session(Mailbox& mailbox, Sink& sink, std::uint32_t max_bad_commands);

  // CAPA lines the site's policy adds (RFC 2449 LOGIN-DELAY, EXPIRE),
  // each ending in CRLF.
  void SetPolicyCapabilities(std::string lines) {
    policy_capa_ = std::move(lines);
  }

  // Enforces RFC 2449 EXPIRE at QUIT.  With 0 days, every message the
  // client retrieved in full (RETR, all of it written) is removed as if
  // deleted; with N days, every message delivered more than N days before
  // `now` is, retrieved or not.  A message whose delivery time the mailbox
  // cannot tell is kept.  Nothing expires in a session that does not end
  // with QUIT, as nothing deleted does.
  void SetExpiry(std::uint32_t days, std::int64_t now) {
    expire_days_ = days;
    now_ = now;
  }

  // Writes the positive answer to the login: "+OK maildrop has N
  // messages".  RFC 1939's examples add the octets, but any text will do,
  // and leaving them out spares a UIDL-only session from reading every
  // message to count them.
  void Greet();

  // Each returns false once the session is over; end_reason() says why.
  bool HandleLine(std::string_view line);
  bool HandleTooLong();
  // The client went away, or was idle too long: nothing is deleted.
  void EndByDisconnect();
  void EndByTimeout();

  // Sends what is buffered; false if the client is gone (the session is
  // then over with kDisconnect, unless it had already ended).
  bool Flush();

  bool over() const { return end_.has_value(); }
  ipc::EndReason end_reason() const {
    return end_.value_or(ipc::EndReason::kDisconnect);
  }
  // The figures for the monitor's session-end record.
  ipc::SessionEnd Summary() const;

 private:
  bool Dispatch(const pop3::Command& cmd);
  bool Stat(const pop3::Command& cmd);
  bool List(const pop3::Command& cmd);
  bool Uidl(const pop3::Command& cmd);
  bool Retr(const pop3::Command& cmd);
  bool Top(const pop3::Command& cmd);
  bool Dele(const pop3::Command& cmd);
  bool Rset(const pop3::Command& cmd);
  bool Capa(const pop3::Command& cmd);
  bool Quit(const pop3::Command& cmd);

  // Answers a bad command with `text`, or ends the session at the limit.
  bool Bad(std::string_view text);
  // Resolves a message-number argument to an index of a live message, or
  // answers with the error and returns nullopt.  *bad is set when the
  // argument was malformed (a bad command) rather than merely not there.
  std::optional<std::size_t> Message(std::string_view arg, bool* bad);
  // Streams message i as a RETR (body_lines empty) or TOP response.
  bool SendMessage(std::size_t i, std::optional<std::uint32_t> body_lines);
  // The octets of the messages not marked deleted, computing sizes not
  // yet known; nullopt (and the -ERR written) if the mailbox failed.
  std::optional<std::uint64_t> LiveOctets();
  // Size of message i, or nullopt with the -ERR written.
  std::optional<std::uint64_t> SizeOf(std::size_t i);
  // Appends "+OK text" or "-ERR text" and CRLF.
  void Ok(std::string_view text);
  void Err(std::string_view text);
  // Flushes if the buffer is large; called before appending more data so
  // a terminator never leaves alone.
  bool FlushIfFull();
  void End(ipc::EndReason reason);
  // Whether the EXPIRE policy removes message i at QUIT.
  bool Expired(std::size_t i);

  Mailbox& mailbox_;
  Sink& sink_;
  std::uint32_t max_bad_commands_;
  std::string policy_capa_;
  std::uint32_t bad_commands_ = 0;
  std::vector<bool> deleted_;
  std::uint32_t deleted_count_ = 0;
  std::string out_;
  std::uint64_t flushes_ = 0;  // how often out_ was sent
  std::optional<ipc::EndReason> end_;
  ipc::SessionEnd summary_;
  // RETR and TOP output still in out_: added to summary_ when flushed.
  std::uint64_t unflushed_octets_ = 0;
  // Messages RETR put in out_ whole: retrieved once out_ has left.
  std::vector<std::size_t> unflushed_ids_;
  // Messages fully written to the client, for EXPIRE.
  std::vector<bool> retrieved_;
  std::optional<std::uint32_t> expire_days_;
  std::int64_t now_ = 0;
};

// Runs the session on a connected stream until it ends: first the lines in
// `pipelined` (bytes the client sent behind its login command), then what
// arrives on fd.  idle_timeout_ms bounds each wait for a command.
void Serve(Session& session, int fd, std::string_view pipelined,
           int idle_timeout_ms);

}  // namespace popguard::worker
