#include "monitor/penalty.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>
#include <vector>

namespace popguard::monitor {
namespace {

// The file's layout.  8192 records of 64 bytes in buckets of 16, and 4096
// session slots of 32 bytes: 640 KiB in /run, whatever the traffic.  A
// site with more than 4096 sessions at once on one host has outgrown the
// slot count (those sessions are still served, only not counted).
constexpr char kMagic[8] = {'P', 'G', 'P', 'E', 'N', 'A', 'L', '1'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kEntries = 8192;
constexpr std::uint32_t kBucket = 16;
constexpr std::uint32_t kSlots = 4096;

enum Kind : std::uint8_t { kFree = 0, kAddress = 1, kUser = 2 };

struct Header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t entries;
  std::uint32_t slots;
  std::uint32_t reserved;
  unsigned char hash_key[16];
  unsigned char pad[24];
};

struct Entry {
  std::uint8_t kind;
  std::uint8_t reserved[3];
  std::uint32_t failures;
  unsigned char key[16];
  std::int64_t last_failure;
  std::int64_t banned_until;
  std::int64_t last_login;
  std::int64_t last_seen;
  unsigned char pad[8];
};

struct Slot {
  unsigned char key[16];
  std::int32_t pid;
  std::uint32_t reserved;
  std::uint64_t start_ticks;  // 0: /proc was unreadable; pid alone
};

static_assert(sizeof(Header) == 64 && sizeof(Entry) == 64 &&
              sizeof(Slot) == 32);

constexpr off_t kEntriesAt = sizeof(Header);
constexpr off_t kSlotsAt = kEntriesAt + off_t{kEntries} * sizeof(Entry);
constexpr off_t kFileSize = kSlotsAt + off_t{kSlots} * sizeof(Slot);

bool ReadAt(int fd, void* buf, std::size_t n, off_t at) {
  return pread(fd, buf, n, at) == static_cast<ssize_t>(n);
}

bool WriteAt(int fd, const void* buf, std::size_t n, off_t at) {
  return pwrite(fd, buf, n, at) == static_cast<ssize_t>(n);
}

// When the kernel started `pid`, in clock ticks since boot: with the pid,
// it names one process, where a pid alone may have been reused.
std::optional<std::uint64_t> StartTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  std::size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  // Field 22, starttime, is the 20th after the command name.
  for (int i = 0; i < 20; i++)
    if (!(fields >> field)) return std::nullopt;
  char* end = nullptr;
  unsigned long long ticks = std::strtoull(field.c_str(), &end, 10);
  if (*end != '\0' || ticks == 0) return std::nullopt;
  return ticks;
}

bool Alive(const Slot& s) {
  if (s.pid <= 0) return false;
  if (s.start_ticks == 0) return kill(s.pid, 0) == 0 || errno == EPERM;
  auto ticks = StartTicks(s.pid);
  return ticks && *ticks == s.start_ticks;
}

// Nothing left to enforce: no ban running, no failure recent enough to
// count, no login recent enough to delay the next.
bool Idle(const Entry& e, const PenaltySettings& s, std::int64_t now) {
  if (e.kind == kFree) return true;
  if (e.banned_until > now) return false;
  if (e.failures > 0 && now - e.last_failure <= s.ban_window_s) return false;
  return !(e.kind == kUser && s.login_delay_s > 0 &&
           now - e.last_login < s.login_delay_s);
}

std::array<unsigned char, 32> Digest(const Header& h, std::string_view tag,
                                     const void* data, std::size_t n) {
  std::string input(reinterpret_cast<const char*>(h.hash_key),
                    sizeof h.hash_key);
  input.append(tag);
  input.append(static_cast<const char*>(data), n);
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), out.data(), &len, EVP_sha256(),
             nullptr);
  return out;
}

struct RecordKey {
  Kind kind;
  unsigned char key[16];
};

RecordKey AddressRecord(const AddressKey& a) {
  RecordKey k{kAddress, {}};
  std::memcpy(k.key, a.bytes.data(), sizeof k.key);
  return k;
}

// A user is kept as a keyed digest of the name: a fixed size, and a copy
// of the file does not list who reads mail here.
RecordKey UserRecord(const Header& h, std::string_view user) {
  auto d = Digest(h, "user", user.data(), user.size());
  RecordKey k{kUser, {}};
  std::memcpy(k.key, d.data(), sizeof k.key);
  return k;
}

