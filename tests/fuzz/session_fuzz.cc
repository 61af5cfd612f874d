// Fuzz target: the worker's TRANSACTION and UPDATE states
// (worker/session.h), driven without sockets over an in-memory mailbox.
//
// Input: a first line of setup bytes, then the client's byte stream.
//   byte 0   bad-command limit (mod 13)
//   byte 1   the client stops reading after this many writes (0: never)
//   byte 2   odd: Commit fails
//   byte 3+  one byte per message, at most 6: bits 0-2 pick a body from
//            kBodies; bit 3 Size fails; bit 4 Open finds it gone; bit 5
//            Open fails; bits 6-7 the Read call (1-3) that fails.
// The stream is split into lines by pop3::LineReader, as Serve does, and
// the session is flushed after each command so that each response can be
// checked alone:
// - it is one "+OK" or "-ERR" line, or for a multi-line answer a status
//   line, CRLF-terminated dot-stuffed lines and ".\r\n";
// - RETR sends the message's octets exactly and says how many;
// - the mailbox is committed only at QUIT, with exactly the messages the
//   client deleted and did not reset, and the summary matches.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/pop3.h"
#include "tests/fuzz/fuzz_check.h"
#include "worker/mailbox.h"
#include "worker/session.h"

namespace {

using popguard::fuzz::Check;
using namespace popguard::worker;
namespace ipc = popguard::ipc;
namespace pop3 = popguard::pop3;

std::string Big() {
  std::string s = "Subject: big\n\n";
  while (s.size() < 200 * 1024) s += "..\n.\r\nFrom x\rlonger line\n";
  return s;
}

const std::string kBodies[8] = {
    "",
    "Subject: one\n\nhello\n",
    ".leading dot\r\n..two\nend",
    "H: x\n\n1\n2\n3\n4\n5\n",
    "\r\r\n\n.\r.\n\r",
    "Subject: no body",
    std::string(3000, 'x') + "\n.\n",
    Big(),
};

struct Spec {
  std::string body;
  bool size_fails, gone, open_fails;
  int read_fails_at;  // 0: never; else the n-th Read call fails
};

class FakeStream final : public MessageStream {
 public:
  FakeStream(std::string_view body, int fail_at)
      : rest_(body), fail_at_(fail_at) {}
  std::expected<std::size_t, MessageError> Read(std::span<char> buf) override {
    if (++calls_ == fail_at_) return std::unexpected(MessageError::kIo);
    std::size_t n = std::min(buf.size(), rest_.size());
    std::copy_n(rest_.data(), n, buf.data());
    rest_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view rest_;
  int fail_at_;
  int calls_ = 0;
};

class FakeMailbox final : public Mailbox {
 public:
  FakeMailbox(std::vector<Spec> specs, bool commit_fails)
      : specs_(std::move(specs)), commit_fails_(commit_fails) {}

  std::size_t Count() const override { return specs_.size(); }
  std::expected<std::uint64_t, MessageError> Size(std::size_t i) override {
    Check(i < specs_.size(), "Size asks for a message that exists");
    if (specs_[i].size_fails) return std::unexpected(MessageError::kIo);
    MessageSizer sizer;
    sizer.Feed(specs_[i].body);
    return sizer.Finish();
  }
  std::string_view Uidl(std::size_t i) const override {
    Check(i < specs_.size(), "Uidl asks for a message that exists");
    return uidls_[i];
  }
  std::expected<std::unique_ptr<MessageStream>, MessageError> Open(
      std::size_t i) override {
    Check(i < specs_.size(), "Open asks for a message that exists");
    if (specs_[i].gone) return std::unexpected(MessageError::kGone);
    if (specs_[i].open_fails) return std::unexpected(MessageError::kIo);
    return std::make_unique<FakeStream>(specs_[i].body,
                                        specs_[i].read_fails_at);
  }
  // The target sets no EXPIRE policy, so nothing asks.
  std::optional<std::int64_t> DeliveredAt(std::size_t) override {
    Check(false, "DeliveredAt is asked only under an EXPIRE policy");
    return std::nullopt;
  }
  CommitResult Commit(std::span<const std::size_t> doomed) override {
    Check(!committed, "Commit is called once");
    committed = std::vector<std::size_t>(doomed.begin(), doomed.end());
    CommitResult r;
    if (doomed.empty()) return r;
    if (commit_fails_) {
      r.failed = static_cast<std::uint32_t>(doomed.size());
      r.problem = CommitProblem::kIo;
    } else {
      r.removed = static_cast<std::uint32_t>(doomed.size());
    }
    return r;
  }

