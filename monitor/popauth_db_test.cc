#include "monitor/popauth_db.h"

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

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

bool IsRoot() { return geteuid() == 0; }

class PopAuthDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/popauth_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    files_.db_path = dir_ + "/pop.auth";
    files_.key_path = dir_ + "/keys/pop.auth.key";
    files_.check_owner = IsRoot();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Init() { ASSERT_TRUE(InitDatabase(files_, false).has_value()); }

  void Set(std::string_view user, std::string_view secret) {
    auto r = SetSecret(files_, user, secret);
    ASSERT_TRUE(r.has_value()) << r.error().detail;
  }

  std::optional<std::string> Lookup(std::string_view user) {
    auto r = LookupSecretIn(files_, user);
    EXPECT_TRUE(r.has_value()) << r.error().detail;
    return r.value_or(std::nullopt);
  }

  PopAuthError LookupError(std::string_view user) {
    auto r = LookupSecretIn(files_, user);
    EXPECT_FALSE(r.has_value());
    return r ? PopAuthError::kIo : r.error().code;
  }

  std::string dir_;
  PopAuthFiles files_;
};

TEST_F(PopAuthDbTest, InitCreatesKeyAndEmptyDatabase) {
  Init();
  EXPECT_EQ(ReadFile(files_.db_path), "popguard-popauth 1\n");
  EXPECT_EQ(ModeOf(files_.db_path), 0600u);
  EXPECT_EQ(ReadFile(files_.key_path).size(), 32u);
  EXPECT_EQ(ModeOf(files_.key_path), 0600u);
  EXPECT_EQ(ModeOf(dir_ + "/keys"), 0755u);
  EXPECT_FALSE(fs::exists(files_.db_path + ".tmp"));
}

TEST_F(PopAuthDbTest, InitKeepsExistingKey) {
  Init();
  std::string key = ReadFile(files_.key_path);
  Set("taro", "secret-one");
  Init();
  EXPECT_EQ(ReadFile(files_.key_path), key);
  EXPECT_EQ(Lookup("taro"), std::nullopt);
}

TEST_F(PopAuthDbTest, InitWithKeepExistingRefusesAndLeavesFile) {
  Init();
  Set("taro", "secret-one");
  std::string before = ReadFile(files_.db_path);
  auto r = InitDatabase(files_, true);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kExists);
  EXPECT_EQ(ReadFile(files_.db_path), before);
}

TEST_F(PopAuthDbTest, LookupReturnsStoredSecret) {
  Init();
  Set("taro", "tanstaaf-long");
  EXPECT_EQ(Lookup("taro"), "tanstaaf-long");
}

TEST_F(PopAuthDbTest, LookupReturnsNulloptForUserWithoutEntry) {
  Init();
  Set("taro", "secret-one");
  EXPECT_EQ(Lookup("hanako"), std::nullopt);
  EXPECT_EQ(Lookup("Not A Name"), std::nullopt);
}

TEST_F(PopAuthDbTest, MonitorLookupReturnsSecretAsRoot) {
  if (!IsRoot()) GTEST_SKIP() << "the monitor's lookup checks owners";
  Init();
  Set("taro", "secret-one");
  auto r = LookupSecret(files_.db_path, files_.key_path, "taro");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, "secret-one");
  auto none = LookupSecret(files_.db_path + "-x", files_.key_path, "taro");
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error(), PopAuthError::kNoDatabase);
}

TEST_F(PopAuthDbTest, SetReplacesExistingEntry) {
  Init();
  Set("taro", "secret-one");
  auto r = SetSecret(files_, "taro", "secret-two");
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(*r);
  EXPECT_EQ(Lookup("taro"), "secret-two");
  ASSERT_TRUE(ListUsers(files_).has_value());
  EXPECT_EQ(ListUsers(files_)->size(), 1u);
}

TEST_F(PopAuthDbTest, SecretIsNotStoredInClear) {
  Init();
  Set("taro", "very-recognisable");
  EXPECT_EQ(ReadFile(files_.db_path).find("very-recognisable"),
            std::string::npos);
}

TEST_F(PopAuthDbTest, ListUsersKeepsFileOrder) {
  Init();
  Set("taro", "secret-one");
  Set("hanako", "secret-two");
  Set("_svc.x-1", "secret-three");
  auto names = ListUsers(files_);
  ASSERT_TRUE(names.has_value());
  EXPECT_EQ(*names, (std::vector<std::string>{"taro", "hanako", "_svc.x-1"}));
}

TEST_F(PopAuthDbTest, DeleteRemovesOnlyThatEntry) {
  Init();
  Set("taro", "secret-one");
  Set("hanako", "secret-two");
  ASSERT_TRUE(DeleteUser(files_, "hanako").has_value());
  EXPECT_EQ(Lookup("hanako"), std::nullopt);
  EXPECT_EQ(Lookup("taro"), "secret-one");
}