off_t BucketOffset(const Header& h, const RecordKey& k) {
  auto d = Digest(h, k.kind == kUser ? "U" : "A", k.key, sizeof k.key);
  std::uint64_t n;
  std::memcpy(&n, d.data(), sizeof n);
  std::uint64_t bucket = n % (kEntries / kBucket);
  return kEntriesAt + static_cast<off_t>(bucket * kBucket * sizeof(Entry));
}

bool Matches(const Entry& e, const RecordKey& k) {
  return e.kind == k.kind && std::memcmp(e.key, k.key, sizeof k.key) == 0;
}

}  // namespace

// The file locked for one operation, with its header read.
class PenaltyTable::Locked {
 public:
  explicit Locked(int fd) : fd_(fd) {
    while ((locked_ = flock(fd_, LOCK_EX) == 0) == false && errno == EINTR) {
    }
    header_ok_ = locked_ && ReadAt(fd_, &header_, sizeof header_, 0);
  }
  ~Locked() {
    if (locked_) flock(fd_, LOCK_UN);
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

  std::optional<PenaltyError> error() const {
    if (!locked_) return PenaltyError::kLock;
    if (!header_ok_) return PenaltyError::kIo;
    return std::nullopt;
  }
  const Header& header() const { return header_; }

  // The bucket that holds (or would hold) k.
  bool ReadBucket(const RecordKey& k, Entry (&bucket)[kBucket],
                  off_t* at) const {
    *at = BucketOffset(header_, k);
    return ReadAt(fd_, bucket, sizeof bucket, *at);
  }

  bool WriteEntry(const Entry& e, off_t bucket_at, std::size_t i) const {
    return WriteAt(fd_, &e, sizeof e,
                   bucket_at + static_cast<off_t>(i * sizeof(Entry)));
  }

  bool ReadSlots(std::vector<Slot>* slots) const {
    slots->resize(kSlots);
    return ReadAt(fd_, slots->data(), kSlots * sizeof(Slot), kSlotsAt);
  }

  bool WriteSlot(const Slot& s, std::size_t i) const {
    return WriteAt(fd_, &s, sizeof s,
                   kSlotsAt + static_cast<off_t>(i * sizeof(Slot)));
  }

 private:
  int fd_;
  bool locked_ = false;
  bool header_ok_ = false;
  Header header_{};
};

namespace {

// The record for k in the bucket: the one it has, else the least useful
// (free, then idle, then counting failures or a login, then banned; among
// equals the one seen longest ago).  A flood of single failures from new
// addresses thus pushes out other counts before it pushes out a ban.  A
// record taken over starts empty.
std::size_t Claim(Entry (&bucket)[kBucket], const RecordKey& k,
                  const PenaltySettings& s, std::int64_t now) {
  for (std::size_t i = 0; i < kBucket; i++)
    if (Matches(bucket[i], k)) return i;
  std::size_t pick = 0;
  auto rank = [&](const Entry& e) {
    int worth = e.kind == kFree        ? 0
                : Idle(e, s, now)      ? 1
                : e.banned_until > now ? 3
                                       : 2;
    return std::pair{worth, e.last_seen};
  };
  for (std::size_t i = 1; i < kBucket; i++)
    if (rank(bucket[i]) < rank(bucket[pick])) pick = i;
  bucket[pick] = Entry{};
  bucket[pick].kind = k.kind;
  std::memcpy(bucket[pick].key, k.key, sizeof k.key);
  return pick;
}

std::optional<std::size_t> Find(const Entry (&bucket)[kBucket],
                                const RecordKey& k) {
  for (std::size_t i = 0; i < kBucket; i++)
    if (Matches(bucket[i], k)) return i;
  return std::nullopt;
}

// Lays the file out afresh: a new hash key, every record and slot empty.
bool Layout(int fd) {
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.entries = kEntries;
  h.slots = kSlots;
  if (RAND_bytes(h.hash_key, sizeof h.hash_key) != 1) return false;
  return ftruncate(fd, 0) == 0 && ftruncate(fd, kFileSize) == 0 &&
         WriteAt(fd, &h, sizeof h, 0) && fsync(fd) == 0;
}

bool LaidOut(int fd) {
  struct stat st;
  Header h{};
  return fstat(fd, &st) == 0 && st.st_size == kFileSize &&
         ReadAt(fd, &h, sizeof h, 0) &&
         std::memcmp(h.magic, kMagic, sizeof kMagic) == 0 &&
         h.version == kVersion && h.entries == kEntries && h.slots == kSlots;
}

}  // namespace

std::optional<AddressKey> KeyForAddress(std::string_view numeric) {
  std::string text(numeric);
  AddressKey k;
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    k.bytes[10] = k.bytes[11] = 0xff;
    std::memcpy(k.bytes.data() + 12, &a4, 4);
    return k;
  }
  if (inet_pton(AF_INET6, text.c_str(), k.bytes.data()) != 1)
    return std::nullopt;
  // An IPv4-mapped address is the IPv4 client it carries, kept whole.
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0,    0,
                                                0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(k.bytes.data(), kMapped, sizeof kMapped) != 0)
    std::fill(k.bytes.begin() + 8, k.bytes.end(), 0);
  return k;
}

