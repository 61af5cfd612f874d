#include "worker/session.h"

#ifdef POPGUARD_TEST_HOOKS
#include "policy/test_hooks.h"
#endif

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace popguard::worker {

namespace {

// A message is read in chunks of this size; a chunk becomes at most twice
// as many octets on the wire (every byte a line end, or "." lines).
constexpr std::size_t kMessageChunk = 128 * 1024;
// The output buffer is sent once it holds this much.  Together with the
// chunk size it bounds the buffer at about 400 KiB during a RETR.
constexpr std::size_t kFlushThreshold = 128 * 1024;
// Bytes read from the client at once: many pipelined commands.
constexpr std::size_t kReadSize = 4096;

// RFC 2449 capabilities of the TRANSACTION state.  USER, SASL and STLS
// belong to AUTHORIZATION and are gone once logged in.  AUTH-RESP-CODE
// (RFC 3206) is kept so that a client that asks again sees the same
// response-code set.
constexpr std::string_view kCapabilities =
    "TOP\r\n"
    "UIDL\r\n"
    "RESP-CODES\r\n"
    "AUTH-RESP-CODE\r\n"
    "PIPELINING\r\n"
    ".\r\n";

std::string Messages(std::size_t n) {
  return fmt::format("{} message{}", n, n == 1 ? "" : "s");
}

// RFC 2449 SYS/TEMP: the client may try again later, and nothing it
// marked was lost or half-removed.
std::string_view CommitProblemText(CommitProblem p) {
  switch (p) {
    case CommitProblem::kChanged:
      return "[SYS/TEMP] mailbox changed by another client; nothing deleted";
    case CommitProblem::kLocked:
      return "[SYS/TEMP] mailbox is locked by another program; nothing "
             "deleted";
    case CommitProblem::kIo:
      return "[SYS/TEMP] mailbox could not be rewritten; nothing deleted";
    case CommitProblem::kNone:
    case CommitProblem::kSomeNotRemoved: break;
  }
  return "[SYS/TEMP] some deleted messages not removed";
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

bool FdSink::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = write(fd_, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // The client is not reading: give it the idle timeout, no more.
      pollfd p{fd_, POLLOUT, 0};
      int r = poll(&p, 1, timeout_ms_);
      if (r > 0 || (r < 0 && errno == EINTR)) continue;
    }
    return false;
  }
  return true;
}

Session::Session(Mailbox& mailbox, Sink& sink, std::uint32_t max_bad_commands)
    : mailbox_(mailbox),
      sink_(sink),
      max_bad_commands_(max_bad_commands),
      deleted_(mailbox.Count(), false),
      retrieved_(mailbox.Count(), false) {
  summary_.messages = static_cast<std::uint32_t>(mailbox_.Count());
}

void Session::Greet() {
  Ok(fmt::format("maildrop has {}", Messages(mailbox_.Count())));
}

std::optional<std::uint64_t> Session::SizeOf(std::size_t i) {
  auto size = mailbox_.Size(i);
  if (size) return *size;
  Err("[SYS/TEMP] the mailbox cannot be read");
  return std::nullopt;
}

std::optional<std::uint64_t> Session::LiveOctets() {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < mailbox_.Count(); i++) {
    if (deleted_[i]) continue;
    auto size = SizeOf(i);
    if (!size) return std::nullopt;
    total += *size;
  }
  return total;
}

void Session::Ok(std::string_view text) {
  out_.append("+OK");
  if (!text.empty()) {
    out_.push_back(' ');
    out_.append(text);
  }
  out_.append("\r\n");
}

void Session::Err(std::string_view text) {
  out_.append("-ERR ");
  out_.append(text);
  out_.append("\r\n");
}

bool Session::Flush() {
  if (out_.empty()) return true;
  bool sent = sink_.Send(out_);
  flushes_++;
  if (sent) {
    summary_.octets += unflushed_octets_;
    summary_.retrieved += static_cast<std::uint32_t>(unflushed_ids_.size());
    for (std::size_t i : unflushed_ids_) retrieved_[i] = true;
  }
  unflushed_ids_.clear();
  unflushed_octets_ = 0;
  out_.clear();
  // A large RETR grew the buffer; an idle session should not keep it.
  if (out_.capacity() > 2 * kFlushThreshold) std::string().swap(out_);
  if (!sent) End(ipc::EndReason::kDisconnect);
  return sent;
}

bool Session::FlushIfFull() { return out_.size() < kFlushThreshold || Flush(); }

void Session::End(ipc::EndReason reason) {
  if (!end_) end_ = reason;
}

void Session::EndByDisconnect() { End(ipc::EndReason::kDisconnect); }

void Session::EndByTimeout() {
  if (over()) return;
  Err("autologout; idle for too long");
  End(ipc::EndReason::kTimeout);
}

ipc::SessionEnd Session::Summary() const {
  ipc::SessionEnd s = summary_;
  s.reason = end_reason();
  return s;
}

bool Session::Bad(std::string_view text) {
  if (++bad_commands_ >= max_bad_commands_) {
    Err("too many bad commands");
    End(ipc::EndReason::kBadCommands);
    return false;
  }
  Err(text);
  return true;
}

