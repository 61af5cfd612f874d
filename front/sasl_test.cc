#include "front/sasl.h"

#include <gtest/gtest.h>

namespace popguard::front {
namespace {

TEST(DecodeBase64, DecodesCanonicalInput) {
  EXPECT_EQ(DecodeBase64("aGVsbG8="), "hello");
  EXPECT_EQ(DecodeBase64("aGVsbA=="), "hell");
  EXPECT_EQ(DecodeBase64("aGVs"), "hel");
  EXPECT_EQ(DecodeBase64(""), "");
}

TEST(DecodeBase64, RejectsBadLengthAlphabetAndInnerPadding) {
  EXPECT_FALSE(DecodeBase64("aGVsbG8"));
  EXPECT_FALSE(DecodeBase64("aGV!bG8="));
  EXPECT_FALSE(DecodeBase64("aG=sbG8="));
  EXPECT_FALSE(DecodeBase64("aGVsbG8 "));
  EXPECT_FALSE(DecodeBase64("a==="));
  EXPECT_FALSE(DecodeBase64("="));
}

TEST(DecodePlain, SplitsTheThreeFields) {
  // "\0alice\0secret"
  auto c = DecodePlain("AGFsaWNlAHNlY3JldA==");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->authzid, "");
  EXPECT_EQ(c->authcid, "alice");
  EXPECT_EQ(c->password, "secret");
}

TEST(DecodePlain, KeepsAnAuthorizationIdentityForTheCallerToJudge) {
  // "bob\0alice\0secret"
  auto c = DecodePlain("Ym9iAGFsaWNlAHNlY3JldA==");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->authzid, "bob");
  EXPECT_EQ(c->authcid, "alice");
}

TEST(DecodePlain, RejectsMissingFieldsAndExtraNul) {
  EXPECT_EQ(DecodePlain("YWxpY2U=").error(), PlainError::kBadFormat);
  // "\0\0secret": empty user
  EXPECT_EQ(DecodePlain("AABzZWNyZXQ=").error(), PlainError::kBadFormat);
  // "\0alice\0": empty password
  EXPECT_EQ(DecodePlain("AGFsaWNlAA==").error(), PlainError::kBadFormat);
  // "\0alice\0se\0cret"
  EXPECT_EQ(DecodePlain("AGFsaWNlAHNlAGNyZXQ=").error(),
            PlainError::kBadFormat);
}

TEST(DecodePlain, RejectsBadBase64) {
  EXPECT_EQ(DecodePlain("not base64!").error(), PlainError::kBadBase64);
  EXPECT_EQ(DecodePlain("=").error(), PlainError::kBadBase64);
}

}  // namespace
}  // namespace popguard::front