PenaltySettings PenaltySettings::From(const Config& c) {
  PenaltySettings s;
  s.fail_delay_ms = c.fail_delay_ms;
  s.max_delay_ms = c.max_delay_ms;
  s.ban_after_failures = c.ban_after_failures;
  s.ban_window_s = c.ban_window_s;
  s.ban_time_s = c.ban_time_s;
  s.max_sessions_per_address = c.max_sessions_per_address;
  s.login_delay_s = c.login_delay_s;
  return s;
}

std::chrono::milliseconds FailureDelay(const PenaltySettings& s,
                                       std::uint32_t failures) {
  std::uint64_t ms = s.fail_delay_ms;
  for (std::uint32_t i = 1; i < failures && ms < s.max_delay_ms; i++) ms *= 2;
  return std::chrono::milliseconds(std::min<std::uint64_t>(ms, s.max_delay_ms));
}

std::string_view PenaltyErrorText(PenaltyError e) {
  switch (e) {
    case PenaltyError::kOpen: return "cannot create or open the file";
    case PenaltyError::kNotSafe:
      return "not a regular file owned by root with mode 0600";
    case PenaltyError::kLock: return "cannot lock the file";
    case PenaltyError::kIo: return "short read or write";
  }
  return "unknown error";
}

std::int64_t PenaltyNow() { return static_cast<std::int64_t>(time(nullptr)); }

std::expected<PenaltyTable, PenaltyError> PenaltyTable::Open(
    const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return std::unexpected(PenaltyError::kOpen);
  }
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return std::unexpected(PenaltyError::kOpen);
  PenaltyTable table(fd);

  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 077) != 0)
    return std::unexpected(PenaltyError::kNotSafe);

  // The first process to open a new (or foreign) file lays it out; the
  // lock makes the others wait and then find it ready.
  if (flock(fd, LOCK_EX) != 0) return std::unexpected(PenaltyError::kLock);
  bool ok = LaidOut(fd) || Layout(fd);
  flock(fd, LOCK_UN);
  if (!ok) return std::unexpected(PenaltyError::kIo);
  return table;
}

