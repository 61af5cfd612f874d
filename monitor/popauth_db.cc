#include "monitor/popauth_db.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <initializer_list>
#include <thread>
#include <utility>

#include "common/secure.h"

namespace popguard::monitor {
namespace {

constexpr std::string_view kMagic = "popguard-popauth";
constexpr std::string_view kVersion = "1";
constexpr std::string_view kAesGcm = "aes-256-gcm";
constexpr std::size_t kKeySize = 32;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;
// Far above any real site (100,000 users is about 10 MB); a larger file is
// taken for damage rather than read into the monitor's memory.
constexpr off_t kMaxDbSize = 64 << 20;
// How long a writer waits for another popauth before giving up.
constexpr auto kLockWait = std::chrono::seconds(10);
constexpr auto kLockPoll = std::chrono::milliseconds(10);

using Unexpected = std::unexpected<PopAuthFailure>;

Unexpected Fail(PopAuthError code, std::string detail) {
  return Unexpected(PopAuthFailure{code, std::move(detail)});
}

Unexpected FailErrno(std::string_view what, const std::string& path) {
  int saved = errno;
  return Fail(PopAuthError::kIo,
              fmt::format("{}: {}: {}", path, what, std::strerror(saved)));
}

// A descriptor closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// The database key, wiped when it goes out of scope (also the moved-from
// copy).
class Key {
 public:
  Key() = default;
  Key(Key&& other) noexcept : bytes_(other.bytes_) {
    OPENSSL_cleanse(other.bytes_.data(), other.bytes_.size());
  }
  Key& operator=(Key&&) = delete;
  ~Key() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
  unsigned char* data() { return bytes_.data(); }
  const unsigned char* data() const { return bytes_.data(); }

 private:
  std::array<unsigned char, kKeySize> bytes_{};
};

struct Entry {
  std::string name;
  std::string mechanism;
  std::string data;  // base64, checked for syntax when read
  int line = 0;
};

struct Database {
  std::vector<Entry> entries;

  Entry* Find(std::string_view name) {
    for (Entry& e : entries) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }
};

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// `pop` where it exists (Qpopper's convention), else root.
Owner DatabaseOwner() {
  passwd pw{};
  passwd* found = nullptr;
  std::array<char, 4096> buf{};
  if (getpwnam_r("pop", &pw, buf.data(), buf.size(), &found) == 0 && found) {
    return Owner{pw.pw_uid, pw.pw_gid};
  }
  return Owner{0, 0};
}

std::string DirectoryOf(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes file text safe to quote in a message: printable ASCII, cut short.
std::string Quote(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) {
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  if (s.size() > 40) out += "...";
  return out;
}

// Checks what was opened: a plain file, owned as it must be, with no access
// for group or others.  `owners` lists the acceptable owners.
std::expected<void, PopAuthFailure> CheckFile(
    const struct stat& st, const std::string& path, bool check_owner,
    std::initializer_list<uid_t> owners, std::string_view owner_names) {
  if (!S_ISREG(st.st_mode)) {
    return Fail(PopAuthError::kBadPermissions,
                fmt::format("{}: not a plain file", path));
  }
  if (check_owner) {
    bool owner_ok = false;
    for (uid_t u : owners) owner_ok = owner_ok || st.st_uid == u;
    if (!owner_ok) {
      return Fail(PopAuthError::kBadPermissions,
                  fmt::format("{}: owned by uid {}, must be owned by {}", path,
                              st.st_uid, owner_names));
    }
  }
  if ((st.st_mode & 077) != 0) {
    return Fail(PopAuthError::kBadPermissions,
                fmt::format("{}: mode {:04o} gives group or others access; "
                            "it must be 0600",
                            path, st.st_mode & 07777));
  }
  return {};
}

std::string DbOwnerNames(const Owner& owner) {
  return owner.uid == 0 ? "root" : "pop or root";
}

// Opens an existing file without following a symbolic link; `missing` is
// the error when it does not exist.
std::expected<Fd, PopAuthFailure> OpenExisting(const std::string& path,
                                               PopAuthError missing,
                                               std::string_view hint) {
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd >= 0) return Fd(fd);
  if (errno == ENOENT) {
    return Fail(missing, fmt::format("{}: does not exist{}", path, hint));
  }
  if (errno == ELOOP) {
    return Fail(PopAuthError::kBadPermissions,
                fmt::format("{}: is a symbolic link", path));
  }
  return FailErrno("cannot open", path);
}

std::expected<std::string, PopAuthFailure> ReadAll(int fd,
                                                   const std::string& path,
                                                   off_t max) {
  std::string text;
  std::array<char, 65536> buf;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("cannot read", path);
    if (n == 0) break;
    if (static_cast<off_t>(text.size() + n) > max) {
      return Fail(PopAuthError::kCorrupt,
                  fmt::format("{}: larger than {} bytes", path, max));
    }
    text.append(buf.data(), n);
  }
  return text;
}

std::expected<Key, PopAuthFailure> ReadKey(const PopAuthFiles& files) {
  const std::string& path = files.key_path;
  auto fd =
      OpenExisting(path, PopAuthError::kNoKey, " (popauth -init creates it)");
  if (!fd) return std::unexpected(fd.error());

  struct stat st {};
  if (fstat(fd->get(), &st) != 0) return FailErrno("cannot stat", path);
  auto ok = CheckFile(st, path, files.check_owner, {0}, "root");
  if (!ok) return std::unexpected(ok.error());
  if (st.st_size != static_cast<off_t>(kKeySize)) {
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}: holds {} bytes, a key is {}", path, st.st_size,
                            kKeySize));
  }

  Key key;
  std::size_t got = 0;
  while (got < kKeySize) {
    ssize_t n = read(fd->get(), key.data() + got, kKeySize - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("cannot read", path);
    if (n == 0) {
      return Fail(PopAuthError::kCorrupt,
                  fmt::format("{}: shorter than {} bytes", path, kKeySize));
    }
    got += static_cast<std::size_t>(n);
  }
  return key;
}

