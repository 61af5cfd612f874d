#include "worker/maildir.h"

#include <dirent.h>
#include <fcntl.h>
#include <md5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace popguard::worker {

namespace {

// Message files are opened without following links (a link could point at
// another user's file the sandbox would otherwise have to catch) and
// without blocking (a FIFO planted in cur/ must not hang the session).
constexpr int kMessageFlags =
    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
constexpr int kSubdirFlags = O_RDONLY | O_CLOEXEC | O_DIRECTORY | O_NOFOLLOW;

// Read size for size scans and message streams: large enough that a big
// message costs few system calls, small enough for a per-session buffer.
constexpr std::size_t kReadChunk = 64 * 1024;

// RFC 1939 section 7: a unique-id is 1 to 70 octets in the range 0x21 to
// 0x7E.
bool IsValidUidl(std::string_view s) {
  if (s.empty() || s.size() > 70) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x21 && c <= 0x7e; });
}

// MD5 from libmd, not OpenSSL: the worker is exec'd for every session, and
// libcrypto alone would double its start-up work and its memory.
std::string HexMd5(std::string_view data) {
  unsigned char md[MD5_DIGEST_LENGTH];
  MD5_CTX ctx;
  MD5Init(&ctx);
  MD5Update(&ctx, reinterpret_cast<const std::uint8_t*>(data.data()),
            data.size());
  MD5Final(md, &ctx);
  unsigned int len = MD5_DIGEST_LENGTH;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; i++) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

// Calls fn(name, d_type) for each entry of the directory open as fd, from
// its start.  Returns false if the directory could not be read.
template <typename Fn>
bool ForEachEntry(int fd, Fn fn) {
  if (lseek(fd, 0, SEEK_SET) < 0) return false;
  alignas(dirent64) char buf[32 * 1024];
  for (;;) {
    ssize_t n = getdents64(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    for (ssize_t off = 0; off < n;) {
      auto* d = reinterpret_cast<dirent64*>(buf + off);
      off += d->d_reclen;
      std::string_view name(d->d_name);
      if (name.empty() || name.front() == '.') continue;
      if (!fn(name, d->d_type)) return true;
    }
  }
}

// Reads a message file once to learn its POP3 size.  Maildir messages are
// complete before they appear in new/ (delivered to tmp/, then renamed), so
// once st_size octets are in, the end-of-file read is skipped.
std::expected<std::uint64_t, int> MeasureFile(int fd, off_t file_size,
                                              std::string& buf) {
  MessageSizer sizer;
  std::uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::unexpected(errno);
    if (n == 0) return sizer.Finish();
    sizer.Feed(std::string_view(buf.data(), n));
    total += n;
    if (total == static_cast<std::uint64_t>(file_size)) return sizer.Finish();
  }
}

class FileStream final : public MessageStream {
 public:
  explicit FileStream(UniqueFd fd) : fd_(std::move(fd)) {}
  std::expected<std::size_t, MessageError> Read(std::span<char> buf) override {
    for (;;) {
      ssize_t n = read(fd_.get(), buf.data(), buf.size());
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) return std::unexpected(MessageError::kIo);
    }
  }

 private:
  UniqueFd fd_;
};

}  // namespace

std::string_view Maildir::UniquePart(std::string_view name) {
  // ':' starts the info part in the Maildir specification; '!' is the
  // separator that file systems without ':' use (Dovecot's
  // maildir_filename_separator, for one).
  std::size_t cut = name.find(':');
  std::size_t bang = name.find("!2,");
  cut = std::min(cut, bang);
  return name.substr(0, cut);
}

std::expected<std::unique_ptr<Maildir>, Maildir::Error> Maildir::Open(
    const std::string& path) {
  std::unique_ptr<Maildir> md(new Maildir());
  // The Maildir itself may be a link an admin made; message files may not.
  md->root_ = UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY));
  if (!md->root_.valid()) {
    if (errno == ENOENT) return md;
    return std::unexpected(Error::kIo);
  }

  md->lock_ = UniqueFd(openat(md->root_.get(), kLockName,
                              O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!md->lock_.valid()) return std::unexpected(Error::kIo);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(md->lock_.get(), F_OFD_SETLK, &fl) < 0) {
    if (errno == EAGAIN || errno == EACCES)
      return std::unexpected(Error::kInUse);
    return std::unexpected(Error::kIo);
  }

  for (Dir dir : {kNew, kCur}) {
    UniqueFd fd(
        openat(md->root_.get(), dir == kNew ? "new" : "cur", kSubdirFlags));
    if (!fd.valid() && errno != ENOENT) return std::unexpected(Error::kIo);
    (dir == kNew ? md->new_ : md->cur_) = std::move(fd);
    if (md->DirFd(dir) >= 0) {
      if (auto r = md->Scan(dir); !r) return std::unexpected(r.error());
    }
  }
  if (!md->AssignUidls()) return std::unexpected(Error::kIo);
  return md;
}

std::expected<void, Maildir::Error> Maildir::Scan(Dir dir) {
  int dfd = DirFd(dir);
  bool io_error = false;
  bool read_ok = ForEachEntry(dfd, [&](std::string_view name, unsigned type) {
    if (type == DT_UNKNOWN) {
      // File systems that do not fill in d_type: ask, without following.
      struct stat st;
      if (fstatat(dfd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW)) {
        if (errno == ENOENT) return true;  // gone since the listing
        io_error = true;
        return false;
      }
      if (!S_ISREG(st.st_mode)) return true;
    } else if (type != DT_REG) {
      return true;  // links, FIFOs, directories: not messages
    }
    Entry e;
    e.name = name;
    e.unique_len = static_cast<std::uint32_t>(UniquePart(name).size());
    e.dir = dir;
    entries_.push_back(std::move(e));
    return true;
  });
  if (!read_ok || io_error) return std::unexpected(Error::kIo);
  return {};
}

