#include "worker/mbox.h"

#include <fcntl.h>
#include <md5.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <string_view>
#include <unordered_set>

namespace popguard::worker {

namespace {

// Read buffer of the scan, of RETR and of the rewrite: a few system calls
// per megabyte, and the same fixed memory whatever the mailbox's size.
constexpr std::size_t kBufferSize = 128 * 1024;
static_assert(kBufferSize > 2 * Mbox::kLookahead);

constexpr std::string_view kFrom = "From ";

// Open without following a link (the monitor refuses one too) and without
// blocking on a FIFO planted at the mailbox's name.
constexpr int kOpenFlags =
    O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

void Sleep(int ms) { poll(nullptr, 0, ms); }

// Reads [begin, end) of a file as pieces that never run past a line end.
// When a piece starts a line, at least kLookahead octets of it (or the rest
// of the range) are in it, so prefixes are judged on whole bytes wherever
// the buffer happens to be cut.
class PieceReader {
 public:
  struct Piece {
    std::string_view data;
    std::uint64_t offset = 0;
    bool line_start = false;
    bool line_end = false;  // data ends with '\n'
  };

  PieceReader(int fd, std::uint64_t begin, std::uint64_t end)
      : fd_(fd), buf_(kBufferSize), pos_(begin), read_(begin), end_(end) {}

  // false at the end of the range or on a read error (failed()).
  bool Next(Piece* p) {
    std::size_t want = line_start_ ? Mbox::kLookahead : 1;
    if (tail_ - head_ < want && read_ < end_ && !Fill()) return false;
    if (head_ == tail_) return false;
    const char* start = buf_.data() + head_;
    std::size_t avail = tail_ - head_;
    const void* nl = std::memchr(start, '\n', avail);
    std::size_t len = nl ? static_cast<const char*>(nl) - start + 1 : avail;
    p->data = std::string_view(start, len);
    p->offset = pos_;
    p->line_start = line_start_;
    p->line_end = nl != nullptr;
    line_start_ = p->line_end;
    head_ += len;
    pos_ += len;
    return true;
  }

  bool failed() const { return failed_; }

 private:
  // Moves the unread octets to the front and reads until the buffer is
  // full or the range is in.
  bool Fill() {
    std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
    tail_ -= head_;
    head_ = 0;
    while (tail_ < buf_.size() && read_ < end_) {
      std::size_t want =
          std::min<std::uint64_t>(buf_.size() - tail_, end_ - read_);
      ssize_t n = pread(fd_, buf_.data() + tail_, want, read_);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // An error, or the file is shorter than the snapshot: another
        // program truncated it.
        failed_ = true;
        return false;
      }
      tail_ += n;
      read_ += n;
    }
    return true;
  }

  int fd_;
  std::vector<char> buf_;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
  std::uint64_t pos_;   // file offset of buf_[head_]
  std::uint64_t read_;  // file offset of buf_[tail_]
  std::uint64_t end_;
  bool line_start_ = true;
  bool failed_ = false;
};

bool IsBlankLine(const PieceReader::Piece& p) {
  return p.line_start && p.line_end && (p.data == "\n" || p.data == "\r\n");
}

// mboxrd: /^>+From / is a quoted text line; one '>' comes off.
bool IsQuotedFrom(std::string_view line) {
  line = line.substr(0, Mbox::kLookahead);
  std::size_t n = line.find_first_not_of('>');
  return n != 0 && n != std::string_view::npos &&
         line.substr(n).starts_with(kFrom);
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return (x | 0x20) == (y | 0x20); });
}

// Header fields mail readers rewrite in place to store flags and sizes;
// they stay out of the UIDL digest (see mbox.h).
bool IsVolatileField(std::string_view name) {
  static constexpr std::string_view kVolatile[] = {
      "Status", "X-Status",   "X-Keywords",     "X-UID",
      "X-IMAP", "X-IMAPbase", "Content-Length", "Lines"};
  for (std::string_view v : kVolatile)
    if (EqualsNoCase(name, v)) return true;
  return false;
}