// Decodes strict base64 (a multiple of 4 characters, padding only at the
// end) into bytes.
std::optional<std::string> DecodeBase64(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                 (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (c == '=' && i + 2 >= in.size()) {
      ++pad;
    } else if (!alnum || pad > 0) {
      return std::nullopt;
    }
  }
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  return out;
}

std::string EncodeBase64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::expected<Entry, PopAuthFailure> ParseEntry(std::string_view line,
                                                int number,
                                                const std::string& path) {
  auto bad = [&](std::string_view what) {
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}:{}: {}", path, number, what));
  };
  std::size_t c1 = line.find(':');
  std::size_t c2 = c1 == line.npos ? line.npos : line.find(':', c1 + 1);
  if (c2 == line.npos) return bad("not 'name:mechanism:data'");

  Entry e{std::string(line.substr(0, c1)),
          std::string(line.substr(c1 + 1, c2 - c1 - 1)),
          std::string(line.substr(c2 + 1)), number};
  if (!ValidPopAuthName(e.name)) {
    return bad(fmt::format("bad user name '{}'", Quote(e.name)));
  }
  if (e.mechanism != kAesGcm) {
    return bad(
        fmt::format("unknown mechanism '{}' (written by a newer popguard?)",
                    Quote(e.mechanism)));
  }
  auto blob = DecodeBase64(e.data);
  if (!blob || blob->size() <= kNonceSize + kTagSize) {
    return bad(
        fmt::format("entry for '{}' is not valid base64 of a sealed "
                    "secret",
                    e.name));
  }
  return e;
}