TEST_F(PopAuthDbTest, DeleteOfUserWithoutEntryIsNoSuchUserAndLeavesFile) {
  Init();
  Set("taro", "secret-one");
  std::string before = ReadFile(files_.db_path);
  auto r = DeleteUser(files_, "hanako");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kNoSuchUser);
  EXPECT_EQ(ReadFile(files_.db_path), before);
}

TEST_F(PopAuthDbTest, SetWithoutDatabaseIsNoDatabase) {
  auto r = SetSecret(files_, "taro", "secret-one");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kNoDatabase);
  EXPECT_NE(r.error().detail.find("popauth -init"), std::string::npos);
  EXPECT_FALSE(fs::exists(files_.db_path));
}

TEST_F(PopAuthDbTest, LookupWithoutKeyIsNoKey) {
  Init();
  fs::remove(files_.key_path);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kNoKey);
}

TEST_F(PopAuthDbTest, RejectsBadNames) {
  Init();
  for (const std::string& name :
       std::vector<std::string>{"", "Root", "9lives", "../etc", "a:b", "a b",
                                std::string(33, 'a')}) {
    auto r = SetSecret(files_, name, "secret-one");
    ASSERT_FALSE(r.has_value()) << name;
    EXPECT_EQ(r.error().code, PopAuthError::kBadName) << name;
  }
  EXPECT_TRUE(ValidPopAuthName(std::string(32, 'a')));
  EXPECT_TRUE(ValidPopAuthName("_apt"));
  EXPECT_TRUE(ValidPopAuthName("mail.user-2"));
}

TEST_F(PopAuthDbTest, RejectsGroupReadableDatabase) {
  Init();
  Set("taro", "secret-one");
  ASSERT_EQ(chmod(files_.db_path.c_str(), 0640), 0);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kBadPermissions);
  auto r = ListUsers(files_);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().detail.find("0640"), std::string::npos);
}

TEST_F(PopAuthDbTest, RejectsWorldReadableKey) {
  Init();
  ASSERT_EQ(chmod(files_.key_path.c_str(), 0604), 0);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kBadPermissions);
}

TEST_F(PopAuthDbTest, RejectsDatabaseOwnedByAnotherUser) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to chown";
  Init();
  ASSERT_EQ(chown(files_.db_path.c_str(), 1, 1), 0);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kBadPermissions);
}

TEST_F(PopAuthDbTest, RejectsKeyOwnedByAnotherUser) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to chown";
  Init();
  ASSERT_EQ(chown(files_.key_path.c_str(), 1, 1), 0);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kBadPermissions);
}

TEST_F(PopAuthDbTest, RejectsDatabaseThatIsASymlink) {
  Init();
  fs::rename(files_.db_path, dir_ + "/real");
  fs::create_symlink(dir_ + "/real", files_.db_path);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kBadPermissions);
}

TEST_F(PopAuthDbTest, DetectsGarbageLineAndNamesIt) {
  Init();
  Set("taro", "secret-one");
  WriteFile(files_.db_path, ReadFile(files_.db_path) + "garbage\n");
  auto r = ListUsers(files_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kCorrupt);
  EXPECT_NE(r.error().detail.find("pop.auth:3:"), std::string::npos)
      << r.error().detail;
}

TEST_F(PopAuthDbTest, DetectsFileCutShort) {
  Init();
  Set("taro", "secret-one");
  std::string text = ReadFile(files_.db_path);
  WriteFile(files_.db_path, text.substr(0, text.size() - 5));
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
}

TEST_F(PopAuthDbTest, DetectsAlteredCiphertext) {
  Init();
  Set("taro", "secret-one");
  std::string text = ReadFile(files_.db_path);
  std::size_t pos = text.size() - 10;
  text[pos] = text[pos] == 'A' ? 'B' : 'A';
  WriteFile(files_.db_path, text);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
}

TEST_F(PopAuthDbTest, RejectsUnknownVersion) {
  Init();
  WriteFile(files_.db_path, "popguard-popauth 2\n");
  auto r = ListUsers(files_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kCorrupt);
  EXPECT_NE(r.error().detail.find("version"), std::string::npos);
}

TEST_F(PopAuthDbTest, RejectsFileWithoutHeader) {
  Init();
  WriteFile(files_.db_path, "");
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
  WriteFile(files_.db_path, "popguard-popauth 1");
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
}

TEST_F(PopAuthDbTest, RejectsUnknownMechanismNamingLine) {
  Init();
  WriteFile(files_.db_path, "popguard-popauth 1\ntaro:scram-sha-256:AAAA\n");
  auto r = ListUsers(files_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kCorrupt);
  EXPECT_NE(r.error().detail.find(":2: unknown mechanism 'scram-sha-256'"),
            std::string::npos)
      << r.error().detail;
}

