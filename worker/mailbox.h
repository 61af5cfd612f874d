// What the worker needs from a mailbox, whatever its format, and the one
// transformation every format shares: turning stored message bytes into
// the octets POP3 sends.
//
// A Mailbox is a snapshot taken at login: the messages, their sizes and
// unique ids are fixed for the session (RFC 1939 numbers messages from 1 and
// never renumbers them).  Deletions are only marks until Commit, which the
// session calls in the UPDATE state.  A format (Maildir, mbox) implements
// the interface; the session knows nothing of files.
//
// Sizes may be computed on first use (a Maildir reads a message file to
// learn its size): a client that only asks for UIDL, as leave-on-server
// clients do, should not make the worker read every message.
//
// Sizes: RFC 1939 section 11 says the size of a message counts every line
// end as CRLF and does not count the dots added by byte-stuffing ("need not
// (and must not) be counted twice").  So Size(i) is exactly the number of
// body octets a client holds after it has removed the stuffing, which is
// what WireEncoder produces minus its stuffed() dots and the ".\r\n"
// terminator.  MessageSizer computes the same figure without producing the
// bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace popguard::worker {

enum class MessageError {
  kGone,  // the message is no longer in the mailbox (another client)
  kIo,    // it is there, but could not be read
};

// The stored bytes of one message, as the format keeps them (LF or CRLF
// line ends, no stuffing; for mbox, without the "From " separator line).
class MessageStream {
 public:
  virtual ~MessageStream() = default;
  // Fills the front of buf; 0 means the message ended.
  virtual std::expected<std::size_t, MessageError> Read(
      std::span<char> buf) = 0;
};

// Why a Commit left marked messages in place.
enum class CommitProblem {
  kNone,
  kSomeNotRemoved,  // some files could not be removed (Maildir)
  kChanged,         // another client changed the mailbox; nothing removed
  kLocked,          // the mailbox stayed locked by another program
  kIo,              // reading or writing failed; nothing removed
};

struct CommitResult {
  std::uint32_t removed = 0;  // marked messages no longer in the mailbox
  std::uint32_t failed = 0;   // marked messages still there after Commit
  CommitProblem problem = CommitProblem::kNone;  // set when failed > 0
};

class Mailbox {
 public:
  virtual ~Mailbox() = default;

  // Messages are indexed from 0 here; the session adds 1 for POP3.
  virtual std::size_t Count() const = 0;
  // The octets of message i as RETR delivers it (see above), computed on
  // first use and then remembered.  A message another client removed
  // since login counts 0 octets; kIo means it could not be read.
  virtual std::expected<std::uint64_t, MessageError> Size(std::size_t i) = 0;
  // RFC 1939 unique-id: 1 to 70 characters of 0x21..0x7E, stable across
  // sessions, unique within the mailbox.
  virtual std::string_view Uidl(std::size_t i) const = 0;
  // Opens message i for streaming.  Never loads the whole message.
  virtual std::expected<std::unique_ptr<MessageStream>, MessageError> Open(
      std::size_t i) = 0;
  // When message i was delivered, in seconds since the epoch; nullopt when
  // the mailbox cannot tell (or the message is gone).  Read on demand, for
  // the EXPIRE policy only.
  virtual std::optional<std::int64_t> DeliveredAt(std::size_t i) = 0;
  // Removes the given messages (UPDATE state).  A message someone else
  // removed already counts as removed.  Never touches any other message.
  virtual CommitResult Commit(std::span<const std::size_t> doomed) = 0;
};

// Turns a message's stored bytes into the body of a RETR or TOP response:
// LF and bare CR become CRLF, CRLF stays, a line starting with '.' gets one
// more '.', a last line without a line end gets CRLF, and Finish() adds the
// ".\r\n" terminator.  Feed it the message in chunks of any size.
class WireEncoder {
 public:
  // With body_lines set (TOP), the output stops after the header, the
  // blank line that ends it and that many body lines.
  explicit WireEncoder(std::optional<std::uint32_t> body_lines = {});

  // Appends the wire form of `in` to *out.  After done() is true the rest
  // of the message is not needed and further input is ignored.
  void Feed(std::string_view in, std::string* out);
  // Closes an unterminated last line and appends the terminator.
  void Finish(std::string* out);

  bool done() const { return done_; }
  // Dots added by byte-stuffing so far: not part of the message's Size.
  std::uint64_t stuffed() const { return stuffed_; }

 private:
  void EndLine(std::string* out);

  std::optional<std::uint32_t> body_left_;
  bool in_header_ = true;
  bool line_start_ = true;
  bool pending_cr_ = false;
  bool done_ = false;
  std::uint64_t stuffed_ = 0;
};

// Counts the octets WireEncoder would produce for a message, minus the
// stuffing and the terminator: the Size of RFC 1939.  One pass, no copy.
class MessageSizer {
 public:
  void Feed(std::string_view in);
  std::uint64_t Finish() const;

 private:
  std::uint64_t raw_ = 0;
  std::uint64_t lf_ = 0;
  std::uint64_t cr_ = 0;
  std::uint64_t crlf_ = 0;
  char last_ = '\n';  // as if after a line end: an empty message adds none
};

}  // namespace popguard::worker