std::expected<Database, PopAuthFailure> ParseDatabase(std::string_view text,
                                                      const std::string& path) {
  std::size_t eol = text.find('\n');
  std::string_view header = text.substr(0, eol);
  std::string magic_sp = std::string(kMagic) + " ";
  if (!header.starts_with(magic_sp)) {
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}:1: not a popguard pop.auth file (a Qpopper "
                            "database cannot be read; make a new one with "
                            "popauth -init)",
                            path));
  }
  std::string_view version = header.substr(magic_sp.size());
  if (version != kVersion) {
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}:1: format version '{}' is not supported "
                            "(this popguard reads version {})",
                            path, Quote(version), kVersion));
  }

  Database db;
  int number = 1;
  while (eol != text.npos) {
    std::size_t start = eol + 1;
    if (start == text.size()) break;
    ++number;
    eol = text.find('\n', start);
    if (eol == text.npos) {
      return Fail(PopAuthError::kCorrupt,
                  fmt::format("{}:{}: last line has no newline (the file "
                              "was cut short?)",
                              path, number));
    }
    auto entry = ParseEntry(text.substr(start, eol - start), number, path);
    if (!entry) return std::unexpected(entry.error());
    if (db.Find(entry->name)) {
      return Fail(PopAuthError::kCorrupt,
                  fmt::format("{}:{}: second entry for '{}'", path, number,
                              entry->name));
    }
    db.entries.push_back(std::move(*entry));
  }
  if (eol == text.npos && number == 1) {
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}:1: header has no newline", path));
  }
  return db;
}

std::expected<Database, PopAuthFailure> ReadDatabase(
    const PopAuthFiles& files) {
  const std::string& path = files.db_path;
  auto fd = OpenExisting(path, PopAuthError::kNoDatabase,
                         " (run popauth -init to create it)");
  if (!fd) return std::unexpected(fd.error());

  struct stat st {};
  if (fstat(fd->get(), &st) != 0) return FailErrno("cannot stat", path);
  Owner owner = DatabaseOwner();
  auto ok = CheckFile(st, path, files.check_owner, {owner.uid, 0},
                      DbOwnerNames(owner));
  if (!ok) return std::unexpected(ok.error());

  auto text = ReadAll(fd->get(), path, kMaxDbSize);
  if (!text) return std::unexpected(text.error());
  return ParseDatabase(*text, path);
}

std::string SerializeDatabase(const Database& db) {
  std::string out = fmt::format("{} {}\n", kMagic, kVersion);
  for (const Entry& e : db.entries) {
    out += fmt::format("{}:{}:{}\n", e.name, e.mechanism, e.data);
  }
  return out;
}

std::expected<std::string, PopAuthFailure> Seal(const Key& key,
                                                std::string_view name,
                                                std::string_view secret) {
  std::string blob(kNonceSize + secret.size() + kTagSize, '\0');
  auto* out = reinterpret_cast<unsigned char*>(blob.data());
  if (RAND_bytes(out, kNonceSize) != 1) {
    return Fail(PopAuthError::kIo, "random number generator failed");
  }

  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  int final_len = 0;
  bool ok =
      ctx != nullptr &&
      EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), out) ==
          1 &&
      EVP_EncryptUpdate(ctx, nullptr, &len,
                        reinterpret_cast<const unsigned char*>(name.data()),
                        static_cast<int>(name.size())) == 1 &&
      EVP_EncryptUpdate(ctx, out + kNonceSize, &len,
                        reinterpret_cast<const unsigned char*>(secret.data()),
                        static_cast<int>(secret.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx, out + kNonceSize + len, &final_len) == 1 &&
      static_cast<std::size_t>(len + final_len) == secret.size() &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize,
                          out + kNonceSize + secret.size()) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return Fail(PopAuthError::kIo, "encryption failed");
  return EncodeBase64(blob);
}

