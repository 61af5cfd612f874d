#include "worker/maildir.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "worker/mailbox.h"
#include "worker/maildir_testing.h"

namespace popguard::worker {
namespace {

using testing::TempMaildir;

std::unique_ptr<Maildir> OpenOk(const std::string& path) {
  auto md = Maildir::Open(path);
  EXPECT_TRUE(md.has_value());
  return md ? std::move(*md) : nullptr;
}

std::string ReadAll(Mailbox& mb, std::size_t i) {
  auto s = mb.Open(i);
  EXPECT_TRUE(s.has_value());
  if (!s) return {};
  std::string out;
  char buf[7];  // small, so reads end mid-line
  for (;;) {
    auto n = (*s)->Read(buf);
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) return out;
    out.append(buf, *n);
  }
}

std::string Encode(std::string_view msg,
                   std::optional<std::uint32_t> lines = {},
                   std::size_t chunk = 1 << 20) {
  WireEncoder enc(lines);
  std::string out;
  for (std::size_t i = 0; i < msg.size(); i += chunk)
    enc.Feed(msg.substr(i, chunk), &out);
  enc.Finish(&out);
  return out;
}

std::uint64_t SizeOf(std::string_view msg, std::size_t chunk = 1 << 20) {
  MessageSizer sizer;
  for (std::size_t i = 0; i < msg.size(); i += chunk)
    sizer.Feed(msg.substr(i, chunk));
  return sizer.Finish();
}

// What a client holds after undoing byte-stuffing and dropping the
// terminator (RFC 1939 section 3).
std::string Unstuff(std::string_view wire) {
  EXPECT_TRUE(wire.ends_with(".\r\n"));
  wire.remove_suffix(3);
  std::string out;
  bool line_start = true;
  for (char c : wire) {
    if (line_start && c == '.') {
      line_start = false;
      continue;
    }
    out.push_back(c);
    line_start = c == '\n';
  }
  return out;
}

// --- Listing ---

TEST(MaildirTest, ListsNewAndCurOrderedByUniquePart) {
  TempMaildir md;
  md.Add("cur", "1700000002.M2P2.host:2,S", "b\n");
  md.Add("new", "1700000003.M3P3.host", "c\n");
  md.Add("new", "1700000001.M1P1.host", "a\n");
  auto mb = OpenOk(md.path());
  ASSERT_EQ(mb->Count(), 3u);
  EXPECT_EQ(mb->Uidl(0), "1700000001.M1P1.host");
  EXPECT_EQ(mb->Uidl(1), "1700000002.M2P2.host");
  EXPECT_EQ(mb->Uidl(2), "1700000003.M3P3.host");
  EXPECT_EQ(ReadAll(*mb, 1), "b\n");
}

TEST(MaildirTest, IgnoresTmpDotFilesDirectoriesAndLinks) {
  TempMaildir md;
  md.Add("new", "1.a.host", "x\n");
  md.Add("tmp", "2.b.host", "in delivery\n");
  md.Add("cur", ".hidden", "x\n");
  mkdir(md.Path("cur", "3.dir").c_str(), 0700);
  ASSERT_EQ(symlink("/etc/passwd", md.Path("cur", "4.link:2,").c_str()), 0);
  mkfifo(md.Path("cur", "5.fifo:2,").c_str(), 0600);
  auto mb = OpenOk(md.path());
  ASSERT_EQ(mb->Count(), 1u);
  EXPECT_EQ(mb->Uidl(0), "1.a.host");
}

TEST(MaildirTest, ListingOrderIsStableAcrossFlagChanges) {
  TempMaildir md;
  md.Add("new", "20.b", "b\n");
  md.Add("new", "10.a", "a\n");
  std::string first;
  {
    auto mb = OpenOk(md.path());
    first = std::string(mb->Uidl(0)) + " " + std::string(mb->Uidl(1));
  }
  std::rename(md.Path("new", "10.a").c_str(),
              md.Path("cur", "10.a:2,S").c_str());
  auto mb = OpenOk(md.path());
  EXPECT_EQ(std::string(mb->Uidl(0)) + " " + std::string(mb->Uidl(1)), first);
}

// --- UIDL ---

TEST(MaildirTest, UniquePartStopsAtEitherInfoSeparator) {
  EXPECT_EQ(Maildir::UniquePart("123.M4P5.host:2,RS"), "123.M4P5.host");
  EXPECT_EQ(Maildir::UniquePart("123.M4P5.host!2,S"), "123.M4P5.host");
  EXPECT_EQ(Maildir::UniquePart("123.M4P5.host,S=10,W=12:2,"),
            "123.M4P5.host,S=10,W=12");
  EXPECT_EQ(Maildir::UniquePart("123.M4P5.host"), "123.M4P5.host");
}

TEST(MaildirTest, HashesUidlOfNamesRfc1939Forbids) {
  TempMaildir md;
  md.Add("new", "1.with space", "a\n");
  md.Add("new", "2." + std::string(80, 'x'), "b\n");
  md.Add("new", "3.caf\xc3\xa9", "c\n");
  md.Add("new", "4." + std::string(68, 'y'), "d\n");  // 70: allowed
  auto mb = OpenOk(md.path());
  ASSERT_EQ(mb->Count(), 4u);
  for (std::size_t i = 0; i < 3; i++) {
    std::string_view u = mb->Uidl(i);
    EXPECT_EQ(u.size(), 32u) << u;
    EXPECT_EQ(u.find_first_not_of("0123456789abcdef"), std::string::npos);
  }
  EXPECT_EQ(mb->Uidl(3), "4." + std::string(68, 'y'));
  EXPECT_NE(mb->Uidl(0), mb->Uidl(1));
}

TEST(MaildirTest, HashedUidlIsStableAcrossSessions) {
  TempMaildir md;
  md.Add("new", "1.with space", "a\n");
  std::string first(OpenOk(md.path())->Uidl(0));
  std::rename(md.Path("new", "1.with space").c_str(),
              md.Path("cur", "1.with space:2,S").c_str());
  EXPECT_EQ(OpenOk(md.path())->Uidl(0), first);
}

TEST(MaildirTest, DuplicateUniquePartsGetDistinctUidls) {
  TempMaildir md;
  md.Add("new", "7.dup.host", "a\n");
  md.Add("cur", "7.dup.host:2,S", "a\n");
  auto mb = OpenOk(md.path());
  ASSERT_EQ(mb->Count(), 2u);
  EXPECT_EQ(mb->Uidl(0), "7.dup.host");
  EXPECT_NE(mb->Uidl(1), mb->Uidl(0));
}

// --- Sizes: RFC 1939 section 11, every line end two octets, stuffing not
// counted, exactly what RETR delivers once unstuffed. ---

struct SizeCase {
  const char* what;
  std::string stored;
  std::string delivered;  // unstuffed body, without terminator
};

TEST(MaildirTest, SizeIsTheOctetsRetrDelivers) {
  const SizeCase cases[] = {
      {"LF", "a\nbb\n", "a\r\nbb\r\n"},
      {"CRLF", "a\r\nbb\r\n", "a\r\nbb\r\n"},
      {"bare CR", "a\rbb\r", "a\r\nbb\r\n"},
      {"CR CR LF", "a\r\r\n", "a\r\n\r\n"},
      {"no final newline", "a\nlast", "a\r\nlast\r\n"},
      {"empty", "", ""},
      {"only newline", "\n", "\r\n"},
      {"8-bit and NUL", std::string("\xff\x00\x80z\n", 5),
       std::string("\xff\x00\x80z\r\n", 6)},
      {"dot lines", ".\n..x\n.", ".\r\n..x\r\n.\r\n"},
      {"dot after bare CR", "a\r.b\n", "a\r\n.b\r\n"},
  };
  for (const auto& c : cases) {
    TempMaildir md;
    md.Add("new", "1.m", c.stored);
    auto mb = OpenOk(md.path());
    ASSERT_EQ(mb->Count(), 1u);
    EXPECT_EQ(mb->Size(0), c.delivered.size()) << c.what;
    EXPECT_EQ(Unstuff(Encode(c.stored)), c.delivered) << c.what;
  }
}

TEST(MaildirTest, SizeIgnoresDovecotSizeFieldsInTheName) {
  TempMaildir md;
  md.Add("new", "1.m,S=999,W=1000", "a\n");
  auto mb = OpenOk(md.path());
  EXPECT_EQ(mb->Size(0), 3u);
}

TEST(MaildirTest, SizeOfLargeMessageSpansReadChunks) {
  std::string big;
  while (big.size() < 300 * 1024) big += "line of text\n.dot\r\n";
  TempMaildir md;
  md.Add("cur", "1.big:2,", big);
  auto mb = OpenOk(md.path());
  EXPECT_EQ(mb->Size(0), Unstuff(Encode(big)).size());
}

// --- The wire encoding ---

TEST(WireEncoderTest, StuffsDotsAndTerminates) {
  EXPECT_EQ(Encode(".x\n..\n.\n"), "..x\r\n...\r\n..\r\n.\r\n");
  EXPECT_EQ(Encode(""), ".\r\n");
  EXPECT_EQ(Encode("a"), "a\r\n.\r\n");
}

TEST(WireEncoderTest, CrlfSplitAcrossChunksStaysOneLineEnd) {
  EXPECT_EQ(Encode("a\r\nb\r\n", {}, 2), "a\r\nb\r\n.\r\n");
  EXPECT_EQ(Encode("a\r\n.b", {}, 3), "a\r\n..b\r\n.\r\n");
}

TEST(WireEncoderTest, TopSendsHeaderBlankLineAndBodyLines) {
  std::string msg = "H: 1\nH: 2\n\nb1\nb2\nb3\n";
  EXPECT_EQ(Encode(msg, 0), "H: 1\r\nH: 2\r\n\r\n.\r\n");
  EXPECT_EQ(Encode(msg, 2), "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n.\r\n");
  EXPECT_EQ(Encode(msg, 99), Encode(msg));
  EXPECT_EQ(Encode("H: only\n", 0), "H: only\r\n.\r\n");
  EXPECT_EQ(Encode(msg, 1, 1), "H: 1\r\nH: 2\r\n\r\nb1\r\n.\r\n");
}

TEST(WireEncoderTest, SizerAgreesWithEncoderOnRandomInput) {
  std::mt19937 rng(1939);
  const char alphabet[] = {'\r', '\n', '.', 'a', '\0', '\xff'};
  for (int round = 0; round < 2000; round++) {
    std::string msg;
    std::size_t len = rng() % 40;
    for (std::size_t i = 0; i < len; i++) msg.push_back(alphabet[rng() % 6]);
    std::size_t chunk = 1 + rng() % 5;
    std::string wire = Encode(msg, {}, chunk);
    EXPECT_EQ(SizeOf(msg, 1 + rng() % 5), Unstuff(wire).size())
        << "round " << round;
  }
}

// --- Lock ---

TEST(MaildirTest, SecondOpenIsInUse) {
  TempMaildir md;
  auto first = OpenOk(md.path());
  auto second = Maildir::Open(md.path());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error(), Maildir::Error::kInUse);
}