PenaltyTable::PenaltyTable(PenaltyTable&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

PenaltyTable& PenaltyTable::operator=(PenaltyTable&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

PenaltyTable::~PenaltyTable() {
  if (fd_ >= 0) close(fd_);
}

std::expected<PenaltyTable::Admission, PenaltyError> PenaltyTable::Admit(
    const AddressKey& key, pid_t pid, const PenaltySettings& s,
    std::int64_t now) {
  Locked lock(fd_);
  if (auto err = lock.error()) return std::unexpected(*err);
  Admission out;

  RecordKey rk = AddressRecord(key);
  Entry bucket[kBucket];
  off_t at;
  if (!lock.ReadBucket(rk, bucket, &at))
    return std::unexpected(PenaltyError::kIo);
  if (auto i = Find(bucket, rk); i && bucket[*i].banned_until > now) {
    out.verdict = Admission::Verdict::kBanned;
    out.banned_until = bucket[*i].banned_until;
    return out;
  }

  std::vector<Slot> slots;
  if (!lock.ReadSlots(&slots)) return std::unexpected(PenaltyError::kIo);
  std::optional<std::size_t> free_slot;
  for (std::size_t i = 0; i < slots.size(); i++) {
    const Slot& slot = slots[i];
    bool same =
        slot.pid > 0 && std::memcmp(slot.key, rk.key, sizeof rk.key) == 0;
    // Liveness costs a /proc read: only for slots that count, or until a
    // free one is found.
    if (!same && free_slot) continue;
    bool alive = Alive(slot);
    if (same && alive) out.sessions++;
    if (!alive && !free_slot) free_slot = i;
  }
  if (s.max_sessions_per_address > 0 &&
      out.sessions >= s.max_sessions_per_address) {
    out.verdict = Admission::Verdict::kTooManySessions;
    return out;
  }
  if (free_slot) {
    Slot mine{};
    std::memcpy(mine.key, rk.key, sizeof rk.key);
    mine.pid = pid;
    mine.start_ticks = StartTicks(pid).value_or(0);
    if (!lock.WriteSlot(mine, *free_slot))
      return std::unexpected(PenaltyError::kIo);
    out.registered = true;
  }
  return out;
}

std::expected<void, PenaltyError> PenaltyTable::Leave(pid_t pid) {
  Locked lock(fd_);
  if (auto err = lock.error()) return std::unexpected(*err);
  std::vector<Slot> slots;
  if (!lock.ReadSlots(&slots)) return std::unexpected(PenaltyError::kIo);
  std::uint64_t ticks = StartTicks(pid).value_or(0);
  for (std::size_t i = 0; i < slots.size(); i++) {
    if (slots[i].pid != pid || slots[i].start_ticks != ticks) continue;
    if (!lock.WriteSlot(Slot{}, i)) return std::unexpected(PenaltyError::kIo);
  }
  return {};
}

std::expected<PenaltyTable::Failure, PenaltyError> PenaltyTable::RecordFailure(
    const AddressKey& key, const PenaltySettings& s, std::int64_t now) {
  Locked lock(fd_);
  if (auto err = lock.error()) return std::unexpected(*err);
  RecordKey rk = AddressRecord(key);
  Entry bucket[kBucket];
  off_t at;
  if (!lock.ReadBucket(rk, bucket, &at))
    return std::unexpected(PenaltyError::kIo);
  std::size_t i = Claim(bucket, rk, s, now);
  Entry& e = bucket[i];

  if (now - e.last_failure > s.ban_window_s || now < e.last_failure)
    e.failures = 0;
  if (e.failures < UINT32_MAX) e.failures++;
  e.last_failure = e.last_seen = now;
  Failure out;
  out.failures = e.failures;
  out.delay = FailureDelay(s, e.failures);
  if (s.ban_after_failures > 0 && e.failures >= s.ban_after_failures &&
      e.banned_until <= now) {
    e.banned_until = now + s.ban_time_s;
    out.banned_now = true;
  }
  out.banned_until = e.banned_until > now ? e.banned_until : 0;
  if (!lock.WriteEntry(e, at, i)) return std::unexpected(PenaltyError::kIo);
  return out;
}

std::expected<std::optional<std::int64_t>, PenaltyError>
PenaltyTable::BannedUntil(const AddressKey& key, const PenaltySettings&,
                          std::int64_t now) {
  Locked lock(fd_);
  if (auto err = lock.error()) return std::unexpected(*err);
  RecordKey rk = AddressRecord(key);
  Entry bucket[kBucket];
  off_t at;
  if (!lock.ReadBucket(rk, bucket, &at))
    return std::unexpected(PenaltyError::kIo);
  auto i = Find(bucket, rk);
  if (!i || bucket[*i].banned_until <= now) return std::nullopt;
  return bucket[*i].banned_until;
}

std::expected<std::int64_t, PenaltyError> PenaltyTable::CheckLogin(
    std::string_view user, const PenaltySettings& s, std::int64_t now) {
  if (s.login_delay_s <= 0) return 0;
  Locked lock(fd_);
  if (auto err = lock.error()) return std::unexpected(*err);
  RecordKey rk = UserRecord(lock.header(), user);
  Entry bucket[kBucket];
  off_t at;
  if (!lock.ReadBucket(rk, bucket, &at))
    return std::unexpected(PenaltyError::kIo);
  std::size_t i = Claim(bucket, rk, s, now);
  Entry& e = bucket[i];
  // A clock set back does not hold anyone out for longer than the delay.
  if (e.last_login > 0 && now >= e.last_login &&
      now - e.last_login < s.login_delay_s)
    return s.login_delay_s - (now - e.last_login);
  e.last_login = e.last_seen = now;
  if (!lock.WriteEntry(e, at, i)) return std::unexpected(PenaltyError::kIo);
  return 0;
}

}  // namespace popguard::monitor