std::expected<std::string, PopAuthFailure> Open(const Key& key, const Entry& e,
                                                const std::string& path) {
  auto blob = DecodeBase64(e.data);
  if (!blob || blob->size() <= kNonceSize + kTagSize) {
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}:{}: bad encoding", path, e.line));
  }
  auto* in = reinterpret_cast<unsigned char*>(blob->data());
  std::size_t ct_size = blob->size() - kNonceSize - kTagSize;
  // Capacity beyond the small-string buffer keeps the secret on the heap,
  // so moving it to the caller leaves no unwiped copy on this stack.
  std::string secret;
  secret.reserve(std::max<std::size_t>(ct_size, 64));
  secret.resize(ct_size);
  auto* out = reinterpret_cast<unsigned char*>(secret.data());

  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  int final_len = 0;
  bool ok =
      ctx != nullptr &&
      EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), in) ==
          1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize,
                          in + kNonceSize + ct_size) == 1 &&
      EVP_DecryptUpdate(ctx, nullptr, &len,
                        reinterpret_cast<const unsigned char*>(e.name.data()),
                        static_cast<int>(e.name.size())) == 1 &&
      EVP_DecryptUpdate(ctx, out, &len, in + kNonceSize,
                        static_cast<int>(ct_size)) == 1 &&
      EVP_DecryptFinal_ex(ctx, out + len, &final_len) == 1 &&
      static_cast<std::size_t>(len + final_len) == ct_size;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    Wipe(secret);
    return Fail(PopAuthError::kCorrupt,
                fmt::format("{}:{}: the entry for '{}' does not decrypt "
                            "(wrong key file, or the line was altered or "
                            "moved)",
                            path, e.line, e.name));
  }
  return secret;
}

std::expected<void, PopAuthFailure> SyncDirectory(const std::string& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return FailErrno("cannot open directory", dir);
  if (fsync(fd.get()) != 0) return FailErrno("cannot fsync directory", dir);
  return {};
}

// Writes `content` to `tmp` (a fresh file, mode 0600, owned by `owner`
// unless ownership is not checked) and fsyncs it.  The caller holds the
// lock that makes `tmp` its own, so a leftover from a killed run is removed
// first.
std::expected<void, PopAuthFailure> WriteTemp(const std::string& tmp,
                                              std::string_view content,
                                              const Owner& owner,
                                              bool set_owner) {
  if (unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return FailErrno("cannot remove stale temporary file", tmp);
  }
  Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
             0600));
  if (fd.get() < 0) return FailErrno("cannot create", tmp);

  auto fail = [&](std::string_view what) {
    auto err = FailErrno(what, tmp);
    unlink(tmp.c_str());
    return err;
  };
  if (set_owner && fchown(fd.get(), owner.uid, owner.gid) != 0) {
    return fail("cannot change owner");
  }
  if (fchmod(fd.get(), 0600) != 0) return fail("cannot change mode");
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd.get()) != 0) return fail("cannot fsync");
  if (close(fd.release()) != 0) return fail("cannot close");
  return {};
}

std::expected<void, PopAuthFailure> WriteDatabase(const PopAuthFiles& files,
                                                  const Database& db) {
  std::string tmp = files.db_path + ".tmp";
  auto written =
      WriteTemp(tmp, SerializeDatabase(db), DatabaseOwner(), files.check_owner);
  if (!written) return written;
  if (rename(tmp.c_str(), files.db_path.c_str()) != 0) {
    auto err = FailErrno("cannot rename temporary file over", files.db_path);
    unlink(tmp.c_str());
    return err;
  }
  return SyncDirectory(DirectoryOf(files.db_path));
}

// Holds the writers' lock for as long as it lives.
std::expected<Fd, PopAuthFailure> LockDatabase(const PopAuthFiles& files) {
  std::string path = files.db_path + ".lock";
  Fd fd(open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.get() < 0) return FailErrno("cannot open lock file", path);

  auto deadline = std::chrono::steady_clock::now() + kLockWait;
  while (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      return FailErrno("cannot lock", path);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(PopAuthError::kLocked,
                  fmt::format("{}: another popauth has held the lock for "
                              "{} s; try again",
                              path, kLockWait.count()));
    }
    std::this_thread::sleep_for(kLockPoll);
  }
  return fd;
}

std::expected<void, PopAuthFailure> EnsureDirectory(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return {};
    return Fail(PopAuthError::kIo, fmt::format("{}: not a directory", dir));
  }
  if (errno != ENOENT) return FailErrno("cannot stat", dir);
  if (mkdir(dir.c_str(), 0755) != 0) return FailErrno("cannot create", dir);
  if (chmod(dir.c_str(), 0755) != 0) return FailErrno("cannot chmod", dir);
  return {};
}