TEST(MaildirTest, LockIsReleasedWhenTheMailboxCloses) {
  TempMaildir md;
  OpenOk(md.path()).reset();
  EXPECT_TRUE(Maildir::Open(md.path()).has_value());
}

TEST(MaildirTest, LockIsReleasedWhenItsHolderIsKilled) {
  TempMaildir md;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto held = Maildir::Open(md.path());
    char c = held ? 'y' : 'n';
    (void)!write(ready[1], &c, 1);
    pause();
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  EXPECT_FALSE(Maildir::Open(md.path()).has_value());
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  EXPECT_TRUE(Maildir::Open(md.path()).has_value());
  close(ready[0]);
  close(ready[1]);
}

// --- Missing and broken Maildirs ---

TEST(MaildirTest, MissingMaildirIsEmptyAndNotCreated) {
  TempMaildir md;
  auto mb = OpenOk(md.missing());
  EXPECT_EQ(mb->Count(), 0u);
  EXPECT_FALSE(std::filesystem::exists(md.missing()));
}

TEST(MaildirTest, MaildirThatIsAFileIsAnError) {
  TempMaildir md;
  md.Add("new", "1.m", "x\n");
  auto mb = Maildir::Open(md.Path("new", "1.m"));
  ASSERT_FALSE(mb.has_value());
  EXPECT_EQ(mb.error(), Maildir::Error::kIo);
}