// RFC 1939 section 7: 1 to 70 octets of 0x21..0x7E.
bool IsValidUidl(std::string_view s) {
  if (s.empty() || s.size() > 70) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x21 && c <= 0x7e; });
}

// The value of an "X-UIDL:" header line, if it is one and the value is a
// valid UIDL.
std::string_view XUidl(std::string_view line) {
  constexpr std::string_view kName = "X-UIDL:";
  if (line.size() < kName.size() ||
      !EqualsNoCase(line.substr(0, kName.size()), kName))
    return {};
  line.remove_prefix(kName.size());
  std::size_t b = line.find_first_not_of(" \t");
  std::size_t e = line.find_last_not_of(" \t\r\n");
  if (b == std::string_view::npos || e < b) return {};
  line = line.substr(b, e - b + 1);
  return IsValidUidl(line) ? line : std::string_view();
}

std::string Hex(const unsigned char* p, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; i++) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 0xf]);
  }
  return out;
}

// Builds one message's entry from the pieces the scan hands it.
class MessageBuilder {
 public:
  MessageBuilder() = default;
  MessageBuilder(const MessageBuilder&) = delete;
  MessageBuilder& operator=(const MessageBuilder&) = delete;

  bool Start(std::uint64_t from) {
    entry_ = Mbox::Entry();
    entry_.from = from;
    sizer_ = MessageSizer();
    in_from_line_ = true;
    in_header_ = true;
    skip_field_ = false;
    pending_blank_.reset();
    MD5Init(&md_);
    return true;
  }

  void Feed(const PieceReader::Piece& p) {
    if (in_from_line_) {
      Digest(p.data);
      if (p.line_end) {
        in_from_line_ = false;
        entry_.body = p.offset + p.data.size();
      }
      return;
    }
    if (IsBlankLine(p)) {
      // Held back: if a From_ line follows, it is the separator.
      FlushBlank();
      pending_blank_ = p.offset;
      pending_crlf_ = p.data.size() == 2;
      in_header_ = false;
      return;
    }
    FlushBlank();
    std::string_view text = p.data;
    if (p.line_start) {
      if (in_header_) Header(p);
      if (IsQuotedFrom(text)) text.remove_prefix(1);
    } else if (in_header_ && !skip_field_) {
      Digest(p.data);
    }
    sizer_.Feed(text);
  }

  // Ends the message at `end` (the next From_ line or the snapshot's end).
  bool Finish(std::uint64_t end, Mbox::Entry* out) {
    if (in_from_line_) entry_.body = end;
    entry_.end = pending_blank_.value_or(end);
    entry_.size = sizer_.Finish();
    static_assert(sizeof entry_.digest == MD5_DIGEST_LENGTH);
    MD5Final(entry_.digest.data(), &md_);
    if (entry_.uidl.empty())
      entry_.uidl = Hex(entry_.digest.data(), entry_.digest.size());
    *out = std::move(entry_);
    return true;
  }

 private:
  void Header(const PieceReader::Piece& p) {
    std::string_view line = p.data;
    if (line.front() != ' ' && line.front() != '\t') {
      std::string_view name = line.substr(0, line.find(':'));
      skip_field_ = IsVolatileField(name);
      // Only a whole line: a value cut at a piece boundary is not judged.
      if (entry_.uidl.empty() && p.line_end) entry_.uidl = XUidl(line);
    }
    if (!skip_field_) Digest(line);
  }

  void FlushBlank() {
    if (!pending_blank_) return;
    sizer_.Feed(pending_crlf_ ? "\r\n" : "\n");
    pending_blank_.reset();
  }

  // CRs are left out, so a CRLF conversion keeps the digest.
  void Digest(std::string_view s) {
    for (;;) {
      std::size_t cr = s.find('\r');
      MD5Update(&md_, reinterpret_cast<const std::uint8_t*>(s.data()),
                std::min(cr, s.size()));
      if (cr == std::string_view::npos) return;
      s.remove_prefix(cr + 1);
    }
  }

  MD5_CTX md_;  // libmd: see HexMd5 in maildir.cc for why not OpenSSL
  Mbox::Entry entry_;
  MessageSizer sizer_;
  bool in_from_line_ = false;
  bool in_header_ = false;
  bool skip_field_ = false;
  std::optional<std::uint64_t> pending_blank_;
  bool pending_crlf_ = false;
};

