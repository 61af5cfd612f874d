#include "monitor/penalty.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace popguard::monitor {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr std::int64_t kNow = 1'700'000'000;

class PenaltyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/penalty-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "state" / "penalties").string();
    settings_.fail_delay_ms = 100;
    settings_.max_delay_ms = 1000;
    settings_.ban_after_failures = 4;
    settings_.ban_window_s = 60;
    settings_.ban_time_s = 300;
    settings_.max_sessions_per_address = 2;
  }

  void TearDown() override {
    for (pid_t pid : children_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  PenaltyTable Table() {
    auto t = PenaltyTable::Open(path_);
    EXPECT_TRUE(t.has_value());
    if (!t) std::abort();
    return std::move(*t);
  }

  // A live process to stand for a monitor.
  pid_t Child() {
    pid_t pid = fork();
    if (pid == 0) {
      pause();
      _exit(0);
    }
    children_.push_back(pid);
    return pid;
  }

  void Reap(pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    std::erase(children_, pid);
  }

  static AddressKey Key(const char* addr) { return *KeyForAddress(addr); }

  fs::path dir_;
  std::string path_;
  PenaltySettings settings_;
  std::vector<pid_t> children_;
};

TEST(KeyForAddressTest, GroupsIpv6ByItsSlash64) {
  EXPECT_EQ(KeyForAddress("2001:db8:1:2::1"),
            KeyForAddress("2001:db8:1:2:ffff:1:2:3"));
  EXPECT_NE(KeyForAddress("2001:db8:1:2::1"), KeyForAddress("2001:db8:1:3::1"));
}

TEST(KeyForAddressTest, KeepsIpv4AddressesApartAndWhole) {
  EXPECT_NE(KeyForAddress("192.0.2.1"), KeyForAddress("192.0.2.2"));
  EXPECT_EQ(KeyForAddress("192.0.2.1"), KeyForAddress("::ffff:192.0.2.1"));
  EXPECT_NE(KeyForAddress("::ffff:192.0.2.1"),
            KeyForAddress("::ffff:192.0.2.2"));
}

TEST(KeyForAddressTest, RejectsWhatIsNotANumericAddress) {
  for (const char* bad : {"unknown", "local", "", "192.0.2.1/24", "host"})
    EXPECT_FALSE(KeyForAddress(bad).has_value()) << bad;
}

TEST(FailureDelayTest, DoublesEachFailureUpToTheCap) {
  PenaltySettings s;
  s.fail_delay_ms = 100;
  s.max_delay_ms = 1000;
  EXPECT_EQ(FailureDelay(s, 1), milliseconds(100));
  EXPECT_EQ(FailureDelay(s, 2), milliseconds(200));
  EXPECT_EQ(FailureDelay(s, 4), milliseconds(800));
  EXPECT_EQ(FailureDelay(s, 5), milliseconds(1000));
  EXPECT_EQ(FailureDelay(s, 4'000'000'000u), milliseconds(1000));
  s.fail_delay_ms = 0;
  EXPECT_EQ(FailureDelay(s, 9), milliseconds(0));
}

TEST_F(PenaltyTest, OpenCreatesAPrivateFileOfFixedSize) {
  PenaltyTable t = Table();
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  off_t size = st.st_size;
  for (int i = 0; i < 20000; i++) {
    AddressKey k{};
    k.bytes[0] = 0x20;
    k.bytes[4] = static_cast<unsigned char>(i >> 8);
    k.bytes[5] = static_cast<unsigned char>(i);
    ASSERT_TRUE(t.RecordFailure(k, settings_, kNow).has_value());
  }
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, size);
}

TEST_F(PenaltyTest, RefusesAFileOthersCanRead) {
  Table();
  chmod(path_.c_str(), 0644);
  auto t = PenaltyTable::Open(path_);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error(), PenaltyError::kNotSafe);
}

TEST_F(PenaltyTest, RefusesASymlink) {
  fs::create_directories(dir_ / "state");
  fs::create_symlink(dir_ / "elsewhere", path_);
  EXPECT_FALSE(PenaltyTable::Open(path_).has_value());
  EXPECT_FALSE(fs::exists(dir_ / "elsewhere"));
}

TEST_F(PenaltyTest, LaysOutAFileInAnotherFormatAfresh) {
  fs::create_directories(dir_ / "state");
  {
    FILE* f = fopen(path_.c_str(), "w");
    fputs("not a penalty file", f);
    fclose(f);
  }
  chmod(path_.c_str(), 0600);
  PenaltyTable t = Table();
  auto f = t.RecordFailure(Key("192.0.2.1"), settings_, kNow);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->failures, 1u);
}

TEST_F(PenaltyTest, DelayGrowsWithEachFailureAndBansAtTheLimit) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  const std::int64_t ms[] = {100, 200, 400, 800};
  for (int i = 0; i < 4; i++) {
    auto f = t.RecordFailure(k, settings_, kNow + i);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->failures, static_cast<unsigned>(i + 1));
    EXPECT_EQ(f->delay, milliseconds(ms[i]));
    EXPECT_EQ(f->banned_now, i == 3);
  }
  auto until = t.BannedUntil(k, settings_, kNow + 4);
  ASSERT_TRUE(until.has_value());
  EXPECT_EQ(*until, std::optional<std::int64_t>(kNow + 3 + 300));
}

TEST_F(PenaltyTest, BanRefusesAdmissionUntilItEnds) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  for (int i = 0; i < 4; i++) t.RecordFailure(k, settings_, kNow);
  auto a = t.Admit(k, getpid(), settings_, kNow + 10);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->verdict, PenaltyTable::Admission::Verdict::kBanned);
  EXPECT_EQ(a->banned_until, kNow + 300);
  a = t.Admit(k, getpid(), settings_, kNow + 300);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->verdict, PenaltyTable::Admission::Verdict::kAdmit);
}