// --- Messages that move or vanish under the session ---

TEST(MaildirTest, OpenOfVanishedMessageIsGone) {
  TempMaildir md;
  md.Add("new", "1.m", "x\n");
  auto mb = OpenOk(md.path());
  std::filesystem::remove(md.Path("new", "1.m"));
  auto s = mb->Open(0);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), MessageError::kGone);
}

TEST(MaildirTest, OpenFindsMessageMovedToCur) {
  TempMaildir md;
  md.Add("new", "1.m", "moved\n");
  auto mb = OpenOk(md.path());
  std::rename(md.Path("new", "1.m").c_str(), md.Path("cur", "1.m:2,S").c_str());
  EXPECT_EQ(ReadAll(*mb, 0), "moved\n");
}

TEST(MaildirTest, DeliveredAtIsTheFileTimeAndFollowsRenames) {
  TempMaildir md;
  md.Add("new", "1.a", "a\n");
  md.Add("new", "2.b", "b\n");
  md.SetMtime("new", "1.a", 1000000000);
  auto mb = OpenOk(md.path());
  EXPECT_EQ(mb->DeliveredAt(0), 1000000000);
  std::rename(md.Path("new", "1.a").c_str(), md.Path("cur", "1.a:2,S").c_str());
  EXPECT_EQ(mb->DeliveredAt(0), 1000000000);
  std::filesystem::remove(md.Path("new", "2.b"));
  EXPECT_EQ(mb->DeliveredAt(1), std::nullopt);
}