// Makes UIDLs unique in file order (see mbox.h).
void AssignUidls(std::vector<Mbox::Entry>* entries) {
  // Views of the entries' own strings, which stay put from here on.
  std::unordered_set<std::string_view> used;
  used.reserve(entries->size());
  for (Mbox::Entry& e : *entries) {
    if (used.contains(e.uidl)) {
      std::string digest = Hex(e.digest.data(), e.digest.size());
      e.uidl = digest;
      for (int n = 2; used.contains(e.uidl); n++)
        e.uidl = digest + "." + std::to_string(n);
    }
    used.insert(e.uidl);
  }
}

bool LockRange(int fd, short type, bool wait, const Mbox::Options& o) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;  // l_start 0, l_len 0: the whole file
  for (int waited = 0;; waited += o.lock_retry_ms) {
    if (fcntl(fd, F_SETLK, &fl) == 0) return true;
    if (errno != EAGAIN && errno != EACCES && errno != EINTR) return false;
    if (!wait || waited >= o.lock_wait_ms) return false;
    Sleep(o.lock_retry_ms);
  }
}

// Streams [body, end) of the file, removing one '>' from quoted From lines.
class MboxStream final : public MessageStream {
 public:
  MboxStream(int fd, std::uint64_t body, std::uint64_t end)
      : reader_(fd, body, end) {}

  std::expected<std::size_t, MessageError> Read(std::span<char> buf) override {
    std::size_t n = 0;
    while (n < buf.size()) {
      if (rest_.empty()) {
        PieceReader::Piece p;
        if (!reader_.Next(&p)) break;
        rest_ = p.data;
        if (p.line_start && IsQuotedFrom(rest_)) rest_.remove_prefix(1);
      }
      std::size_t k = std::min(rest_.size(), buf.size() - n);
      std::memcpy(buf.data() + n, rest_.data(), k);
      rest_.remove_prefix(k);
      n += k;
    }
    if (reader_.failed()) return std::unexpected(MessageError::kIo);
    return n;
  }

 private:
  PieceReader reader_;
  std::string_view rest_;  // the unsent part of the current piece
};

bool WriteAll(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= w;
  }
  return true;
}

}  // namespace

bool ScanMbox(int fd, std::uint64_t limit, std::vector<Mbox::Entry>* entries,
              std::uint64_t* first_from) {
  entries->clear();
  *first_from = limit;
  PieceReader reader(fd, 0, limit);
  MessageBuilder builder;
  bool in_message = false;
  bool after_blank = true;  // the start of the file counts as one
  PieceReader::Piece p;
  while (reader.Next(&p)) {
    if (p.line_start && after_blank && p.data.starts_with(kFrom)) {
      if (in_message) {
        entries->emplace_back();
        if (!builder.Finish(p.offset, &entries->back())) return false;
      } else {
        *first_from = p.offset;
      }
      if (!builder.Start(p.offset)) return false;
      builder.Feed(p);
      in_message = true;
    } else if (in_message) {
      builder.Feed(p);
    }
    if (p.line_end) after_blank = IsBlankLine(p);
    if (p.line_start && !p.line_end) after_blank = false;
  }
  if (reader.failed()) return false;
  if (in_message) {
    entries->emplace_back();
    if (!builder.Finish(limit, &entries->back())) return false;
  }
  return true;
}

