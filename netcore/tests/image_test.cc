#include "diyc/netcore/image.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace diyc::netcore {
namespace {

using ::testing::HasSubstr;

#ifndef DIYC_SOURCE_DIR
#error "DIYC_SOURCE_DIR must point at the source tree (set in netcore/tests/CMakeLists.txt)"
#endif
constexpr char kImagesPy[] = DIYC_SOURCE_DIR "/bindings/python/diyc/images.py";
constexpr char kBusybox[] = "/bin/busybox";
constexpr char kPython[] = "/usr/bin/python3";

bool IsRoot() { return ::geteuid() == 0; }

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
    ASSERT_TRUE(out.good()) << path;
  }
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string("<not a symlink>") : std::string(buf, static_cast<size_t>(n));
}

void MakeDir(const std::string& path, mode_t mode = 0755) {
  ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

void SetMtime(const std::string& path, time_t sec, long nsec) {
  const struct timespec times[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

bool IsEmptyDir(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_empty(path, ec) && !ec;
}

// Runs a program (test code only) and returns its exit status, -1 if it did
// not exit normally.
int RunProgram(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Builds tar archives byte by byte, including ones no well-behaved tar
// program would write.
struct TarHeader {
  uint32_t mode = 0644;
  uint64_t uid = 0;
  uint64_t gid = 0;
  uint64_t mtime = 1700000000;
};

class TarBuilder {
 public:
  using Header = TarHeader;

  TarBuilder& Entry(char type, const std::string& name, const std::string& data = "", const std::string& link = "",
                    const TarHeader& h = TarHeader()) {
    std::string block(512, '\0');
    std::memcpy(&block[0], name.data(), std::min<size_t>(name.size(), 100));
    Octal(block, 100, 8, h.mode);
    Octal(block, 108, 8, h.uid);
    Octal(block, 116, 8, h.gid);
    Octal(block, 124, 12, data.size());
    Octal(block, 136, 12, h.mtime);
    block[156] = type;
    std::memcpy(&block[157], link.data(), std::min<size_t>(link.size(), 100));
    std::memcpy(&block[257], "ustar\0" "00", 8);
    std::memcpy(&block[265], "root", 4);
    std::memcpy(&block[297], "root", 4);
    header_offsets_.push_back(bytes_.size());
    bytes_ += block;
    FixChecksum(bytes_, header_offsets_.back());
    bytes_ += data;
    bytes_.append((512 - data.size() % 512) % 512, '\0');
    return *this;
  }
  TarBuilder& File(const std::string& name, const std::string& data, uint32_t mode = 0644) {
    return Entry('0', name, data, "", Header{.mode = mode});
  }
  TarBuilder& Dir(const std::string& name, uint32_t mode = 0755) {
    return Entry('5', name, "", "", Header{.mode = mode});
  }
  TarBuilder& Symlink(const std::string& name, const std::string& target) {
    return Entry('2', name, "", target, Header{.mode = 0777});
  }
  TarBuilder& HardLink(const std::string& name, const std::string& target) { return Entry('1', name, "", target); }
  TarBuilder& Pax(char type, const std::map<std::string, std::string>& records) {
    std::string data;
    for (const auto& [key, value] : records) {
      std::string body = " " + key + "=" + value + "\n";
      size_t length = body.size() + 1;
      while (std::to_string(length).size() + body.size() != length) ++length;
      data += std::to_string(length) + body;
    }
    return Entry(type, "PaxHeaders/x", data);
  }
  TarBuilder& GnuLongName(const std::string& name) { return Entry('L', "././@LongLink", name + '\0'); }

  std::string Finish(bool end_marker = true) const {
    return end_marker ? bytes_ + std::string(1024, '\0') : bytes_;
  }
  const std::vector<size_t>& header_offsets() const { return header_offsets_; }

  static void FixChecksum(std::string& tar, size_t off) {
    std::memset(&tar[off + 148], ' ', 8);
    unsigned sum = 0;
    for (size_t i = off; i < off + 512; ++i) sum += static_cast<unsigned char>(tar[i]);
    char digits[16];
    std::snprintf(digits, sizeof(digits), "%06o", sum & 0777777);
    std::memcpy(&tar[off + 148], digits, 6);
    tar[off + 154] = '\0';
  }

 private:
  static void Octal(std::string& block, size_t off, size_t len, uint64_t value) {
    char digits[32];
    std::snprintf(digits, sizeof(digits), "%0*llo", static_cast<int>(len - 1), static_cast<unsigned long long>(value));
    std::memcpy(&block[off], digits, len - 1);  // the field's last byte stays NUL
  }
  std::string bytes_;
  std::vector<size_t> header_offsets_;
};

class ImageTest : public testing::Test {
 protected:
  void SetUp() override {
    char base[] = "/tmp/diyc-image-test-XXXXXX";
    ASSERT_NE(::mkdtemp(base), nullptr);
    base_ = base;
    outside_ = base_ + "/outside";
    MakeDir(outside_);
    src_ = base_ + "/src";
    dest_ = base_ + "/dest";
    tar_ = base_ + "/image.tar";
  }

  void TearDown() override {
    if (base_.empty()) return;
    absl::Status removed = RemoveTree(base_);
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
    EXPECT_TRUE(removed.ok()) << removed;
    EXPECT_FALSE(Exists(base_));
  }

  void WriteTar(const std::string& bytes) {
    std::ofstream out(tar_, std::ios::binary | std::ios::trunc);
    out << bytes;
    ASSERT_TRUE(out.good());
  }

  absl::StatusOr<ImageStats> Import(const TarBuilder& tar, const ImportOptions& options = {}) {
    WriteTar(tar.Finish());
    return ImportTar(tar_, dest_, options);
  }

  // After a refused archive: no image, and nothing next to it.
  void ExpectRejected(const absl::StatusOr<ImageStats>& result, absl::StatusCode code) {
    EXPECT_EQ(result.status().code(), code) << result.status();
    EXPECT_FALSE(Exists(dest_)) << "the partial image was left behind";
    EXPECT_TRUE(IsEmptyDir(outside_)) << "something was written outside the image";
    EXPECT_FALSE(Exists(base_ + "/evil"));
  }

  std::string base_, outside_, src_, dest_, tar_;
};

TEST(ImageName, Valid) {
  for (const std::string& name : {std::string("busybox"), std::string("a"), std::string("Debian-12.5_slim"),
                                  std::string("0"), std::string(63, 'x')}) {
    EXPECT_TRUE(ValidateImageName(name).ok()) << name;
  }
}

TEST(ImageName, RejectsPathAndMountOptionSyntax) {
  for (const std::string& name :
       {std::string(), std::string("."), std::string(".."), std::string("-x"), std::string("_x"),
        std::string(".hidden"), std::string("a/b"), std::string("x,upperdir=/etc"), std::string("a:b"),
        std::string("a\\b"), std::string("a b"), std::string("a=b"), std::string("a\nb"), std::string("a\0b", 3),
        std::string(64, 'x'), std::string("caf\xc3\xa9")}) {
    EXPECT_EQ(ValidateImageName(name).code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

TEST_F(ImageTest, ImportDirectoryCopiesFilesDirsSymlinksAndModes) {
  MakeDir(src_, 0700);  // a mkdtemp-style root; the image root still becomes 0755
  WriteFile(src_ + "/a.txt", "hello\n", 0640);
  SetMtime(src_ + "/a.txt", 1600000000, 500);
  MakeDir(src_ + "/sub", 0750);
  MakeDir(src_ + "/sub/deep", 0700);
  WriteFile(src_ + "/sub/deep/f", std::string(300000, 'z'), 0600);
  MakeDir(src_ + "/bin");
  WriteFile(src_ + "/bin/tool", "#!/bin/sh\n", 04755);
  MakeDir(src_ + "/tmp", 01777);
  MakeDir(src_ + "/shared", 02775);
  ASSERT_EQ(::symlink(outside_.c_str(), (src_ + "/abs").c_str()), 0);
  ASSERT_EQ(::symlink("a.txt", (src_ + "/rel").c_str()), 0);
  ASSERT_EQ(::symlink("../nowhere", (src_ + "/dangling").c_str()), 0);
  ASSERT_EQ(::link((src_ + "/a.txt").c_str(), (src_ + "/sub/hard").c_str()), 0);
  SetMtime(src_ + "/sub", 1500000000, 0);  // after its last change
  ASSERT_EQ(::mkfifo((src_ + "/pipe").c_str(), 0644), 0);
  MakeDir(src_ + "/ro", 0755);
  WriteFile(src_ + "/ro/f", "x");
  ASSERT_EQ(::chmod((src_ + "/ro").c_str(), 0555), 0);
  if (IsRoot()) {
    ASSERT_EQ(::chown((src_ + "/a.txt").c_str(), 1234, 5678), 0);
    ASSERT_EQ(::lchown((src_ + "/rel").c_str(), 42, 43), 0);
    ASSERT_EQ(::chown((src_ + "/sub").c_str(), 7, 8), 0);
  }

  absl::StatusOr<ImageStats> stats = ImportDirectory(src_, dest_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->files, 4u);  // a.txt, sub/deep/f, bin/tool, ro/f; sub/hard is a link
  EXPECT_EQ(stats->hard_links, 1u);
  EXPECT_EQ(stats->symlinks, 3u);
  EXPECT_EQ(stats->directories, 6u);
  EXPECT_EQ(stats->skipped, 1u);  // the fifo
  EXPECT_EQ(stats->bytes, 6u + 300000u + 10u + 1u);

  EXPECT_EQ(Lstat(dest_).st_mode & 07777, 0755u);
  EXPECT_EQ(ReadFile(dest_ + "/a.txt"), "hello\n");
  struct stat a = Lstat(dest_ + "/a.txt");
  EXPECT_EQ(a.st_mode & 07777, 0640u);
  EXPECT_EQ(a.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(a.st_mtim.tv_nsec, 500);
  EXPECT_EQ(ReadFile(dest_ + "/sub/deep/f").size(), 300000u);
  EXPECT_EQ(Lstat(dest_ + "/sub/deep/f").st_mode & 07777, 0600u);
  struct stat sub = Lstat(dest_ + "/sub");
  EXPECT_EQ(sub.st_mode & 07777, 0750u);
  EXPECT_EQ(sub.st_mtim.tv_sec, 1500000000);  // kept although children were created after it
  EXPECT_EQ(Lstat(dest_ + "/bin/tool").st_mode & 07777, 0755u) << "setuid must be dropped";
  EXPECT_EQ(Lstat(dest_ + "/tmp").st_mode & 07777, 01777u);
  EXPECT_EQ(Lstat(dest_ + "/shared").st_mode & 07777, 02775u) << "setgid directories keep the bit";
  EXPECT_EQ(Lstat(dest_ + "/ro").st_mode & 07777, 0555u);
  EXPECT_EQ(ReadFile(dest_ + "/ro/f"), "x");
  EXPECT_EQ(ReadLink(dest_ + "/abs"), outside_);
  EXPECT_EQ(ReadLink(dest_ + "/rel"), "a.txt");
  EXPECT_EQ(ReadLink(dest_ + "/dangling"), "../nowhere");
  EXPECT_EQ(Lstat(dest_ + "/sub/hard").st_ino, a.st_ino) << "hard links stay hard links";
  EXPECT_FALSE(Exists(dest_ + "/pipe"));
  EXPECT_TRUE(IsEmptyDir(outside_));
  if (IsRoot()) {
    EXPECT_EQ(a.st_uid, 1234u);
    EXPECT_EQ(a.st_gid, 5678u);
    EXPECT_EQ(Lstat(dest_ + "/rel").st_uid, 42u);
    EXPECT_EQ(Lstat(dest_ + "/rel").st_gid, 43u);
    EXPECT_EQ(sub.st_uid, 7u);
  }

  ImportOptions keep;
  keep.keep_setid_bits = true;
  ASSERT_TRUE(ImportDirectory(src_, base_ + "/dest2", keep).ok());
  EXPECT_EQ(Lstat(base_ + "/dest2/bin/tool").st_mode & 07777, 04755u);
}

TEST_F(ImageTest, ImportDirectoryRefusesExistingDestination) {
  MakeDir(src_);
  WriteFile(src_ + "/f", "new");
  MakeDir(dest_);
  WriteFile(dest_ + "/keep", "old");
  absl::StatusOr<ImageStats> stats = ImportDirectory(src_, dest_);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kAlreadyExists) << stats.status();
  EXPECT_EQ(ReadFile(dest_ + "/keep"), "old");
  EXPECT_FALSE(Exists(dest_ + "/f"));
}

TEST_F(ImageTest, ImportDirectoryMissingSourceIsNotFound) {
  absl::StatusOr<ImageStats> stats = ImportDirectory(base_ + "/missing", dest_);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kNotFound) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("import image from directory"));
  EXPECT_FALSE(Exists(dest_));
}

TEST_F(ImageTest, ImportDirectorySkipsDestinationInsideSource) {
  MakeDir(src_);
  WriteFile(src_ + "/f", "data");
  absl::StatusOr<ImageStats> stats = ImportDirectory(src_, src_ + "/image");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(src_ + "/image/f"), "data");
  EXPECT_FALSE(Exists(src_ + "/image/image"));
}

TEST_F(ImageTest, ImportDirectoryLimits) {
  MakeDir(src_);
  WriteFile(src_ + "/a", "12345");
  WriteFile(src_ + "/b", "67890");
  ImportOptions options;
  options.max_bytes = 9;
  EXPECT_EQ(ImportDirectory(src_, dest_, options).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(Exists(dest_));
  options = ImportOptions();
  options.max_entries = 2;  // the root and one file
  EXPECT_EQ(ImportDirectory(src_, dest_, options).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(Exists(dest_));
}

// Archives written by GNU tar in each of its output formats.
class TarProgramTest : public ImageTest, public testing::WithParamInterface<std::string> {};

TEST_P(TarProgramTest, ImportsWhatTarWrote) {
  if (!Exists("/usr/bin/tar") && !Exists("/bin/tar")) GTEST_SKIP() << "no tar program";
  const std::string format = GetParam();
  MakeDir(src_);
  // 126 characters: beyond the 100-byte name field, within ustar's prefix.
  const std::string long_dir = std::string(60, 'd') + "/" + std::string(60, 'e');
  ASSERT_TRUE(std::filesystem::create_directories(src_ + "/" + long_dir));
  WriteFile(src_ + "/" + long_dir + "/file", "deep");
  WriteFile(src_ + "/plain", "plain data", 0600);
  MakeDir(src_ + "/etc");
  WriteFile(src_ + "/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  ASSERT_EQ(::symlink("/etc/passwd", (src_ + "/passwd-link").c_str()), 0);
  ASSERT_EQ(::link((src_ + "/plain").c_str(), (src_ + "/plain-hard").c_str()), 0);
  std::string long_target;
  if (format != "ustar") {
    const std::string long_name = std::string(150, 'n');  // one component, too long for ustar
    WriteFile(src_ + "/" + long_dir + "/" + long_name, "long");
    long_target = long_dir + "/" + long_name;
    ASSERT_EQ(::symlink(long_target.c_str(), (src_ + "/long-link").c_str()), 0);
  }

  const std::string tar_program = Exists("/usr/bin/tar") ? "/usr/bin/tar" : "/bin/tar";
  ASSERT_EQ(RunProgram({tar_program, "--format=" + format, "-cf", tar_, "-C", src_, "."}), 0);
  absl::StatusOr<ImageStats> stats = ImportTar(tar_, dest_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(dest_ + "/" + long_dir + "/file"), "deep");
  EXPECT_EQ(ReadFile(dest_ + "/plain"), "plain data");
  EXPECT_EQ(Lstat(dest_ + "/plain").st_mode & 07777, 0600u);
  EXPECT_EQ(Lstat(dest_ + "/plain-hard").st_ino, Lstat(dest_ + "/plain").st_ino);
  EXPECT_EQ(ReadLink(dest_ + "/passwd-link"), "/etc/passwd");
  EXPECT_EQ(ReadFile(dest_ + "/etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
  EXPECT_EQ(Lstat(dest_).st_mode & 07777, 0755u);
  if (!long_target.empty()) {
    EXPECT_EQ(ReadLink(dest_ + "/long-link"), long_target);
    EXPECT_EQ(ReadFile(dest_ + "/" + long_target), "long");
  }
  EXPECT_EQ(stats->hard_links, 1u);
}

INSTANTIATE_TEST_SUITE_P(Formats, TarProgramTest, testing::Values("gnu", "posix", "ustar"));

TEST_F(ImageTest, DotDotEntryIsRejected) {
  absl::StatusOr<ImageStats> result = Import(TarBuilder().File("ok", "fine").File("../evil", "pwned"));
  ExpectRejected(result, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("import image from tar '" + tar_ +
                                                   "': entry '../evil': path escapes the image"));
}

TEST_F(ImageTest, NestedDotDotEntryIsRejected) {
  ExpectRejected(Import(TarBuilder().Dir("a").File("a/../../evil", "pwned")), absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().File("a/..", "pwned")), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTest, AbsoluteEntryIsStrippedIntoTheImage) {
  const std::string abs_name = outside_ + "/evil";  // an absolute host path that exists
  absl::StatusOr<ImageStats> result = Import(TarBuilder().File(abs_name, "inside").File("/abs/evil", "inside"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(dest_ + abs_name), "inside");
  EXPECT_EQ(ReadFile(dest_ + "/abs/evil"), "inside");
  EXPECT_TRUE(IsEmptyDir(outside_));
  EXPECT_FALSE(Exists("/abs"));
}

TEST_F(ImageTest, SymlinkToHostDirectoryIsNotFollowedByLaterEntries) {
  // In the image root, the link's target does not exist: refused.
  ExpectRejected(Import(TarBuilder().Symlink("link", outside_).File("link/evil", "pwned")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Symlink("link", "../outside").File("link/evil", "pwned")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Symlink("link", outside_).Dir("link/sub")),
                 absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTest, SymlinksResolveInsideTheImageRoot) {
  // Once the target exists inside the image, the same archive lands there.
  absl::StatusOr<ImageStats> result =
      Import(TarBuilder().Symlink("link", outside_).Dir(outside_.substr(1)).File("link/evil", "inside"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(dest_ + outside_ + "/evil"), "inside");
  EXPECT_TRUE(IsEmptyDir(outside_));
}

TEST_F(ImageTest, DotDotSymlinkIsClampedToTheImageRoot) {
  absl::StatusOr<ImageStats> result =
      Import(TarBuilder().Symlink("link", "../../../../../../..").File("link/evil", "clamped"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(dest_ + "/evil"), "clamped");
  EXPECT_EQ(ReadLink(dest_ + "/link"), "../../../../../../..") << "symlink targets are stored verbatim";
  EXPECT_TRUE(IsEmptyDir(outside_));
  EXPECT_FALSE(Exists(base_ + "/evil"));
}

TEST_F(ImageTest, HardLinksMustStayInsideTheImage) {
  const std::string secret_dir = base_ + "/secret";
  MakeDir(secret_dir);
  WriteFile(secret_dir + "/secret", "s3cret");
  const nlink_t passwd_links = Lstat("/etc/passwd").st_nlink;

  ExpectRejected(Import(TarBuilder().HardLink("h", "/etc/passwd")), absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().HardLink("h", "../secret/secret")), absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().HardLink("h", secret_dir + "/secret")), absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Symlink("link", secret_dir).HardLink("h", "link/secret")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Symlink("link", "..").HardLink("h", "link/secret/secret")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Dir("d").HardLink("h", "d")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Lstat(secret_dir + "/secret").st_nlink, 1u);
  EXPECT_EQ(Lstat("/etc/passwd").st_nlink, passwd_links);
}

TEST_F(ImageTest, HardLinkToSymlinkLinksTheSymlinkItself) {
  const std::string secret = base_ + "/secret";
  WriteFile(secret, "s3cret");
  absl::StatusOr<ImageStats> result = Import(TarBuilder().Symlink("s", secret).HardLink("h", "s").File("h", "new"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadLink(dest_ + "/s"), secret);
  EXPECT_EQ(ReadFile(dest_ + "/h"), "new");
  EXPECT_EQ(ReadFile(secret), "s3cret");
  EXPECT_EQ(Lstat(secret).st_nlink, 1u);
}

TEST_F(ImageTest, EntryReplacesSymlinkInsteadOfFollowingIt) {
  const std::string victim = outside_ + "/file";
  absl::StatusOr<ImageStats> result = Import(TarBuilder()
                                                 .Symlink("x", victim)
                                                 .File("x", "data")
                                                 .Symlink("d", outside_)
                                                 .Dir("d")
                                                 .File("d/f", "in d")
                                                 .Symlink("s", outside_)
                                                 .Symlink("s", "elsewhere"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(S_ISREG(Lstat(dest_ + "/x").st_mode));
  EXPECT_EQ(ReadFile(dest_ + "/x"), "data");
  EXPECT_TRUE(S_ISDIR(Lstat(dest_ + "/d").st_mode));
  EXPECT_EQ(ReadFile(dest_ + "/d/f"), "in d");
  EXPECT_EQ(ReadLink(dest_ + "/s"), "elsewhere");
  EXPECT_TRUE(IsEmptyDir(outside_));
}

TEST_F(ImageTest, ReplacingAHardLinkedFileDoesNotWriteThrough) {
  absl::StatusOr<ImageStats> result =
      Import(TarBuilder().File("a", "original").HardLink("b", "a").File("b", "replacement"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(dest_ + "/a"), "original");
  EXPECT_EQ(ReadFile(dest_ + "/b"), "replacement");
}

TEST_F(ImageTest, DirectoryReplacedByFileAndBack) {
  absl::StatusOr<ImageStats> result =
      Import(TarBuilder().Dir("d").File("d/x", "x").File("d", "now a file").File("f", "f").Dir("f").File("f/y", "y"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(dest_ + "/d"), "now a file");
  EXPECT_EQ(ReadFile(dest_ + "/f/y"), "y");
}

TEST_F(ImageTest, ExtensionHeadersCannotSmuggleEscapes) {
  ExpectRejected(Import(TarBuilder().Pax('x', {{"path", "../evil"}}).File("harmless", "pwned")),
                 absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Exists(base_ + "/harmless"));
  ExpectRejected(Import(TarBuilder().GnuLongName("../../evil").File("harmless", "pwned")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().File("ok", "x").Pax('x', {{"linkpath", "../../etc/passwd"}}).HardLink("h", "ok")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Pax('g', {{"path", "../evil"}}).File("a", "pwned")),
                 absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Pax('x', {{"path", std::string("a\0b", 3)}}).File("a", "x")),
                 absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTest, LongNamesAndPaxAttributes) {
  const std::string long_path = std::string(120, 'a') + "/" + std::string(200, 'b');
  const std::string gnu_path = std::string(100, 'g') + "/" + std::string(100, 'h');
  absl::StatusOr<ImageStats> result =
      Import(TarBuilder()
                 .Pax('g', {{"mtime", "1234567890.25"}})
                 .Pax('x', {{"path", long_path}, {"size", "5"}})
                 .Entry('0', "short-name-ignored", "12345")
                 .GnuLongName(gnu_path)
                 .File("ignored-too", "gnu")
                 .Pax('x', {{"linkpath", long_path}})
                 .Symlink("link", "ignored"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(dest_ + "/" + long_path), "12345");
  EXPECT_EQ(ReadFile(dest_ + "/" + gnu_path), "gnu");
  EXPECT_EQ(ReadLink(dest_ + "/link"), long_path);
  EXPECT_FALSE(Exists(dest_ + "/short-name-ignored"));
  struct stat st = Lstat(dest_ + "/" + long_path);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_mtim.tv_nsec, 250000000);
}

TEST_F(ImageTest, DevicesFifosAndLinksToThemAreSkipped) {
  absl::StatusOr<ImageStats> result = Import(TarBuilder()
                                                 .Entry('3', "dev/null")
                                                 .Entry('4', "dev/sda")
                                                 .Entry('6', "fifo")
                                                 .HardLink("dev/null2", "dev/null")
                                                 .File("ok", "ok"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->skipped, 4u);
  EXPECT_EQ(result->files, 1u);
  EXPECT_FALSE(Exists(dest_ + "/dev/null"));
  EXPECT_FALSE(Exists(dest_ + "/dev/sda"));
  EXPECT_FALSE(Exists(dest_ + "/fifo"));
  EXPECT_FALSE(Exists(dest_ + "/dev/null2"));
}

TEST_F(ImageTest, ModesOwnersAndTimesFromTheArchive) {
  TarBuilder tar;
  tar.Entry('5', "./", "", "", {.mode = 0700, .uid = 0, .gid = 0, .mtime = 1111111111})
      .File("bin/su", "su", 04755)
      .File("bin/wall", "wall", 02755)
      .Entry('0', "owned", "o", "", {.mode = 0640, .uid = 1234, .gid = 5678, .mtime = 1000000000})
      .Entry('2', "owned-link", "", "owned", {.mode = 0777, .uid = 42, .gid = 43})
      .Entry('5', "ro", "", "", {.mode = 0555, .uid = 7, .gid = 8, .mtime = 1222222222})
      .File("ro/inside", "x", 0444)
      .Entry('5', "sgid", "", "", {.mode = 02770})
      .Entry('5', "tmp", "", "", {.mode = 01777});
  absl::StatusOr<ImageStats> result = Import(tar);
  ASSERT_TRUE(result.ok()) << result.status();
  struct stat root = Lstat(dest_);
  EXPECT_EQ(root.st_mode & 07777, 0755u) << "the image root is always 0755";
  EXPECT_EQ(root.st_mtim.tv_sec, 1111111111);
  EXPECT_EQ(Lstat(dest_ + "/bin").st_mode & 07777, 0755u) << "implicit parents are 0755";
  EXPECT_EQ(Lstat(dest_ + "/bin/su").st_mode & 07777, 0755u);
  EXPECT_EQ(Lstat(dest_ + "/bin/wall").st_mode & 07777, 0755u);
  EXPECT_EQ(Lstat(dest_ + "/owned").st_mode & 07777, 0640u);
  EXPECT_EQ(Lstat(dest_ + "/owned").st_mtim.tv_sec, 1000000000);
  struct stat ro = Lstat(dest_ + "/ro");
  EXPECT_EQ(ro.st_mode & 07777, 0555u);
  EXPECT_EQ(ro.st_mtim.tv_sec, 1222222222);
  EXPECT_EQ(ReadFile(dest_ + "/ro/inside"), "x");
  EXPECT_EQ(Lstat(dest_ + "/sgid").st_mode & 07777, 02770u);
  EXPECT_EQ(Lstat(dest_ + "/tmp").st_mode & 07777, 01777u);
  if (IsRoot()) {
    EXPECT_EQ(Lstat(dest_ + "/owned").st_uid, 1234u);
    EXPECT_EQ(Lstat(dest_ + "/owned").st_gid, 5678u);
    EXPECT_EQ(Lstat(dest_ + "/owned-link").st_uid, 42u);
    EXPECT_EQ(Lstat(dest_ + "/owned-link").st_gid, 43u);
    EXPECT_EQ(ro.st_uid, 7u);
    EXPECT_EQ(ro.st_gid, 8u);
  }
  ASSERT_TRUE(RemoveTree(dest_).ok());

  ImportOptions keep;
  keep.keep_setid_bits = true;
  result = Import(tar, keep);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(Lstat(dest_ + "/bin/su").st_mode & 07777, 04755u);
}

TEST_F(ImageTest, OwnerOutOfRangeIsRejected) {
  ExpectRejected(Import(TarBuilder().Pax('x', {{"uid", "4294967295"}}).File("f", "x")),
                 absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTest, FileCannotReplaceTheRoot) {
  ExpectRejected(Import(TarBuilder().File("./", "x")), absl::StatusCode::kInvalidArgument);
  ExpectRejected(Import(TarBuilder().Symlink("/", "/etc")), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTest, TruncatedArchivesAreDataLossAndLeaveNothing) {
  const std::string full = TarBuilder().File("a", "aaa").File("big", std::string(5000, 'b')).Finish();
  // Cut inside the data of "big".
  WriteTar(full.substr(0, 1024 + 512 + 1000));
  absl::StatusOr<ImageStats> result = ImportTar(tar_, dest_);
  ExpectRejected(result, absl::StatusCode::kDataLoss);
  EXPECT_THAT(result.status().message(), HasSubstr("truncated"));
  // Cut at an entry boundary: only the missing end-of-archive marker tells.
  WriteTar(full.substr(0, 1024));
  ExpectRejected(ImportTar(tar_, dest_), absl::StatusCode::kDataLoss);
  // Cut inside a header.
  WriteTar(full.substr(0, 1024 + 100));
  ExpectRejected(ImportTar(tar_, dest_), absl::StatusCode::kDataLoss);
  // Through a fifo the size is unknown up front; the data still runs out.
  const std::string fifo = base_ + "/fifo.tar";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  pid_t writer = ::fork();
  if (writer == 0) {
    int fd = ::open(fifo.c_str(), O_WRONLY);
    const std::string cut = full.substr(0, 1024 + 512 + 1000);
    ssize_t ignored = ::write(fd, cut.data(), cut.size());
    (void)ignored;
    ::_exit(0);
  }
  ExpectRejected(ImportTar(fifo, dest_), absl::StatusCode::kDataLoss);
  ::waitpid(writer, nullptr, 0);
}

TEST_F(ImageTest, CorruptAndForeignFiles) {
  std::string tar = TarBuilder().File("a", "aaa").File("b", "bbb").Finish();
  tar[1024 + 10] ^= 0x01;  // a byte of the second header's name
  WriteTar(tar);
  absl::StatusOr<ImageStats> result = ImportTar(tar_, dest_);
  ExpectRejected(result, absl::StatusCode::kDataLoss);
  EXPECT_THAT(result.status().message(), HasSubstr("checksum"));

  WriteTar(std::string(2048, 'x'));
  ExpectRejected(ImportTar(tar_, dest_), absl::StatusCode::kInvalidArgument);
  WriteTar(std::string("\x1f\x8b\x08\x00", 4) + std::string(1020, '\0'));
  result = ImportTar(tar_, dest_);
  ExpectRejected(result, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("gzip"));
  WriteTar("");
  ExpectRejected(ImportTar(tar_, dest_), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImportTar(base_ + "/missing.tar", dest_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ImportTar(outside_, dest_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Exists(dest_));
  // A header that claims more data than the file holds is refused before
  // anything is written.
  std::string lying = TarBuilder().File("big", std::string(600, 'x')).Finish().substr(0, 512);
  lying.replace(124, 12, std::string("77777777777\0", 12));  // size field: 8 GiB
  TarBuilder::FixChecksum(lying, 0);
  WriteTar(lying + std::string(1024, '\0'));
  ExpectRejected(ImportTar(tar_, dest_), absl::StatusCode::kDataLoss);
}

TEST_F(ImageTest, EmptyArchiveGivesEmptyImage) {
  WriteTar(std::string(10240, '\0'));
  absl::StatusOr<ImageStats> result = ImportTar(tar_, dest_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(IsEmptyDir(dest_));
}

TEST_F(ImageTest, TarLimits) {
  ImportOptions options;
  options.max_entries = 2;
  ExpectRejected(Import(TarBuilder().File("a", "1").File("b", "2").File("c", "3"), options),
                 absl::StatusCode::kResourceExhausted);
  options = ImportOptions();
  options.max_bytes = 10;
  absl::StatusOr<ImageStats> result = Import(TarBuilder().File("a", "12345").File("b", "123456"), options);
  ExpectRejected(result, absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(result.status().message(), HasSubstr("entry 'b'"));
  options.max_bytes = 11;
  EXPECT_TRUE(Import(TarBuilder().File("a", "12345").File("b", "123456"), options).ok());
}

TEST_F(ImageTest, RemoveTreeNeverLeavesTheTree) {
  MakeDir(src_);
  WriteFile(outside_ + "/keep", "keep");
  ASSERT_EQ(::symlink(outside_.c_str(), (src_ + "/escape").c_str()), 0);
  ASSERT_EQ(::symlink("../outside/keep", (src_ + "/keep-link").c_str()), 0);
  std::string deep = src_;
  for (int i = 0; i < 300; ++i) {
    deep += "/d";
    MakeDir(deep, 0755);
  }
  WriteFile(deep + "/leaf", "x");
  MakeDir(src_ + "/locked", 0755);
  MakeDir(src_ + "/locked/inner", 0755);
  WriteFile(src_ + "/locked/inner/f", "x");
  ASSERT_EQ(::chmod((src_ + "/locked/inner").c_str(), 0), 0);
  ASSERT_EQ(::chmod((src_ + "/locked").c_str(), 0555), 0);

  absl::Status status = RemoveTree(src_);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_FALSE(Exists(src_));
  EXPECT_EQ(ReadFile(outside_ + "/keep"), "keep");
  EXPECT_EQ(RemoveTree(src_).code(), absl::StatusCode::kNotFound);

  // A symlink given as the tree is removed itself, not what it points to.
  ASSERT_EQ(::symlink(outside_.c_str(), src_.c_str()), 0);
  ASSERT_TRUE(RemoveTree(src_).ok());
  EXPECT_FALSE(Exists(src_));
  EXPECT_EQ(ReadFile(outside_ + "/keep"), "keep");
  EXPECT_EQ(RemoveTree("/").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageTest, RemoveTreeStopsAtMountPoints) {
  if (!IsRoot()) GTEST_SKIP() << "mounting needs root";
  MakeDir(src_);
  MakeDir(src_ + "/mnt");
  ASSERT_EQ(::mount("diyc-image-test", (src_ + "/mnt").c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  WriteFile(src_ + "/mnt/precious", "precious");
  absl::Status status = RemoveTree(src_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(ReadFile(src_ + "/mnt/precious"), "precious");
  EXPECT_EQ(RemoveTree(src_ + "/mnt").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadFile(src_ + "/mnt/precious"), "precious");
  ASSERT_EQ(::umount2((src_ + "/mnt").c_str(), MNT_DETACH), 0);
  EXPECT_TRUE(RemoveTree(src_).ok());
}

TEST_F(ImageTest, ImportDirectoryDoesNotCrossMountPoints) {
  if (!IsRoot()) GTEST_SKIP() << "mounting needs root";
  MakeDir(src_);
  MakeDir(src_ + "/proc");
  WriteFile(src_ + "/f", "f");
  ASSERT_EQ(::mount("diyc-image-test", (src_ + "/proc").c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  WriteFile(src_ + "/proc/host-only", "x");
  absl::StatusOr<ImageStats> result = ImportDirectory(src_, dest_);
  ::umount2((src_ + "/proc").c_str(), MNT_DETACH);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(IsEmptyDir(dest_ + "/proc"));
  EXPECT_EQ(ReadFile(dest_ + "/f"), "f");
}

// Random byte changes, with header checksums repaired so they reach the
// parser's later checks: whatever the archive says, the import either
// succeeds inside dest or fails and leaves nothing, and never writes outside.
TEST_F(ImageTest, MutatedArchivesNeverEscape) {
  TarBuilder builder;
  builder.Symlink("link", outside_)
      .Symlink("up", "../../..")
      .Dir("d")
      .File("d/f", std::string(700, 'f'))
      .Pax('x', {{"path", "d/long-" + std::string(120, 'p')}, {"mtime", "1.5"}})
      .File("short", "pax")
      .GnuLongName("d/" + std::string(110, 'g'))
      .File("x", "gnu")
      .HardLink("d/h", "d/f")
      .File("up/evil", "clamped");
  const std::string original = builder.Finish();
  std::mt19937 random(20240501);
  for (int round = 0; round < 250; ++round) {
    std::string tar = original;
    const int changes = 1 + static_cast<int>(random() % 4);
    for (int i = 0; i < changes; ++i) {
      const size_t header = builder.header_offsets()[random() % builder.header_offsets().size()];
      // Mostly inside a header (names, sizes, types), sometimes anywhere.
      const size_t at = random() % 4 ? header + random() % 512 : random() % tar.size();
      const char choices[] = {'/', '.', '\0', '1', '2', '5', '7', 'x', 'L', 'g', static_cast<char>(0x80)};
      tar[at] = random() % 2 ? choices[random() % sizeof(choices)] : static_cast<char>(random());
    }
    for (size_t off : builder.header_offsets()) TarBuilder::FixChecksum(tar, off);
    if (random() % 8 == 0) tar.resize(random() % tar.size());
    WriteTar(tar);
    absl::StatusOr<ImageStats> result = ImportTar(tar_, dest_);
    ASSERT_TRUE(IsEmptyDir(outside_)) << "round " << round << ": " << result.status();
    ASSERT_FALSE(Exists(base_ + "/evil")) << "round " << round;
    if (result.ok()) {
      ASSERT_TRUE(RemoveTree(dest_).ok()) << "round " << round;
    } else {
      ASSERT_FALSE(Exists(dest_)) << "round " << round << ": " << result.status();
    }
  }
}

class BusyboxTest : public ImageTest {
 protected:
  void SetUp() override {
    if (!Exists(kBusybox)) GTEST_SKIP() << kBusybox << " missing (apt-get install busybox-static)";
    if (!Exists(kPython)) GTEST_SKIP() << kPython << " missing";
    ImageTest::SetUp();
  }

  // Calls a function of bindings/python/diyc/images.py, loaded by file path
  // so that the native extension need not be built.
  int RunImages(const std::string& function, const std::string& argument) {
    const std::string code =
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('diyc_images', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "getattr(module, sys.argv[2])(sys.argv[3])\n";
    return RunProgram({kPython, "-B", "-c", code, kImagesPy, function, argument});
  }

  void ExpectBusyboxRootfs(const std::string& root) {
    EXPECT_EQ(ReadLink(root + "/bin/sh"), "busybox");
    for (const char* applet : {"ls", "cat", "ping", "ip", "hostname", "sleep", "true", "kill"}) {
      EXPECT_EQ(ReadLink(root + "/bin/" + applet), "busybox") << applet;
    }
    struct stat binary = Lstat(root + "/bin/busybox");
    EXPECT_TRUE(S_ISREG(binary.st_mode));
    EXPECT_EQ(binary.st_mode & 07777, 0755u);
    EXPECT_EQ(binary.st_size, Lstat(kBusybox).st_size);
    EXPECT_EQ(Lstat(root + "/tmp").st_mode & 07777, 01777u);
    EXPECT_EQ(Lstat(root).st_mode & 07777, 0755u);
    for (const char* dir : {"dev", "proc", "sys", "etc", "root", "var", "run"}) {
      EXPECT_TRUE(S_ISDIR(Lstat(root + "/" + dir).st_mode)) << dir;
    }
    EXPECT_THAT(ReadFile(root + "/etc/passwd"), HasSubstr("root:x:0:0:"));
    EXPECT_THAT(ReadFile(root + "/etc/passwd"), HasSubstr("nobody:x:65534:"));
    EXPECT_THAT(ReadFile(root + "/etc/group"), HasSubstr("root:x:0:"));
    if (IsRoot()) {
      // The image works as a root filesystem: its shell runs chrooted.
      pid_t pid = ::fork();
      if (pid == 0) {
        if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0) ::_exit(126);
        ::execl("/bin/sh", "sh", "-c", "echo ok > /tmp/ran && id -u >> /tmp/ran", nullptr);
        ::_exit(127);
      }
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
      EXPECT_EQ(ReadFile(root + "/tmp/ran"), "ok\n0\n");
    }
  }
};

TEST_F(BusyboxTest, TarRoundTrip) {
  ASSERT_EQ(RunImages("write_busybox_tar", tar_), 0);
  absl::StatusOr<ImageStats> stats = ImportTar(tar_, dest_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->files, 3u);  // bin/busybox, etc/passwd, etc/group
  EXPECT_GE(stats->symlinks, 20u);
  EXPECT_EQ(stats->skipped, 0u);
  ExpectBusyboxRootfs(dest_);
}

TEST_F(BusyboxTest, DirectoryImport) {
  ASSERT_EQ(RunImages("build_busybox_rootfs", src_), 0);
  absl::StatusOr<ImageStats> stats = ImportDirectory(src_, dest_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->files, 3u);
  ExpectBusyboxRootfs(dest_);
}

}  // namespace
}  // namespace diyc::netcore
