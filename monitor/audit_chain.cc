#include "monitor/audit_chain.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace popguard::monitor {
namespace {

// How far back ReadChainTail reads at a time.  A record is well under
// this (every client string in it is bounded), so one read finds the
// start of the last line.
constexpr std::size_t kTailChunk = 4096;

constexpr std::string_view kSeqPrefix = "{\"seq\":";

std::string ErrnoText(std::string_view what, const std::string& path) {
  return fmt::format("{} {}: {}", what, path, std::strerror(errno));
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

bool PreadAll(int fd, char* buf, std::size_t len, off_t at) {
  while (len > 0) {
    ssize_t n = pread(fd, buf, len, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf += n;
    len -= static_cast<std::size_t>(n);
    at += n;
  }
  return true;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// The seq of a line this code wrote, or 0 for any other line (the
// verifier reports that line; the chain goes on from its digest).
std::uint64_t SeqOf(std::string_view line) {
  if (!line.starts_with(kSeqPrefix)) return 0;
  line.remove_prefix(kSeqPrefix.size());
  std::uint64_t seq = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), seq);
  if (ec != std::errc() || end == line.data() || *end != ',') return 0;
  return seq;
}

// O_NOFOLLOW and the regular-file check keep a planted symlink or FIFO
// from turning root's append into a write elsewhere, or a hang.
int OpenChainFile(const std::string& path, std::string* error) {
  int fd = open(path.c_str(),
                O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    *error = ErrnoText("cannot open the audit file", path);
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = fmt::format("the audit file {} is not a regular file", path);
    close(fd);
    return -1;
  }
  return fd;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Checks one complete line against what the chain expects there.  Returns
// an empty string when the line holds, else why not.
std::string CheckLine(std::string_view line, std::uint64_t lineno,
                      std::uint64_t want_seq, const std::string& want_prev) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "not a JSON object";

  auto seq = j.find("seq");
  if (seq == j.end() || !seq->is_number_unsigned()) return "no \"seq\" number";
  auto got = seq->get<std::uint64_t>();
  if (got != want_seq && lineno == 1)
    return fmt::format(
        "seq {} on the first line, expected 1: the start of the file is "
        "missing",
        got);
  if (got != want_seq)
    return fmt::format(
        "seq gap: seq {} where {} was expected: a record was removed, "
        "added or moved",
        got, want_seq);

  auto prev = j.find("prev");
  if (prev == j.end() || !prev->is_string()) return "no \"prev\" digest";
  const auto& digest = prev->get_ref<const std::string&>();
  if (digest.size() != 64 || !IsLowerHex(digest))
    return "\"prev\" is not a SHA-256 digest";
  if (digest != want_prev && lineno == 1)
    return "digest mismatch: \"prev\" of the first line is not zeros";
  if (digest != want_prev)
    return fmt::format(
        "digest mismatch: \"prev\" is not the SHA-256 of line {}: that "
        "line was edited, or one was removed or moved",
        lineno - 1);
  return "";
}

}  // namespace

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(ch);
    } else if (c >= 0x20 && c < 0x7f) {
      out->push_back(ch);
    } else {
      // A byte, not a code point: raw client bytes need not be UTF-8,
      // and this keeps the output valid JSON whatever they are.
      *out += fmt::format("\\u{:04x}", c);
    }
  }
  out->push_back('"');
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) !=
      1)
    return std::string(64, '?');  // never matches: the chain shows a break
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; i++) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

std::string Rfc3339Utc(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                t.time_since_epoch())
                .count();
  time_t secs = static_cast<time_t>(ms / 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                     utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, ms % 1000);
}

std::expected<ChainTail, std::string> ReadChainTail(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return std::unexpected(fmt::format("fstat: {}", std::strerror(errno)));
  ChainTail tail;
  off_t end = st.st_size;
  if (end == 0) return tail;

  char last = 0;
  if (!PreadAll(fd, &last, 1, end - 1))
    return std::unexpected(fmt::format("read: {}", std::strerror(errno)));
  if (last == '\n')
    end--;
  else
    tail.ends_in_newline = false;

  // Back from the end, a chunk at a time, to the newline before the last
  // line (or the start of the file).
  std::string line;
  for (off_t pos = end; pos > 0;) {
    off_t from = pos > static_cast<off_t>(kTailChunk) ? pos - kTailChunk : 0;
    std::string chunk(static_cast<std::size_t>(pos - from), '\0');
    if (!PreadAll(fd, chunk.data(), chunk.size(), from))
      return std::unexpected(fmt::format("read: {}", std::strerror(errno)));
    std::size_t nl = chunk.rfind('\n');
    if (nl != std::string::npos) {
      line.insert(0, chunk, nl + 1);
      break;
    }
    line.insert(0, chunk);
    pos = from;
  }
  tail.digest = Sha256Hex(line);
  tail.seq = SeqOf(line);
  return tail;
}

std::expected<std::uint64_t, std::string> AppendChained(
    const std::string& path, std::string_view members) {
  std::string error;
  int fd = OpenChainFile(path, &error);
  if (fd < 0) return std::unexpected(error);
  FdCloser closer(fd);

  // The lock is released by close: it belongs to this open file
  // description, which is why every append opens the file anew (a
  // descriptor inherited across fork would share one lock with the
  // parent and exclude nothing).
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) return std::unexpected(ErrnoText("flock", path));
  }
  auto tail = ReadChainTail(fd);
  if (!tail) return std::unexpected(path + ": " + tail.error());

  std::uint64_t seq = tail->seq + 1;
  std::string line;
  // A line cut short by a crash stays a line of its own, and is what the
  // verifier reports.
  if (!tail->ends_in_newline) line += '\n';
  line +=
      fmt::format("{}{},\"time\":\"{}\",\"prev\":\"{}\"", kSeqPrefix, seq,
                  Rfc3339Utc(std::chrono::system_clock::now()), tail->digest);
  if (!members.empty()) {
    line += ',';
    line += members;
  }
  line += "}\n";
  if (!WriteAll(fd, line)) return std::unexpected(ErrnoText("write", path));
  return seq;
}

std::expected<void, std::string> CheckChainFile(const std::string& path) {
  std::string error;
  int fd = OpenChainFile(path, &error);
  if (fd < 0) return std::unexpected(error);
  close(fd);
  return {};
}

ChainReport VerifyChain(int fd) {
  ChainReport report;
  std::string want_prev(64, '0');
  std::uint64_t lineno = 0;
  auto fail = [&report](std::uint64_t line, std::string why) {
    report.intact = false;
    report.line = line;
    report.why = std::move(why);
    return report;
  };

  std::string pending;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return fail(lineno + 1, fmt::format("read: {}", std::strerror(errno)));
    if (n == 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      lineno++;
      std::string why = CheckLine(line, lineno, lineno, want_prev);
      if (!why.empty()) return fail(lineno, std::move(why));
      want_prev = Sha256Hex(line);
      report.records++;
    }
    pending.erase(0, start);
  }
  if (!pending.empty())
    return fail(lineno + 1,
                "no end of line: the last record was cut short or the file "
                "truncated");
  return report;
}

}  // namespace popguard::monitor