// Creates the key file unless one exists.  link() rather than rename()
// puts it in place, so a key that appeared meanwhile is never replaced:
// replacing a key loses every secret sealed under it.
std::expected<void, PopAuthFailure> CreateKeyIfMissing(
    const PopAuthFiles& files) {
  const std::string& path = files.key_path;
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) return {};
  if (errno != ENOENT) return FailErrno("cannot stat", path);

  std::string dir = DirectoryOf(path);
  auto made = EnsureDirectory(dir);
  if (!made) return made;

  std::string key(kKeySize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), kKeySize) != 1) {
    return Fail(PopAuthError::kIo, "random number generator failed");
  }
  std::string tmp = path + ".tmp";
  auto written = WriteTemp(tmp, key, Owner{0, 0}, files.check_owner);
  Wipe(key);
  if (!written) return written;

  int linked = link(tmp.c_str(), path.c_str());
  int link_errno = errno;
  unlink(tmp.c_str());
  if (linked != 0 && link_errno != EEXIST) {
    errno = link_errno;
    return FailErrno("cannot create", path);
  }
  return SyncDirectory(dir);
}

std::expected<void, PopAuthFailure> RequireDatabase(const PopAuthFiles& files) {
  struct stat st {};
  if (lstat(files.db_path.c_str(), &st) == 0) return {};
  if (errno == ENOENT) {
    return Fail(PopAuthError::kNoDatabase,
                fmt::format("{}: does not exist (run popauth -init to "
                            "create it)",
                            files.db_path));
  }
  return FailErrno("cannot stat", files.db_path);
}

std::expected<void, PopAuthFailure> CheckName(std::string_view user) {
  if (ValidPopAuthName(user)) return {};
  return Fail(PopAuthError::kBadName,
              fmt::format("'{}' is not a valid user name", Quote(user)));
}

void AddExposure(std::vector<std::string>& out, const std::string& path,
                 bool check_owner, std::initializer_list<uid_t> owners,
                 std::string_view owner_names) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISLNK(st.st_mode)) {
    out.push_back(fmt::format("{}: is a symbolic link", path));
    return;
  }
  auto ok = CheckFile(st, path, check_owner, owners, owner_names);
  if (!ok) out.push_back(ok.error().detail);
}

}  // namespace

std::string_view PopAuthErrorText(PopAuthError e) {
  switch (e) {
    case PopAuthError::kNoDatabase: return "no pop.auth database";
    case PopAuthError::kNoKey: return "no pop.auth key file";
    case PopAuthError::kBadPermissions: return "wrong owner or mode";
    case PopAuthError::kCorrupt: return "pop.auth is corrupt";
    case PopAuthError::kIo: return "I/O error";
    case PopAuthError::kLocked: return "pop.auth is locked";
    case PopAuthError::kNoSuchUser: return "no such user in pop.auth";
    case PopAuthError::kExists: return "pop.auth already exists";
    case PopAuthError::kBadName: return "invalid user name";
  }
  return "unknown error";
}

bool ValidPopAuthName(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserName) return false;
  char first = name.front();
  if (!((first >= 'a' && first <= 'z') || first == '_')) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::expected<std::optional<std::string>, PopAuthFailure> LookupSecretIn(
    const PopAuthFiles& files, std::string_view user) {
  auto key = ReadKey(files);
  if (!key) return std::unexpected(key.error());
  auto db = ReadDatabase(files);
  if (!db) return std::unexpected(db.error());

  // A name no entry could have is simply not found: it came from a client.
  const Entry* e = ValidPopAuthName(user) ? db->Find(user) : nullptr;
  if (e == nullptr) return std::optional<std::string>();
  auto secret = Open(*key, *e, files.db_path);
  if (!secret) return std::unexpected(secret.error());
  return std::optional<std::string>(std::move(*secret));
}