TEST_F(PenaltyTest, BanIsSeenThroughAnotherOpenOfTheFile) {
  PenaltyTable first = Table();
  AddressKey k = Key("2001:db8:7:7::10");
  for (int i = 0; i < 4; i++) first.RecordFailure(k, settings_, kNow);
  PenaltyTable second = Table();
  // Another host of the same /64 is refused too.
  auto a = second.Admit(Key("2001:db8:7:7::99"), getpid(), settings_, kNow);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->verdict, PenaltyTable::Admission::Verdict::kBanned);
  a = second.Admit(Key("2001:db8:7:8::10"), getpid(), settings_, kNow);
  EXPECT_EQ(a->verdict, PenaltyTable::Admission::Verdict::kAdmit);
}

TEST_F(PenaltyTest, FailuresFarApartStartTheCountAgain) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  std::int64_t when = kNow;
  for (int i = 0; i < 10; i++, when += 61) {
    auto f = t.RecordFailure(k, settings_, when);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->failures, 1u);
    EXPECT_FALSE(f->banned_now);
  }
}

TEST_F(PenaltyTest, SuccessfulLoginsDoNotForgiveFailures) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  settings_.login_delay_s = 0;
  for (int i = 0; i < 3; i++) {
    t.RecordFailure(k, settings_, kNow);
    ASSERT_EQ(t.CheckLogin("alice", settings_, kNow), 0);
  }
  auto f = t.RecordFailure(k, settings_, kNow);
  EXPECT_TRUE(f->banned_now);
}

TEST_F(PenaltyTest, CountsLiveSessionsPerAddress) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  pid_t a = Child(), b = Child(), c = Child();
  using V = PenaltyTable::Admission::Verdict;
  EXPECT_EQ(t.Admit(k, a, settings_, kNow)->verdict, V::kAdmit);
  EXPECT_EQ(t.Admit(k, b, settings_, kNow)->verdict, V::kAdmit);
  auto third = t.Admit(k, c, settings_, kNow);
  EXPECT_EQ(third->verdict, V::kTooManySessions);
  EXPECT_EQ(third->sessions, 2u);
  // Another address has its own count.
  EXPECT_EQ(t.Admit(Key("192.0.2.2"), c, settings_, kNow)->verdict, V::kAdmit);
}

TEST_F(PenaltyTest, SessionOfAKilledMonitorStopsCounting) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  pid_t a = Child(), b = Child(), c = Child();
  using V = PenaltyTable::Admission::Verdict;
  t.Admit(k, a, settings_, kNow);
  t.Admit(k, b, settings_, kNow);
  Reap(a);
  EXPECT_EQ(t.Admit(k, c, settings_, kNow)->verdict, V::kAdmit);
}

TEST_F(PenaltyTest, LeaveFreesTheSession) {
  PenaltyTable t = Table();
  AddressKey k = Key("192.0.2.1");
  pid_t b = Child(), c = Child();
  using V = PenaltyTable::Admission::Verdict;
  t.Admit(k, getpid(), settings_, kNow);
  t.Admit(k, b, settings_, kNow);
  EXPECT_EQ(t.Admit(k, c, settings_, kNow)->verdict, V::kTooManySessions);
  ASSERT_TRUE(t.Leave(getpid()).has_value());
  EXPECT_EQ(t.Admit(k, c, settings_, kNow)->verdict, V::kAdmit);
}

TEST_F(PenaltyTest, NoLimitWhenMaxSessionsPerAddressIsZero) {
  PenaltyTable t = Table();
  settings_.max_sessions_per_address = 0;
  AddressKey k = Key("192.0.2.1");
  for (int i = 0; i < 5; i++)
    EXPECT_EQ(t.Admit(k, Child(), settings_, kNow)->verdict,
              PenaltyTable::Admission::Verdict::kAdmit);
}

TEST_F(PenaltyTest, LoginDelayHoldsTheSameUserOnly) {
  PenaltyTable t = Table();
  settings_.login_delay_s = 30;
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow), 0);
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow + 10), 20);
  EXPECT_EQ(t.CheckLogin("bob", settings_, kNow + 10), 0);
  // A refused login does not restart the wait.
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow + 29), 1);
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow + 30), 0);
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow + 31), 29);
}

TEST_F(PenaltyTest, LoginDelayOfZeroNeverHolds) {
  PenaltyTable t = Table();
  settings_.login_delay_s = 0;
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow), 0);
  EXPECT_EQ(t.CheckLogin("alice", settings_, kNow), 0);
}

TEST_F(PenaltyTest, FloodOfNewAddressesDoesNotPushOutABan) {
  PenaltyTable t = Table();
  AddressKey banned = Key("192.0.2.1");
  for (int i = 0; i < 4; i++) t.RecordFailure(banned, settings_, kNow);
  for (int i = 0; i < 40000; i++) {
    AddressKey k{};
    k.bytes[0] = 0x20;
    k.bytes[1] = 0x01;
    k.bytes[4] = static_cast<unsigned char>(i >> 8);
    k.bytes[5] = static_cast<unsigned char>(i);
    t.RecordFailure(k, settings_, kNow + 1);
  }
  auto until = t.BannedUntil(banned, settings_, kNow + 2);
  ASSERT_TRUE(until.has_value());
  EXPECT_TRUE(until->has_value());
}

}  // namespace
}  // namespace popguard::monitor
