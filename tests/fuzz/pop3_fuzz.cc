// Fuzz target: the POP3 line reader and command parser (common/pop3.h),
// which read every byte a client sends before and after login.
//
// The input is a client's byte stream plus the choices a network makes:
// where reads split it, and the line limit (small limits reach the
// too-long paths with short inputs).  Lines are drained after every Feed,
// as the front and the worker do.  Checked against a model that splits the
// whole stream at once: the lines and too-long reports must not depend on
// how the stream was cut, the buffer stays within its documented bound,
// and every line parses into a command whose parts come from the line.
#include <fuzzer/FuzzedDataProvider.h>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/pop3.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using popguard::fuzz::Check;
using popguard::pop3::LineReader;

// One result of LineReader::Next: a line, or a too-long report (nullopt).
using Event = std::optional<std::string>;

// What the reader must report for `stream`, fed since the last Clear and
// drained: each LF-terminated line (a CR before the LF removed) or a
// too-long report, then a report for an unterminated tail longer than
// max_line + 1 (one more byte could still be its CR).
std::vector<Event> Model(std::string_view stream, std::size_t max_line) {
  std::vector<Event> out;
  for (;;) {
    std::size_t lf = stream.find('\n');
    if (lf == std::string_view::npos) break;
    std::string_view line = stream.substr(0, lf);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.size() <= max_line)
      out.emplace_back(std::string(line));
    else
      out.emplace_back(std::nullopt);
    stream.remove_prefix(lf + 1);
  }
  if (stream.size() > max_line + 1) out.emplace_back(std::nullopt);
  return out;
}

// The unterminated tail that must still be pending after a drain.
std::string_view ModelPending(std::string_view stream, std::size_t max_line) {
  std::size_t lf = stream.rfind('\n');
  std::string_view tail =
      lf == std::string_view::npos ? stream : stream.substr(lf + 1);
  return tail.size() > max_line + 1 ? std::string_view() : tail;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// The value of a digit string that fits 64 bits, leading zeros allowed.
std::optional<std::uint64_t> Value(std::string_view s) {
  if (!AllDigits(s)) return std::nullopt;
  std::size_t nz = s.find_first_not_of('0');
  if (nz == std::string_view::npos) return 0;
  s.remove_prefix(nz);
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

void CheckNumbers(std::string_view arg) {
  auto v = Value(arg);
  auto n = popguard::pop3::ParseMessageNumber(arg);
  bool number = v && *v >= 1 && *v <= 0x7fffffff;
  Check(n.has_value() == number, "ParseMessageNumber accepts 1..2^31-1");
  if (n) Check(*n == *v, "ParseMessageNumber reads the digits");
  auto c = popguard::pop3::ParseCount(arg);
  Check(c.has_value() == (v && *v <= 0xffffffff),
        "ParseCount accepts 0..2^32-1");
  if (c) Check(*c == *v, "ParseCount reads the digits");
}

char Upper(char c) { return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c; }

void CheckCommand(std::string_view line) {
  using popguard::pop3::Verb;
  popguard::pop3::Command cmd = popguard::pop3::ParseCommand(line);

  std::string_view verb = line.substr(0, line.find(' '));
  Check(cmd.name.size() <= 16 && cmd.name.size() <= verb.size(),
        "the verb name is bounded and taken from the line");
  for (std::size_t i = 0; i < cmd.name.size(); i++)
    Check(cmd.name[i] == Upper(verb[i]), "the name is the verb upper-cased");

  bool control = line.find_first_of(std::string_view("\0\r\n", 3)) !=
                 std::string_view::npos;
  if (control) {
    Check(cmd.verb == Verb::kUnknown && cmd.args.empty(),
          "a line holding NUL, CR or LF is no command");
    return;
  }
  if (cmd.verb != Verb::kUnknown)
    Check(verb.size() == cmd.name.size(), "a known verb is whole");

  std::string_view rest;
  if (verb.size() < line.size()) rest = line.substr(verb.size() + 1);
  if (cmd.verb == Verb::kPass) {
    Check(cmd.args.size() == (rest.empty() ? 0u : 1u) &&
              (rest.empty() || cmd.args[0] == rest),
          "PASS keeps the rest of the line as one argument");
  } else {
    std::string joined;
    for (const std::string& a : cmd.args) {
      Check(!a.empty() && a.find(' ') == std::string::npos,
            "arguments are non-empty words");
      joined += a;
    }
    std::string squeezed;
    for (char c : rest)
      if (c != ' ') squeezed += c;
    Check(joined == squeezed, "the arguments are the words of the line");
  }
  for (const std::string& a : cmd.args) CheckNumbers(a);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::size_t max_line = in.ConsumeBool()
                             ? popguard::pop3::kMaxCommandLine
                             : in.ConsumeIntegralInRange<std::size_t>(0, 40);
  LineReader reader(max_line);

  std::string epoch;  // bytes fed since the last Clear or Wipe
  std::vector<Event> seen;
  auto check_epoch = [&] {
    Check(seen == Model(epoch, max_line),
          "lines do not depend on how the stream was split");
    Check(reader.Pending() == ModelPending(epoch, max_line),
          "Pending() is the unterminated tail after a drain");
  };

  while (in.remaining_bytes() > 0) {
    auto op = in.ConsumeIntegralInRange<int>(0, 15);
    if (op == 0 || op == 1) {
      check_epoch();
      if (op == 0)
        reader.Clear();
      else
        reader.Wipe();
      Check(reader.Pending().empty(), "Clear and Wipe empty the buffer");
      epoch.clear();
      seen.clear();
      continue;
    }
    std::string chunk = in.ConsumeBytesAsString(
        in.ConsumeIntegralInRange<std::size_t>(0, in.ConsumeBool() ? 8 : 300));
    reader.Feed(chunk);
    epoch += chunk;

    std::string line;
    for (;;) {
      LineReader::Status st = reader.Next(&line);
      if (st == LineReader::Status::kNeedMore) break;
      if (st == LineReader::Status::kTooLong) {
        seen.emplace_back(std::nullopt);
        continue;
      }
      Check(line.size() <= max_line, "no line is longer than the limit");
      Check(line.find('\n') == std::string::npos, "a line holds no LF");
      seen.emplace_back(line);
      CheckCommand(line);
    }
    Check(reader.Pending().size() <= max_line + 2,
          "a drained reader holds at most max_line + 2 bytes");
  }
  check_epoch();
  return 0;
}