TEST_F(PopAuthDbTest, RejectsSecondEntryForSameUser) {
  Init();
  Set("taro", "secret-one");
  std::string text = ReadFile(files_.db_path);
  std::string line = text.substr(text.find('\n') + 1);
  WriteFile(files_.db_path, text + line);
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
}

TEST_F(PopAuthDbTest, LineMovedToAnotherUserFailsToDecrypt) {
  Init();
  Set("taro", "secret-one");
  std::string text = ReadFile(files_.db_path);
  std::string sealed = text.substr(text.find(":aes-256-gcm:"));
  WriteFile(files_.db_path, "popguard-popauth 1\nhanako" + sealed);
  auto r = LookupSecretIn(files_, "hanako");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kCorrupt);
  EXPECT_NE(r.error().detail.find("does not decrypt"), std::string::npos);
}

TEST_F(PopAuthDbTest, OtherKeyFailsToDecrypt) {
  Init();
  Set("taro", "secret-one");
  WriteFile(files_.key_path, std::string(32, 'k'));
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
}

TEST_F(PopAuthDbTest, KeyOfWrongSizeIsCorrupt) {
  Init();
  WriteFile(files_.key_path, std::string(31, 'k'));
  EXPECT_EQ(LookupError("taro"), PopAuthError::kCorrupt);
}

TEST_F(PopAuthDbTest, FailedChangeLeavesFileUnchanged) {
  Init();
  Set("taro", "secret-one");
  std::string before = ReadFile(files_.db_path);

  ASSERT_EQ(chmod(files_.key_path.c_str(), 0644), 0);
  EXPECT_FALSE(SetSecret(files_, "hanako", "secret-two").has_value());
  EXPECT_EQ(ReadFile(files_.db_path), before);
  ASSERT_EQ(chmod(files_.key_path.c_str(), 0600), 0);

  WriteFile(files_.db_path, before + "bad line\n");
  EXPECT_FALSE(SetSecret(files_, "hanako", "secret-two").has_value());
  EXPECT_FALSE(DeleteUser(files_, "taro").has_value());
  EXPECT_EQ(ReadFile(files_.db_path), before + "bad line\n");
  EXPECT_FALSE(fs::exists(files_.db_path + ".tmp"));
}

TEST_F(PopAuthDbTest, LeftoverTempFileDoesNotBlockWriter) {
  Init();
  WriteFile(files_.db_path + ".tmp", "left by a killed run");
  Set("taro", "secret-one");
  EXPECT_EQ(Lookup("taro"), "secret-one");
  EXPECT_FALSE(fs::exists(files_.db_path + ".tmp"));
}

TEST_F(PopAuthDbTest, ConcurrentWritersSerialize) {
  Init();
  constexpr int kPerWriter = 25;
  pid_t pids[2];
  for (int w = 0; w < 2; ++w) {
    pids[w] = fork();
    ASSERT_GE(pids[w], 0);
    if (pids[w] == 0) {
      bool ok = true;
      for (int i = 0; i < kPerWriter; ++i) {
        std::string name = std::string(1, "ab"[w]) + std::to_string(i);
        ok = ok && SetSecret(files_, name, "secret-" + name).has_value();
      }
      _exit(ok ? 0 : 1);
    }
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto names = ListUsers(files_);
  ASSERT_TRUE(names.has_value());
  EXPECT_EQ(names->size(), 2u * kPerWriter);
  EXPECT_EQ(Lookup("b7"), "secret-b7");
}

TEST_F(PopAuthDbTest, VerifyReportsUnreadableKeyBeforeAnyChange) {
  Init();
  EXPECT_TRUE(VerifyPopAuthFiles(files_).has_value());
  fs::remove(files_.key_path);
  auto r = VerifyPopAuthFiles(files_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, PopAuthError::kNoKey);
}

TEST_F(PopAuthDbTest, ExposureCheckReportsGroupAccess) {
  Init();
  EXPECT_TRUE(CheckPopAuthExposure(files_).empty());
  ASSERT_EQ(chmod(files_.key_path.c_str(), 0640), 0);
  auto found = CheckPopAuthExposure(files_);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].find(files_.key_path), std::string::npos);
}

TEST(PopAuthErrorText, NamesEveryCode) {
  for (auto e :
       {PopAuthError::kNoDatabase, PopAuthError::kNoKey,
        PopAuthError::kBadPermissions, PopAuthError::kCorrupt,
        PopAuthError::kIo, PopAuthError::kLocked, PopAuthError::kNoSuchUser,
        PopAuthError::kExists, PopAuthError::kBadName}) {
    EXPECT_NE(PopAuthErrorText(e), "unknown error");
  }
}

}  // namespace
}  // namespace popguard::monitor
