#include "common/pop3.h"

#include <string.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "common/secure.h"

namespace popguard::pop3 {
namespace {

// The longest verb kept in Command::name: every POP3 keyword is 3 or 4
// letters (RFC 1939 section 3), extensions included; the rest of a longer
// word is of no use in a reply or a log line.
constexpr std::size_t kMaxVerbName = 16;

// Overwrites the bytes of s in [from, s.size()) and shrinks s to `from`.
void CleanseTail(std::string& s, std::size_t from) {
  if (from < s.size()) explicit_bzero(s.data() + from, s.size() - from);
  s.resize(from);
}

// Wipes every byte the string's allocation holds, not only its current
// contents: bytes moved by a compaction linger past size().
void WipeAll(std::string& s) {
  s.resize(s.capacity());
  popguard::Wipe(s);
}

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr VerbName kVerbs[] = {
    {"USER", Verb::kUser}, {"PASS", Verb::kPass}, {"APOP", Verb::kApop},
    {"QUIT", Verb::kQuit}, {"STAT", Verb::kStat}, {"LIST", Verb::kList},
    {"RETR", Verb::kRetr}, {"DELE", Verb::kDele}, {"NOOP", Verb::kNoop},
    {"RSET", Verb::kRset}, {"TOP", Verb::kTop},   {"UIDL", Verb::kUidl},
    {"CAPA", Verb::kCapa}, {"STLS", Verb::kStls}, {"AUTH", Verb::kAuth},
};

std::optional<std::uint64_t> ParseDigits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  for (char ch : s)
    if (ch < '0' || ch > '9') return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

// Invariants between calls:
// - buf_[start_, size) holds the bytes not yet returned, buf_[0, start_)
//   bytes already returned (dropped at the next Feed).
// - The last, unterminated line in the buffer is at most max_line_ + 2
//   bytes.  One that long is over the limit (max_line_ + 1 could still be a
//   full line and its CR); Feed drops what follows it up to the next LF,
//   and Next reports it.
// - skipping_ is set once Next has reported an unterminated long line: the
//   buffer is then empty and Feed drops bytes up to and including the LF.
std::size_t LineReader::TailStart() const {
  std::size_t lf = buf_.rfind('\n');
  if (lf == std::string::npos || lf < start_) return start_;
  return lf + 1;
}

bool LineReader::OverLimit(std::size_t len) const {
  return len > max_line_ && len - max_line_ > 1;
}

void LineReader::Feed(std::string_view bytes) {
  if (skipping_ || OverLimit(buf_.size() - TailStart())) {
    std::size_t lf = bytes.find('\n');
    if (lf == std::string_view::npos) return;
    // After a reported line, its LF goes too; after an unreported one the
    // LF is kept, so that Next sees it end and reports it.
    bytes.remove_prefix(skipping_ ? lf + 1 : lf);
    skipping_ = false;
  }

  if (start_ > 0) {
    std::size_t pending = buf_.size() - start_;
    std::memmove(buf_.data(), buf_.data() + start_, pending);
    CleanseTail(buf_, pending);
    start_ = 0;
  }

  // Grown by hand so that the old allocation is wiped, not freed with
  // a password in it.
  if (buf_.size() + bytes.size() > buf_.capacity()) {
    std::string bigger;
    bigger.reserve(std::max(
        {buf_.size() + bytes.size(), 2 * buf_.capacity(), std::size_t{256}}));
    bigger.append(buf_);
    WipeAll(buf_);
    buf_.swap(bigger);
  }
  buf_.append(bytes);

  std::size_t tail = TailStart();
  if (OverLimit(buf_.size() - tail)) CleanseTail(buf_, tail + max_line_ + 2);
}

LineReader::Status LineReader::Next(std::string* line) {
  if (skipping_) return Status::kNeedMore;

  std::size_t lf = buf_.find('\n', start_);
  if (lf == std::string::npos) {
    if (!OverLimit(buf_.size() - start_)) return Status::kNeedMore;
    CleanseTail(buf_, start_);
    skipping_ = true;
    return Status::kTooLong;
  }

  std::size_t end = lf;
  if (end > start_ && buf_[end - 1] == '\r') end--;
  std::size_t len = end - start_;
  Status status = Status::kTooLong;
  if (len <= max_line_) {
    line->assign(buf_, start_, len);
    status = Status::kLine;
  }
  start_ = lf + 1;
  if (start_ == buf_.size()) {
    CleanseTail(buf_, 0);
    start_ = 0;
  }
  return status;
}

std::string_view LineReader::Pending() const {
  return std::string_view(buf_).substr(start_);
}

void LineReader::Clear() {
  CleanseTail(buf_, 0);
  start_ = 0;
  skipping_ = false;
}

void LineReader::Wipe() {
  WipeAll(buf_);
  start_ = 0;
  skipping_ = false;
}

Command ParseCommand(std::string_view line) {
  Command cmd;
  std::size_t sp = line.find(' ');
  std::string_view verb = line.substr(0, sp);
  for (char ch : verb.substr(0, kMaxVerbName))
    cmd.name +=
        (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch;

  // A NUL would cut the line short wherever it becomes a C string (PAM, a
  // path), so the text checked would not be the text used; CR and LF only
  // get here through a broken line end.  Such a line is no command at all.
  if (line.find_first_of(std::string_view("\0\r\n", 3)) !=
      std::string_view::npos)
    return cmd;

  if (verb.size() <= kMaxVerbName) {
    for (const auto& v : kVerbs) {
      if (v.name == cmd.name) {
        cmd.verb = v.verb;
        break;
      }
    }
  }
  if (sp == std::string_view::npos) return cmd;

  std::string_view rest = line.substr(sp + 1);
  if (cmd.verb == Verb::kPass) {
    if (!rest.empty()) cmd.args.emplace_back(rest);
    return cmd;
  }
  while (!rest.empty()) {
    std::size_t next = rest.find(' ');
    std::string_view word = rest.substr(0, next);
    if (!word.empty()) cmd.args.emplace_back(word);
    if (next == std::string_view::npos) break;
    rest.remove_prefix(next + 1);
  }
  return cmd;
}

std::optional<std::uint32_t> ParseMessageNumber(std::string_view s) {
  auto v = ParseDigits(s);
  if (!v || *v < 1 || *v > 0x7fffffff) return std::nullopt;
  return static_cast<std::uint32_t>(*v);
}

std::optional<std::uint32_t> ParseCount(std::string_view s) {
  auto v = ParseDigits(s);
  if (!v || *v > 0xffffffff) return std::nullopt;
  return static_cast<std::uint32_t>(*v);
}

}  // namespace popguard::pop3