  std::optional<std::vector<std::size_t>> committed;

 private:
  std::vector<Spec> specs_;
  const std::string uidls_[6] = {"a1", "b2", "c3", "d4", "e5", "f6"};
  bool commit_fails_;
};

class FakeSink final : public Sink {
 public:
  explicit FakeSink(int fail_after) : fail_after_(fail_after) {}
  bool Send(std::string_view bytes) override {
    Check(!bytes.empty(), "nothing empty is sent");
    if (fail_after_ > 0 && sends_ == fail_after_) {
      refused = true;
      return false;
    }
    sends_++;
    all.append(bytes);
    return true;
  }
  std::string all;
  bool refused = false;  // the client stopped reading

 private:
  int fail_after_;
  int sends_ = 0;
};

std::string WireBody(std::string_view body) {
  WireEncoder enc;
  std::string out;
  enc.Feed(body, &out);
  enc.Finish(&out);
  return out;
}

// Checks the response to `cmd`.  cut_allowed: the session ended while
// sending it, so a multi-line answer may stop short.
void CheckResponse(std::string_view r, const pop3::Command& cmd,
                   const std::vector<Spec>& specs, bool cut_allowed) {
  Check(r.starts_with("+OK") || r.starts_with("-ERR"),
        "a response starts with +OK or -ERR");
  std::size_t eol = r.find("\r\n");
  Check(eol != std::string_view::npos, "the status line ends in CRLF");
  std::string_view status = r.substr(0, eol);
  Check(status.find_first_of("\r\n") == std::string_view::npos,
        "the status line holds no CR or LF");
  std::string_view rest = r.substr(eol + 2);

  using pop3::Verb;
  bool multi = r.starts_with("+OK") &&
               (cmd.verb == Verb::kRetr || cmd.verb == Verb::kTop ||
                cmd.verb == Verb::kCapa ||
                ((cmd.verb == Verb::kList || cmd.verb == Verb::kUidl) &&
                 cmd.args.empty()));
  if (!multi) {
    Check(rest.empty(), "a single-line answer is one line");
    return;
  }
  if (cut_allowed && !rest.ends_with("\r\n.\r\n") && rest != ".\r\n") return;
  Check(rest == ".\r\n" || rest.ends_with("\r\n.\r\n"),
        "a multi-line answer ends with .CRLF");
  std::string destuffed;
  std::string_view body = rest.substr(0, rest.size() - 3);
  while (!body.empty()) {
    std::size_t lf = body.find('\n');
    Check(lf != std::string_view::npos && lf > 0 && body[lf - 1] == '\r',
          "every line ends in CRLF");
    std::string_view line = body.substr(0, lf + 1);
    Check(line.find('\r') == lf - 1, "no bare CR inside a line");
    if (line.starts_with(".")) {
      Check(line.starts_with(".."), "a line starting with a dot is stuffed");
      line.remove_prefix(1);
    }
    destuffed += line;
    body.remove_prefix(lf + 1);
  }
  if (cmd.verb != Verb::kRetr) return;

  auto n = pop3::ParseMessageNumber(cmd.args[0]);
  Check(n && *n <= specs.size(), "RETR answers +OK only for a message");
  std::string want = WireBody(specs[*n - 1].body);
  Check(rest == want, "RETR sends the message exactly");
  Check(status == "+OK " + std::to_string(destuffed.size()) + " octets",
        "RETR announces the octets it sends");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::size_t nl = in.find('\n');
  if (nl == std::string_view::npos || nl < 3) return 0;
  std::string_view setup = in.substr(0, nl);
  std::string_view stream = in.substr(nl + 1);

  auto byte = [&](std::size_t i) {
    return static_cast<std::uint8_t>(setup[i]);
  };
  std::vector<Spec> specs;
  for (std::size_t i = 3; i < setup.size() && specs.size() < 6; i++) {
    std::uint8_t f = byte(i);
    specs.push_back(
        {kBodies[f & 7], (f & 8) != 0, (f & 16) != 0, (f & 32) != 0, f >> 6});
  }
  FakeMailbox mailbox(specs, (byte(2) & 1) != 0);
  FakeSink sink(byte(1));
  Session session(mailbox, sink, byte(0) % 13);

  session.Greet();
  session.Flush();
  Check(sink.all.starts_with("+OK maildrop has ") && sink.all.ends_with("\r\n"),
        "the session greets with the message count");
  std::vector<bool> deleted(specs.size(), false);
  std::uint32_t retrieved = 0;
  bool quit = false;
  // A RETR whose answer was lost with the client may still be counted.
  bool lost_retr = false;
  pop3::LineReader reader;
  reader.Feed(stream);
  std::string line;
  while (!session.over()) {
    auto st = reader.Next(&line);
    if (st == pop3::LineReader::Status::kNeedMore) break;
    std::size_t before = sink.all.size();
    pop3::Command cmd;
    if (st == pop3::LineReader::Status::kTooLong) {
      session.HandleTooLong();
    } else {
      cmd = pop3::ParseCommand(line);
      session.HandleLine(line);
    }
    session.Flush();
    if (cmd.verb == pop3::Verb::kQuit && cmd.args.empty()) quit = true;
    std::string_view r = std::string_view(sink.all).substr(before);
    bool sink_gone = sink.refused;
    if (sink_gone && cmd.verb == pop3::Verb::kRetr) lost_retr = true;
    if (sink_gone && r.empty()) break;
    bool cut =
        session.over() &&
        (session.end_reason() == ipc::EndReason::kMailboxError || sink_gone);
    CheckResponse(r, cmd, specs, cut);
    if (!r.starts_with("+OK")) continue;
    if (cmd.verb == pop3::Verb::kDele)
      deleted[*pop3::ParseMessageNumber(cmd.args[0]) - 1] = true;
    if (cmd.verb == pop3::Verb::kRset) deleted.assign(deleted.size(), false);
    if (cmd.verb == pop3::Verb::kRetr && !cut) retrieved++;
  }
  if (!session.over()) session.EndByDisconnect();
  Check(!session.HandleLine("NOOP"), "an ended session takes no command");

  ipc::SessionEnd end = session.Summary();
  bool committing = end.reason == ipc::EndReason::kQuit ||
                    end.reason == ipc::EndReason::kCommitFailed;
  Check(committing == mailbox.committed.has_value(),
        "the mailbox is committed exactly when the session quits");
  Check(!committing || quit, "only QUIT commits");
  std::vector<std::size_t> doomed;
  for (std::size_t i = 0; i < deleted.size(); i++)
    if (deleted[i]) doomed.push_back(i);
  if (mailbox.committed) {
    std::vector<std::size_t> got = *mailbox.committed;
    std::sort(got.begin(), got.end());
    Check(got == doomed, "Commit removes exactly the messages deleted");
    bool fails = (byte(2) & 1) != 0 && !doomed.empty();
    Check(end.deleted == (fails ? 0 : doomed.size()),
          "the summary counts what was removed");
    Check((end.reason == ipc::EndReason::kCommitFailed) == fails,
          "a failed commit ends the session as such");
  }
  Check(end.messages == specs.size(), "the summary counts the messages");
  Check(end.retrieved == retrieved ||
            (lost_retr && end.retrieved == retrieved + 1),
        "the summary counts each RETR");
  return 0;
}