bool Session::HandleTooLong() {
  if (over()) return false;
  return Bad("line too long");
}

bool Session::HandleLine(std::string_view line) {
  if (over()) return false;
  return Dispatch(pop3::ParseCommand(line));
}

bool Session::Dispatch(const pop3::Command& cmd) {
  using pop3::Verb;
#ifdef POPGUARD_TEST_HOOKS
  if (cmd.name == "XFORBID" && !cmd.args.empty()) {
    Err(policy::AttemptForbidden(cmd.args[0],
                                 cmd.args.size() > 1 ? cmd.args[1] : ""));
    return true;
  }
#endif
  switch (cmd.verb) {
    case Verb::kStat: return Stat(cmd);
    case Verb::kList: return List(cmd);
    case Verb::kUidl: return Uidl(cmd);
    case Verb::kRetr: return Retr(cmd);
    case Verb::kTop: return Top(cmd);
    case Verb::kDele: return Dele(cmd);
    case Verb::kRset: return Rset(cmd);
    case Verb::kCapa: return Capa(cmd);
    case Verb::kQuit: return Quit(cmd);
    case Verb::kNoop:
      if (!cmd.args.empty()) return Bad("usage: NOOP");
      Ok("");
      return true;
    case Verb::kUser:
    case Verb::kPass:
    case Verb::kApop:
    case Verb::kAuth:
    case Verb::kStls:
      // RFC 1939 section 4: these belong to the AUTHORIZATION state, which
      // this session has left.
      return Bad(fmt::format("{} is not valid after login", cmd.name));
    case Verb::kUnknown: break;
  }
  return Bad("unknown command");
}

std::optional<std::size_t> Session::Message(std::string_view arg,
                                            bool* keep_going) {
  *keep_going = true;
  auto n = pop3::ParseMessageNumber(arg);
  if (!n && !AllDigits(arg)) {
    *keep_going = Bad("invalid message number");
    return std::nullopt;
  }
  // 0, or digits beyond any message number: well-formed, but not there.
  if (!n || *n > mailbox_.Count()) {
    Err("no such message");
    return std::nullopt;
  }
  std::size_t i = *n - 1;
  if (deleted_[i]) {
    Err(fmt::format("message {} is deleted", *n));
    return std::nullopt;
  }
  return i;
}

bool Session::Stat(const pop3::Command& cmd) {
  if (!cmd.args.empty()) return Bad("usage: STAT");
  auto octets = LiveOctets();
  if (octets)
    Ok(fmt::format("{} {}", mailbox_.Count() - deleted_count_, *octets));
  return true;
}

bool Session::List(const pop3::Command& cmd) {
  if (cmd.args.size() > 1) return Bad("usage: LIST [msg]");
  bool keep_going;
  if (cmd.args.size() == 1) {
    auto i = Message(cmd.args[0], &keep_going);
    if (!i) return keep_going;
    if (auto size = SizeOf(*i)) Ok(fmt::format("{} {}", *i + 1, *size));
    return true;
  }
  // All sizes first, so that a failure is one -ERR, not a cut listing.
  auto octets = LiveOctets();
  if (!octets) return true;
  Ok(fmt::format("{} ({} octets)", Messages(mailbox_.Count() - deleted_count_),
                 *octets));
  for (std::size_t i = 0; i < mailbox_.Count(); i++) {
    if (deleted_[i]) continue;
    if (!FlushIfFull()) return false;
    fmt::format_to(std::back_inserter(out_), "{} {}\r\n", i + 1,
                   mailbox_.Size(i).value_or(0));
  }
  out_.append(".\r\n");
  return true;
}

bool Session::Uidl(const pop3::Command& cmd) {
  if (cmd.args.size() > 1) return Bad("usage: UIDL [msg]");
  bool keep_going;
  if (cmd.args.size() == 1) {
    auto i = Message(cmd.args[0], &keep_going);
    if (i) Ok(fmt::format("{} {}", *i + 1, mailbox_.Uidl(*i)));
    return keep_going;
  }
  Ok("unique-id listing follows");
  for (std::size_t i = 0; i < mailbox_.Count(); i++) {
    if (deleted_[i]) continue;
    if (!FlushIfFull()) return false;
    fmt::format_to(std::back_inserter(out_), "{} {}\r\n", i + 1,
                   mailbox_.Uidl(i));
  }
  out_.append(".\r\n");
  return true;
}

bool Session::Retr(const pop3::Command& cmd) {
  if (cmd.args.size() != 1) return Bad("usage: RETR msg");
  bool keep_going;
  auto i = Message(cmd.args[0], &keep_going);
  if (!i) return keep_going;
  return SendMessage(*i, std::nullopt);
}

bool Session::Top(const pop3::Command& cmd) {
  if (cmd.args.size() != 2) return Bad("usage: TOP msg lines");
  auto lines = pop3::ParseCount(cmd.args[1]);
  if (!lines) return Bad("invalid line count");
  bool keep_going;
  auto i = Message(cmd.args[0], &keep_going);
  if (!i) return keep_going;
  return SendMessage(*i, *lines);
}