std::expected<std::unique_ptr<Mbox>, Mbox::Error> Mbox::Open(
    const std::string& path, Spool& spool, Options options) {
  UniqueFd fd;
  struct stat st;
  // A delivery that replaced the file between open and flock would leave
  // the lock on a file no longer in the spool: check the name again.
  for (int attempt = 0;; attempt++) {
    fd = UniqueFd(open(path.c_str(), kOpenFlags));
    if (!fd.valid()) {
      if (errno == ENOENT)
        return std::unique_ptr<Mbox>(
            new Mbox(UniqueFd(), path, spool, options));
      return std::unexpected(Error::kIo);
    }
    if (fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode))
      return std::unexpected(Error::kIo);
    if (flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
      if (errno == EWOULDBLOCK) return std::unexpected(Error::kInUse);
      return std::unexpected(Error::kIo);
    }
    struct stat now;
    if (stat(path.c_str(), &now) == 0 && now.st_dev == st.st_dev &&
        now.st_ino == st.st_ino)
      break;
    if (attempt == 3) return std::unexpected(Error::kIo);
  }

  std::unique_ptr<Mbox> mb(new Mbox(std::move(fd), path, spool, options));
  mb->dev_ = st.st_dev;
  mb->ino_ = st.st_ino;
  if (!mb->LockSpool()) return std::unexpected(Error::kBusy);
  bool ok = fstat(mb->fd_.get(), &st) == 0;
  if (ok) {
    mb->snapshot_ = st.st_size;
    ok =
        ScanMbox(mb->fd_.get(), mb->snapshot_, &mb->entries_, &mb->first_from_);
  }
  mb->UnlockSpool();
  if (!ok) return std::unexpected(Error::kIo);
  AssignUidls(&mb->entries_);
  return mb;
}

bool Mbox::LockSpool() {
  if (!spool_->Lock()) return false;
  if (LockRange(fd_.get(), F_WRLCK, true, options_)) return true;
  spool_->Unlock();
  return false;
}

void Mbox::UnlockSpool() {
  LockRange(fd_.get(), F_UNLCK, false, options_);
  spool_->Unlock();
}

std::expected<std::unique_ptr<MessageStream>, MessageError> Mbox::Open(
    std::size_t i) {
  const Entry& e = entries_[i];
  // Another program that rewrote the file in place (a mail reader
  // expunging) has moved the messages: a message whose From_ line is no
  // longer where it was is not sent from the wrong offset.
  char head[kFrom.size()];
  if (pread(fd_.get(), head, sizeof head, e.from) !=
          static_cast<ssize_t>(sizeof head) ||
      std::string_view(head, sizeof head) != kFrom)
    return std::unexpected(MessageError::kGone);
  return std::make_unique<MboxStream>(fd_.get(), e.body, e.end);
}

std::optional<std::int64_t> ParseFromLineDate(std::string_view line) {
  // "From SENDER DATE [more]", DATE as asctime() writes it: "Thu Dec  3
  // 10:00:00 2026".  Some agents put a time zone name before the year or
  // "remote from HOST" after it.  The sender is one word (RFC 4155).
  std::vector<std::string_view> words;
  while (!line.empty() && words.size() < 9) {
    std::size_t start = line.find_first_not_of(" \t\r\n");
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    std::size_t end = std::min(line.find_first_of(" \t\r\n"), line.size());
    words.push_back(line.substr(0, end));
    line.remove_prefix(end);
  }
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr",
                                                 "May", "Jun", "Jul", "Aug",
                                                 "Sep", "Oct", "Nov", "Dec"};
  auto number = [](std::string_view w, int* out) {
    auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), *out);
    return ec == std::errc() && p == w.data() + w.size();
  };
  if (words.size() < 7 || words[0] != "From") return std::nullopt;
  // words[2] is the weekday, which the date already implies.
  const auto* month =
      std::find(std::begin(kMonths), std::end(kMonths), words[3]);
  if (month == std::end(kMonths)) return std::nullopt;
  int day = 0, hour = 0, minute = 0, second = 0, year = 0;
  std::string_view clock = words[5];
  if (!number(words[4], &day) || day < 1 || day > 31) return std::nullopt;
  if (clock.size() != 8 && clock.size() != 5) return std::nullopt;
  if (!number(clock.substr(0, 2), &hour) || clock[2] != ':' ||
      !number(clock.substr(3, 2), &minute))
    return std::nullopt;
  if (clock.size() == 8 &&
      (clock[5] != ':' || !number(clock.substr(6, 2), &second)))
    return std::nullopt;
  if (!number(words[6], &year) &&
      (words.size() < 8 || !number(words[7], &year)))
    return std::nullopt;
  if (year < 1970 || year > 9999 || hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  struct tm tm {};
  tm.tm_year = year - 1900;
  tm.tm_mon = static_cast<int>(month - std::begin(kMonths));
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  // RFC 4155 asks for UTC; an agent that wrote local time is off by hours,
  // which a policy counted in days can bear.
  return static_cast<std::int64_t>(timegm(&tm));
}

