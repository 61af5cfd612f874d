// Fuzz target: the mbox reader and rewriter (worker/mbox.h), which parse
// a file whose contents any sender of mail chooses.
//
// The input is the mbox file.  It is opened as a session would open it
// (with a stand-in for the monitor's spool service), and every message is
// streamed in small reads.  Checked:
// - each message streams, and its Size is what RETR would send for the
//   streamed bytes (RFC 1939 section 11, mailbox.h);
// - UIDLs are 1 to 70 octets of 0x21..0x7E and unique;
// - after a Commit that deletes some messages, the file reopens with
//   exactly the kept messages, each byte for byte as before; a kept
//   message keeps its UIDL unless it shared its id with another message
//   (mbox.h: a later duplicate gets the digest or a suffix, which may
//   change when the other one goes).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "worker/mailbox.h"
#include "worker/mbox.h"
#include "worker/mbox_testing.h"

namespace {

using popguard::fuzz::Check;
using namespace popguard::worker;

// The mailbox lives in a directory of its own under $TMPDIR, made once;
// tests/fuzz/run points TMPDIR at a scratch directory it removes after.
std::string* box_path = nullptr;

struct Snapshot {
  std::vector<std::string> texts;
  std::vector<std::string> uidls;
};

std::string Stream(Mailbox& mb, std::size_t i, std::size_t chunk) {
  auto s = mb.Open(i);
  Check(s.has_value(), "every message of a fresh snapshot opens");
  std::string out;
  std::string buf(chunk, '\0');
  for (;;) {
    auto n = (*s)->Read(buf);
    Check(n.has_value(), "a message of a fresh snapshot reads");
    if (*n == 0) return out;
    Check(*n <= chunk, "Read fills at most the buffer");
    out.append(buf.data(), *n);
  }
}

// What a client holds after RETR: the encoder's output without the
// stuffing and the terminator.
std::uint64_t WireSize(std::string_view text) {
  WireEncoder enc;
  std::string out;
  enc.Feed(text, &out);
  enc.Finish(&out);
  return out.size() - 3 - enc.stuffed();
}

bool ValidUidl(std::string_view u) {
  if (u.empty() || u.size() > 70) return false;
  for (char c : u)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// For each message, whether its id before de-duplication is its own.
std::vector<bool> OwnIds(std::size_t size) {
  int fd = open(box_path->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::abort();
  std::vector<Mbox::Entry> entries;
  std::uint64_t first_from;
  Check(ScanMbox(fd, size, &entries, &first_from), "ScanMbox reads the file");
  close(fd);
  std::multiset<std::string> ids;
  for (const Mbox::Entry& e : entries) ids.insert(e.uidl);
  std::vector<bool> own;
  for (const Mbox::Entry& e : entries) own.push_back(ids.count(e.uidl) == 1);
  return own;
}

Snapshot Read(Mbox& mb, std::size_t chunk) {
  Snapshot s;
  std::set<std::string, std::less<>> ids;
  for (std::size_t i = 0; i < mb.Count(); i++) {
    s.texts.push_back(Stream(mb, i, chunk));
    auto size = mb.Size(i);
    Check(size.has_value() && *size == WireSize(s.texts.back()),
          "Size is the octets RETR sends");
    s.uidls.emplace_back(mb.Uidl(i));
    Check(ValidUidl(s.uidls.back()), "a UIDL is 1-70 octets of 0x21-0x7E");
    Check(ids.insert(s.uidls.back()).second, "UIDLs are unique");
  }
  return s;
}

std::unique_ptr<Mbox> OpenBox(Spool& spool) {
  auto mb = Mbox::Open(*box_path, spool);
  Check(mb.has_value(), "a readable mbox opens");
  return std::move(*mb);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "popguard-mbox-fuzz-XXXXXX")
          .string();
  if (!mkdtemp(tmpl.data())) std::abort();
  box_path = new std::string(tmpl + "/mbox");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  int fd =
      open(box_path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  Check(write(fd, data, size) == static_cast<ssize_t>(size),
        "the mbox is written whole");
  close(fd);

  std::vector<bool> own = OwnIds(size);
  testing::LocalSpool spool(*box_path);
  std::size_t chunk = 1 + size % 13;
  Snapshot before;
  std::vector<std::size_t> doomed;
  {
    std::unique_ptr<Mbox> mb = OpenBox(spool);
    before = Read(*mb, chunk);
    // Which messages go depends on the input, so that the fuzzer tries
    // first, last, neighbouring and all.
    for (std::size_t i = 0; i < mb->Count(); i++)
      if ((i + size) % 3 != 0 || size % 7 == 0) doomed.push_back(i);
    CommitResult r = mb->Commit(doomed);
    Check(r.failed == 0 && r.removed == doomed.size() &&
              r.problem == CommitProblem::kNone,
          "a Commit with no one else about removes what was marked");
  }
  Check(!spool.locked(), "the dotlock is released");

  std::unique_ptr<Mbox> again = OpenBox(spool);
  Snapshot after = Read(*again, 4096);
  std::set<std::size_t> gone(doomed.begin(), doomed.end());
  Check(own.size() == before.texts.size(), "ScanMbox and Open agree");
  std::size_t k = 0;
  for (std::size_t i = 0; i < before.texts.size(); i++) {
    if (gone.count(i)) continue;
    Check(k < after.texts.size(), "no kept message is lost");
    Check(after.texts[k] == before.texts[i],
          "a kept message is unchanged by the rewrite");
    if (own[i])
      Check(after.uidls[k] == before.uidls[i], "a kept message keeps its UIDL");
    k++;
  }
  Check(k == after.texts.size(), "no message appears from nowhere");
  return 0;
}