bool Session::SendMessage(std::size_t i,
                          std::optional<std::uint32_t> body_lines) {
  std::optional<std::uint64_t> size;
  if (!body_lines) {
    size = SizeOf(i);
    if (!size) return true;
  }
  auto stream = mailbox_.Open(i);
  if (!stream) {
    if (stream.error() == MessageError::kGone)
      Err(fmt::format("message {} is gone", i + 1));
    else
      Err(fmt::format("[SYS/TEMP] message {} cannot be read", i + 1));
    return true;
  }

  // Until something is sent the status line can still be taken back.
  std::size_t mark = out_.size();
  std::uint64_t flushes_at_mark = flushes_;
  if (body_lines)
    Ok("top of message follows");
  else
    Ok(fmt::format("{} octets", *size));

  WireEncoder encoder(body_lines);
  std::string chunk(kMessageChunk, '\0');
  std::uint64_t octets = 0;
  while (!encoder.done()) {
    auto n = (*stream)->Read(chunk);
    if (!n) {
      if (flushes_ == flushes_at_mark) {
        out_.resize(mark);
        Err(fmt::format("[SYS/TEMP] message {} cannot be read", i + 1));
        return true;
      }
      // Part of the body is out: no answer can say so, only the close.
      End(ipc::EndReason::kMailboxError);
      return false;
    }
    if (*n == 0) break;
    if (!FlushIfFull()) return false;
    std::size_t before = out_.size();
    encoder.Feed(std::string_view(chunk.data(), *n), &out_);
    octets += out_.size() - before;
  }
  std::size_t before = out_.size();
  encoder.Finish(&out_);
  octets += out_.size() - before - 3;  // the ".\r\n" is not body

  // Counted once the last of it has left in a flush (Flush), so that the
  // session's record never claims a message the client did not get.
  unflushed_octets_ += octets;
  if (!body_lines) unflushed_ids_.push_back(i);
  return true;
}

bool Session::Dele(const pop3::Command& cmd) {
  if (cmd.args.size() != 1) return Bad("usage: DELE msg");
  bool keep_going;
  auto i = Message(cmd.args[0], &keep_going);
  if (!i) return keep_going;
  deleted_[*i] = true;
  deleted_count_++;
  Ok(fmt::format("message {} deleted", *i + 1));
  return true;
}

bool Session::Rset(const pop3::Command& cmd) {
  if (!cmd.args.empty()) return Bad("usage: RSET");
  deleted_.assign(deleted_.size(), false);
  deleted_count_ = 0;
  Greet();
  return true;
}

bool Session::Capa(const pop3::Command& cmd) {
  if (!cmd.args.empty()) return Bad("usage: CAPA");
  Ok("capability list follows");
  std::string_view list = kCapabilities;
  list.remove_suffix(3);  // ".\r\n", which must come last
  out_.append(list);
  out_.append(policy_capa_);
  out_.append(".\r\n");
  return true;
}

bool Session::Quit(const pop3::Command& cmd) {
  if (!cmd.args.empty()) return Bad("usage: QUIT");
  // RFC 1939 section 6: QUIT in TRANSACTION enters UPDATE.  A message
  // retrieved only counts for EXPIRE once it has left: a client that
  // pipelined RETR and QUIT and then vanished keeps its mail.
  if (expire_days_ && !unflushed_ids_.empty() && !Flush()) return false;
  std::vector<std::size_t> doomed;
  for (std::size_t i = 0; i < deleted_.size(); i++)
    if (deleted_[i] || Expired(i)) doomed.push_back(i);
  CommitResult r = mailbox_.Commit(doomed);
  summary_.deleted = r.removed;
  if (r.failed > 0) {
    Err(CommitProblemText(r.problem));
    End(ipc::EndReason::kCommitFailed);
    return false;
  }
  Ok(fmt::format("popguard signing off ({} left)",
                 Messages(mailbox_.Count() - r.removed)));
  End(ipc::EndReason::kQuit);
  return false;
}

bool Session::Expired(std::size_t i) {
  if (!expire_days_) return false;
  if (*expire_days_ == 0) return retrieved_[i];
  auto delivered = mailbox_.DeliveredAt(i);
  return delivered &&
         *delivered < now_ - static_cast<std::int64_t>(*expire_days_) * 86400;
}

void Serve(Session& session, int fd, std::string_view pipelined,
           int idle_timeout_ms) {
  pop3::LineReader reader;
  reader.Feed(pipelined);
  std::string line;
  char buf[kReadSize];
  while (!session.over()) {
    switch (reader.Next(&line)) {
      case pop3::LineReader::Status::kLine: session.HandleLine(line); continue;
      case pop3::LineReader::Status::kTooLong:
        session.HandleTooLong();
        continue;
      case pop3::LineReader::Status::kNeedMore: break;
    }
    if (!session.Flush()) break;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, idle_timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      session.EndByTimeout();
      break;
    }
    ssize_t n = r < 0 ? -1 : read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      session.EndByDisconnect();
      break;
    }
    reader.Feed(std::string_view(buf, n));
  }
  session.Flush();
}

}  // namespace popguard::worker