// --- Commit ---

TEST(MaildirTest, CommitRemovesOnlyTheGivenMessages) {
  TempMaildir md;
  md.Add("new", "1.a", "a\n");
  md.Add("cur", "2.b:2,S", "b\n");
  md.Add("new", "3.c", "c\n");
  auto mb = OpenOk(md.path());
  std::size_t doomed[] = {0, 1};
  CommitResult r = mb->Commit(doomed);
  EXPECT_EQ(r.removed, 2u);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_FALSE(md.Exists("new", "1.a"));
  EXPECT_FALSE(md.Exists("cur", "2.b:2,S"));
  EXPECT_TRUE(md.Exists("new", "3.c"));
}

TEST(MaildirTest, CommitFollowsRenamesAndCountsVanishedAsRemoved) {
  TempMaildir md;
  md.Add("new", "1.a", "a\n");
  md.Add("new", "2.b", "b\n");
  auto mb = OpenOk(md.path());
  std::rename(md.Path("new", "1.a").c_str(), md.Path("cur", "1.a:2,S").c_str());
  std::filesystem::remove(md.Path("new", "2.b"));
  std::size_t doomed[] = {0, 1};
  CommitResult r = mb->Commit(doomed);
  EXPECT_EQ(r.removed, 2u);
  EXPECT_FALSE(md.Exists("cur", "1.a:2,S"));
}

}  // namespace
}  // namespace popguard::worker
