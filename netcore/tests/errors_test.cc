#include "diyc/netcore/errors.h"

#include <cerrno>

#include "diyc/netcore/status_macros.h"
#include "gtest/gtest.h"

namespace diyc::netcore {
namespace {

TEST(Errors, ErrnoCarriesCodeMessageAndErrno) {
  absl::Status status = ErrnoError(EEXIST, "create veth 'v0' in netns 'a'");
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(status.message(), "create veth 'v0' in netns 'a': File exists");
  EXPECT_EQ(StatusErrno(status), EEXIST);
  EXPECT_EQ(ErrnoError(EXFULL, "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoError(ENODEV, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoError(EINVAL, "x", "Attribute failed policy validation").message(),
            "x: Attribute failed policy validation (Invalid argument)");
}

TEST(Errors, AnnotateKeepsCodeAndErrno) {
  absl::Status status = Annotate(ErrnoError(ENOENT, "open netns 'a'"), "attach");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "attach: open netns 'a': No such file or directory");
  EXPECT_EQ(StatusErrno(status), ENOENT);
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST(Errors, QuoteEscapesControlCharacters) {
  EXPECT_EQ(Quote("eth0"), "'eth0'");
  EXPECT_EQ(Quote("a\nb'"), "'a\\x0ab\\x27'");
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  DIYC_ASSIGN_OR_RETURN(int half, Half(x));
  DIYC_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

TEST(StatusMacros, PropagateFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace diyc::netcore