std::expected<std::optional<std::string>, PopAuthError> LookupSecret(
    const std::string& db_path, const std::string& key_path,
    std::string_view user) {
  PopAuthFiles files{db_path, key_path, true};
  auto found = LookupSecretIn(files, user);
  if (!found) return std::unexpected(found.error().code);
  return std::move(*found);
}

std::expected<void, PopAuthFailure> VerifyPopAuthFiles(
    const PopAuthFiles& files) {
  auto key = ReadKey(files);
  if (!key) return std::unexpected(key.error());
  auto db = ReadDatabase(files);
  if (!db) return std::unexpected(db.error());
  return {};
}

std::expected<void, PopAuthFailure> InitDatabase(const PopAuthFiles& files,
                                                 bool keep_existing) {
  auto lock = LockDatabase(files);
  if (!lock) return std::unexpected(lock.error());

  if (keep_existing) {
    struct stat st {};
    if (lstat(files.db_path.c_str(), &st) == 0) {
      return Fail(
          PopAuthError::kExists,
          fmt::format("{}: already exists; left as it is", files.db_path));
    }
  }
  auto created = CreateKeyIfMissing(files);
  if (!created) return created;
  auto key = ReadKey(files);
  if (!key) return std::unexpected(key.error());
  return WriteDatabase(files, Database{});
}

std::expected<bool, PopAuthFailure> SetSecret(const PopAuthFiles& files,
                                              std::string_view user,
                                              std::string_view secret) {
  auto name_ok = CheckName(user);
  if (!name_ok) return std::unexpected(name_ok.error());
  if (secret.empty()) {
    return Fail(PopAuthError::kIo, "refusing to store an empty secret");
  }
  auto exists = RequireDatabase(files);
  if (!exists) return std::unexpected(exists.error());
  auto lock = LockDatabase(files);
  if (!lock) return std::unexpected(lock.error());

  auto key = ReadKey(files);
  if (!key) return std::unexpected(key.error());
  auto db = ReadDatabase(files);
  if (!db) return std::unexpected(db.error());
  auto sealed = Seal(*key, user, secret);
  if (!sealed) return std::unexpected(sealed.error());

  Entry* e = db->Find(user);
  bool replaced = e != nullptr;
  if (replaced) {
    e->mechanism = kAesGcm;
    e->data = std::move(*sealed);
  } else {
    db->entries.push_back(
        Entry{std::string(user), std::string(kAesGcm), std::move(*sealed)});
  }
  auto written = WriteDatabase(files, *db);
  if (!written) return std::unexpected(written.error());
  return replaced;
}

std::expected<void, PopAuthFailure> DeleteUser(const PopAuthFiles& files,
                                               std::string_view user) {
  auto name_ok = CheckName(user);
  if (!name_ok) return name_ok;
  auto exists = RequireDatabase(files);
  if (!exists) return exists;
  auto lock = LockDatabase(files);
  if (!lock) return std::unexpected(lock.error());

  auto db = ReadDatabase(files);
  if (!db) return std::unexpected(db.error());
  std::size_t before = db->entries.size();
  std::erase_if(db->entries, [&](const Entry& e) { return e.name == user; });
  if (db->entries.size() == before) {
    return Fail(PopAuthError::kNoSuchUser,
                fmt::format("{}: no entry for '{}'", files.db_path, user));
  }
  return WriteDatabase(files, *db);
}

std::expected<std::vector<std::string>, PopAuthFailure> ListUsers(
    const PopAuthFiles& files) {
  auto db = ReadDatabase(files);
  if (!db) return std::unexpected(db.error());
  std::vector<std::string> names;
  names.reserve(db->entries.size());
  for (const Entry& e : db->entries) names.push_back(e.name);
  return names;
}

std::vector<std::string> CheckPopAuthExposure(const PopAuthFiles& files) {
  std::vector<std::string> out;
  Owner owner = DatabaseOwner();
  AddExposure(out, files.db_path, files.check_owner, {owner.uid, 0},
              DbOwnerNames(owner));
  AddExposure(out, files.key_path, files.check_owner, {0}, "root");
  return out;
}

}  // namespace popguard::monitor