std::optional<std::int64_t> Mbox::DeliveredAt(std::size_t i) {
  const Entry& e = entries_[i];
  char line[256];
  std::size_t want = std::min<std::uint64_t>(sizeof line, e.body - e.from);
  ssize_t n = pread(fd_.get(), line, want, e.from);
  if (n <= 0) return std::nullopt;
  std::string_view text(line, static_cast<std::size_t>(n));
  text = text.substr(0, text.find('\n'));
  if (!text.starts_with(kFrom)) return std::nullopt;  // rewritten meanwhile
  return ParseFromLineDate(text);
}

CommitResult Mbox::Commit(std::span<const std::size_t> doomed) {
  CommitResult result;
  if (doomed.empty()) return result;
  result.failed = static_cast<std::uint32_t>(doomed.size());
  if (!LockSpool()) {
    result.problem = CommitProblem::kLocked;
    return result;
  }
  result.problem = Rewrite(doomed);
  UnlockSpool();
  if (result.problem == CommitProblem::kNone) {
    result.removed = result.failed;
    result.failed = 0;
  }
  return result;
}

CommitProblem Mbox::Rewrite(std::span<const std::size_t> doomed) {
  struct stat named, opened;
  if (stat(path_.c_str(), &named) < 0 || fstat(fd_.get(), &opened) < 0)
    return CommitProblem::kChanged;
  if (named.st_dev != dev_ || named.st_ino != ino_ ||
      static_cast<std::uint64_t>(opened.st_size) < snapshot_)
    return CommitProblem::kChanged;
  std::vector<Entry> now;
  std::uint64_t first_from = 0;
  if (!ScanMbox(fd_.get(), snapshot_, &now, &first_from))
    return CommitProblem::kIo;
  AssignUidls(&now);
  if (now != entries_ || first_from != first_from_)
    return CommitProblem::kChanged;

  UniqueFd temp = spool_->CreateTemp();
  if (!temp.valid()) return CommitProblem::kIo;
  if (!CopyTo(temp.get(), doomed) || fsync(temp.get()) < 0) {
    spool_->DiscardTemp();
    return CommitProblem::kIo;
  }
  if (spool_->CommitTemp()) return CommitProblem::kNone;
  // The rename is the commit.  A monitor killed after it and before its
  // reply has committed all the same, and the client must not be told
  // that nothing was deleted: the name shows which file it holds.
  struct stat ours;
  if (fstat(temp.get(), &ours) == 0 && stat(path_.c_str(), &named) == 0 &&
      named.st_dev == ours.st_dev && named.st_ino == ours.st_ino)
    return CommitProblem::kNone;
  spool_->DiscardTemp();
  return CommitProblem::kIo;
}

// Writes the prefix, every kept message with the separator after it, and
// the octets after the snapshot, all as stored.
bool Mbox::CopyTo(int out, std::span<const std::size_t> doomed) {
  std::vector<bool> drop(entries_.size(), false);
  for (std::size_t i : doomed) drop[i] = true;
  std::vector<char> buf(kBufferSize);
  auto copy = [&](std::uint64_t from, std::uint64_t to) {
    while (from < to) {
      std::size_t want = std::min<std::uint64_t>(buf.size(), to - from);
      ssize_t n = pread(fd_.get(), buf.data(), want, from);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      if (n == 0) return to == ~std::uint64_t{0};  // the tail: end of file
      if (!WriteAll(out, buf.data(), n)) return false;
      from += n;
    }
    return true;
  };
  if (!copy(0, first_from_)) return false;
  for (std::size_t i = 0; i < entries_.size(); i++) {
    std::uint64_t next =
        i + 1 < entries_.size() ? entries_[i + 1].from : snapshot_;
    if (!drop[i] && !copy(entries_[i].from, next)) return false;
  }
  return copy(snapshot_, ~std::uint64_t{0});
}

}  // namespace popguard::worker
