// SpoolService as root in a throw-away directory standing in for
// /var/mail: the dotlock, the temporary file, the rename, and the refusals
// that keep a user from steering root at another file.  Skipped unless
// run as root (it changes file owners).
#include "monitor/spool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace popguard::monitor {
namespace {

constexpr uid_t kUser = 65534;  // nobody: any uid that is not root
constexpr gid_t kMailGroup = 8;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "popguard-spool-XXXXXX")
            .string();
    dir_ = mkdtemp(tmpl.data());
    chmod(dir_.c_str(), 02775);
    box_ = dir_ + "/user";
    Put(box_, "From a  Mon Jan  1 00:00:00 2024\n\nold\n\n");
    ASSERT_EQ(chown(box_.c_str(), kUser, kMailGroup), 0);
    ASSERT_EQ(chmod(box_.c_str(), 0660), 0);
    who_.name = "nobody";
    who_.uid = kUser;
    who_.gid = kUser;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  static void Put(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
  }
  static std::string Get(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  static bool Exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
  }
  // Files in the directory other than the mailbox and its dotlock.
  int Temps() const {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      if (e.path().filename().string().starts_with("user.popguard.")) n++;
    return n;
  }
  bool Do(SpoolService& s, ipc::SpoolOp op, int* fd = nullptr) {
    int local = -1;
    bool ok = s.Handle(op, fd ? fd : &local).ok;
    if (!fd && local >= 0) close(local);
    return ok;
  }
  // A pid that ran a moment ago and now does not.
  static pid_t DeadPid() {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
    return pid;
  }

  std::string dir_, box_;
  Identity who_;
};

TEST_F(SpoolTest, LockWritesOurPidAndUnlockRemovesIt) {
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  EXPECT_EQ(Get(box_ + ".lock"), std::to_string(getpid()) + "\n");
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kUnlock));
  EXPECT_FALSE(Exists(box_ + ".lock"));
}

TEST_F(SpoolTest, LockHeldByALiveProcessIsNotBroken) {
  Put(box_ + ".lock", std::to_string(getppid()) + "\n");
  SpoolService s(box_, who_);
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kLock));  // after about 5 s of retries
  EXPECT_EQ(Get(box_ + ".lock"), std::to_string(getppid()) + "\n");
}

TEST_F(SpoolTest, LockOfADeadProcessIsBrokenAndRetaken) {
  Put(box_ + ".lock", std::to_string(DeadPid()) + "\n");
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  EXPECT_EQ(Get(box_ + ".lock"), std::to_string(getpid()) + "\n");
}

TEST_F(SpoolTest, EmptyLockOlderThanFiveMinutesIsBroken) {
  Put(box_ + ".lock", "");
  timespec old[2] = {{time(nullptr) - 600, 0}, {time(nullptr) - 600, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, (box_ + ".lock").c_str(), old, 0), 0);
  SpoolService s(box_, who_);
  EXPECT_TRUE(Do(s, ipc::SpoolOp::kLock));
}

TEST_F(SpoolTest, UnlockLeavesALockThatIsNoLongerOurs) {
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  // Broken as stale by someone else, who took a lock of its own.
  unlink((box_ + ".lock").c_str());
  Put(box_ + ".lock", "1234567\n");
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kUnlock));
  EXPECT_EQ(Get(box_ + ".lock"), "1234567\n");
}

TEST_F(SpoolTest, TempHasTheMailboxOwnerGroupAndMode) {
  ASSERT_EQ(chmod(box_.c_str(), 0640), 0);
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  int fd = -1;
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kCreateTemp, &fd));
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_uid, kUser);
  EXPECT_EQ(st.st_gid, kMailGroup);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
  close(fd);
  EXPECT_EQ(Temps(), 1);
}

TEST_F(SpoolTest, CommitRenamesTheTempOverTheMailbox) {
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  int fd = -1;
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kCreateTemp, &fd));
  ASSERT_EQ(write(fd, "new\n", 4), 4);
  close(fd);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kCommitTemp));
  EXPECT_EQ(Get(box_), "new\n");
  EXPECT_EQ(Temps(), 0);
  struct stat st;
  ASSERT_EQ(stat(box_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kUser);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kCommitTemp));  // nothing left to commit
}

TEST_F(SpoolTest, DiscardRemovesTheTempAndLeavesTheMailbox) {
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kCreateTemp));
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kDiscardTemp));
  EXPECT_EQ(Temps(), 0);
  EXPECT_EQ(Get(box_), "From a  Mon Jan  1 00:00:00 2024\n\nold\n\n");
}

TEST_F(SpoolTest, TempOfAKilledSessionIsRemovedByTheNext) {
  std::string leftover = box_ + ".popguard.0123456789abcdef";
  std::string unrelated = box_ + ".popguard.keep";
  Put(leftover, "a copy of the mailbox");
  Put(unrelated, "not ours");
  ASSERT_EQ(chown(leftover.c_str(), who_.uid, who_.gid), 0);
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kCreateTemp));
  EXPECT_FALSE(Exists(leftover));
  EXPECT_TRUE(Exists(unrelated));
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kDiscardTemp));
}

TEST_F(SpoolTest, TempIsRefusedWithoutTheLock) {
  SpoolService s(box_, who_);
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kCreateTemp));
  EXPECT_EQ(Temps(), 0);
}

TEST_F(SpoolTest, SymlinkMailboxIsRefused) {
  std::string target = dir_ + "/target";
  Put(target, "secret\n");
  ASSERT_EQ(chown(target.c_str(), kUser, kMailGroup), 0);
  unlink(box_.c_str());
  ASSERT_EQ(symlink(target.c_str(), box_.c_str()), 0);
  SpoolService s(box_, who_);
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kLock));
  EXPECT_FALSE(Exists(box_ + ".lock"));
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kCreateTemp));
}

TEST_F(SpoolTest, MailboxOfAnotherUserIsRefused) {
  ASSERT_EQ(chown(box_.c_str(), 0, kMailGroup), 0);
  SpoolService s(box_, who_);
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kLock));
  EXPECT_FALSE(Exists(box_ + ".lock"));
}

TEST_F(SpoolTest, CommitRefusesATempSwappedForALink) {
  SpoolService s(box_, who_);
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
  ASSERT_TRUE(Do(s, ipc::SpoolOp::kCreateTemp));
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    std::string name = e.path().filename().string();
    if (!name.starts_with("user.popguard.")) continue;
    unlink(e.path().c_str());
    ASSERT_EQ(symlink("/etc/shadow", e.path().c_str()), 0);
  }
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kCommitTemp));
  struct stat st;
  ASSERT_EQ(lstat(box_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(SpoolTest, DestructorRemovesTheLockAndTheTemp) {
  {
    SpoolService s(box_, who_);
    ASSERT_TRUE(Do(s, ipc::SpoolOp::kLock));
    ASSERT_TRUE(Do(s, ipc::SpoolOp::kCreateTemp));
    EXPECT_EQ(Temps(), 1);
  }
  EXPECT_FALSE(Exists(box_ + ".lock"));
  EXPECT_EQ(Temps(), 0);
  EXPECT_TRUE(Exists(box_));
}

TEST_F(SpoolTest, MissingSpoolDirectoryRefusesEverything) {
  SpoolService s(dir_ + "/nodir/user", who_);
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kLock));
  EXPECT_FALSE(Do(s, ipc::SpoolOp::kCreateTemp));
}

}  // namespace
}  // namespace popguard::monitor