bool Maildir::AssignUidls() {
  std::sort(entries_.begin(), entries_.end(),
            [](const Entry& a, const Entry& b) {
              int c = a.unique().compare(b.unique());
              if (c != 0) return c < 0;
              if (a.dir != b.dir) return a.dir < b.dir;
              return a.name < b.name;
            });
  for (std::size_t i = 0; i < entries_.size(); i++) {
    Entry& e = entries_[i];
    if (i > 0 && entries_[i - 1].unique() == e.unique()) {
      e.hashed_uidl = HexMd5((e.dir == kNew ? "new/" : "cur/") + e.name);
    } else if (!IsValidUidl(e.unique())) {
      e.hashed_uidl = HexMd5(e.unique());
    } else {
      continue;
    }
    // Without a digest the name is no valid UIDL: refuse the session
    // rather than send one.
    if (e.hashed_uidl.empty()) return false;
  }
  return true;
}

std::string_view Maildir::Uidl(std::size_t i) const {
  const Entry& e = entries_[i];
  if (!e.hashed_uidl.empty()) return e.hashed_uidl;
  return e.unique();
}

bool Maildir::Relocate(std::size_t i) {
  Entry& e = entries_[i];
  std::string unique(e.unique());
  for (Dir dir : {kCur, kNew}) {
    if (DirFd(dir) < 0) continue;
    bool found = false;
    ForEachEntry(DirFd(dir), [&](std::string_view name, unsigned) {
      if (UniquePart(name) != unique) return true;
      e.name = name;
      e.dir = dir;
      found = true;
      return false;
    });
    if (found) return true;
  }
  return false;
}

std::expected<UniqueFd, MessageError> Maildir::OpenFile(std::size_t i) {
  for (int attempt = 0; attempt < 2; attempt++) {
    const Entry& e = entries_[i];
    UniqueFd fd(openat(DirFd(e.dir), e.name.c_str(), kMessageFlags));
    if (fd.valid()) {
      // A name that was a regular file at listing time may have been
      // replaced by something else (a FIFO would hang the read).
      struct stat st;
      if (fstat(fd.get(), &st) < 0) return std::unexpected(MessageError::kIo);
      if (!S_ISREG(st.st_mode)) return std::unexpected(MessageError::kGone);
      return fd;
    }
    if (errno == ELOOP) return std::unexpected(MessageError::kGone);
    if (errno != ENOENT) return std::unexpected(MessageError::kIo);
    if (attempt == 0 && !Relocate(i)) break;
  }
  return std::unexpected(MessageError::kGone);
}

std::expected<std::unique_ptr<MessageStream>, MessageError> Maildir::Open(
    std::size_t i) {
  auto fd = OpenFile(i);
  if (!fd) return std::unexpected(fd.error());
  return std::make_unique<FileStream>(std::move(*fd));
}

std::expected<std::uint64_t, MessageError> Maildir::Size(std::size_t i) {
  Entry& e = entries_[i];
  if (e.size != kUnknown) return e.size;
  auto fd = OpenFile(i);
  if (!fd) {
    // Removed by another client since login: it holds no octets now, and
    // RETR will say it is gone.
    if (fd.error() == MessageError::kGone) return e.size = 0;
    return std::unexpected(fd.error());
  }
  struct stat st;
  if (fstat(fd->get(), &st) < 0) return std::unexpected(MessageError::kIo);
  if (buf_.empty()) buf_.resize(kReadChunk);
  auto size = MeasureFile(fd->get(), st.st_size, buf_);
  if (!size) return std::unexpected(MessageError::kIo);
  return e.size = *size;
}

std::optional<std::int64_t> Maildir::DeliveredAt(std::size_t i) {
  // The file's modification time: a delivery agent writes the message once
  // and renames it into new/, and neither a move to cur/ nor a flag change
  // (both renames) touches it.
  for (int attempt = 0; attempt < 2; attempt++) {
    const Entry& e = entries_[i];
    struct stat st;
    if (fstatat(DirFd(e.dir), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      return S_ISREG(st.st_mode) ? std::optional<std::int64_t>(st.st_mtime)
                                 : std::nullopt;
    if (errno != ENOENT || attempt == 1 || !Relocate(i)) break;
  }
  return std::nullopt;
}

CommitResult Maildir::Commit(std::span<const std::size_t> doomed) {
  CommitResult result;
  for (std::size_t i : doomed) {
    bool removed = false;
    for (int attempt = 0; attempt < 2; attempt++) {
      const Entry& e = entries_[i];
      if (unlinkat(DirFd(e.dir), e.name.c_str(), 0) == 0) {
        removed = true;
        break;
      }
      if (errno != ENOENT) break;
      // Not under its old name: renamed by another client, or removed by
      // one, which is what DELE asked for.
      if (attempt == 1 || !Relocate(i)) {
        removed = true;
        break;
      }
    }
    removed ? result.removed++ : result.failed++;
  }
  if (result.failed > 0) result.problem = CommitProblem::kSomeNotRemoved;
  return result;
}

}  // namespace popguard::worker
