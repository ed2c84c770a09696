#include "store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace diyc::server {
namespace {

using netcore::ErrnoError;
using netcore::UniqueFd;

constexpr char kNetworksDir[] = "networks";
constexpr char kAttachmentsDir[] = "attachments";
constexpr char kQuarantineDir[] = "quarantine";
constexpr char kSuffix[] = ".json";

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError(errno, absl::StrCat("create ", path));
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", path));
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " is not a directory"));
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenDir(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError(errno, absl::StrCat("open ", path));
  return fd;
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) return absl::InternalError(absl::StrCat("encode state record: ", status.ToString()));
  json.push_back('\n');
  return json;
}

absl::StatusOr<std::string> ReadFile(int dir_fd, const std::string& name) {
  UniqueFd fd(openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoError(errno, absl::StrCat("open ", name));
  std::string data;
  char buf[8192];
  while (true) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read ", name));
    }
    if (n == 0) break;
    data.append(buf, n);
    if (data.size() > (1 << 20)) return absl::DataLossError(absl::StrCat(name, ": larger than 1 MiB"));
  }
  return data;
}

std::vector<std::string> ListRecords(int dir_fd) {
  std::vector<std::string> names;
  int dup = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  DIR* dir = fdopendir(dup);
  if (dir == nullptr) {
    close(dup);
    return names;
  }
  rewinddir(dir);
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name[0] == '.') {
      // A temporary file from a write a crash interrupted.
      if (absl::StrContains(name, ".tmp")) unlinkat(dir_fd, name.c_str(), 0);
      continue;
    }
    if (absl::EndsWith(name, kSuffix)) names.push_back(name);
  }
  closedir(dir);
  return names;
}

// durable: fsync the data and the directory, so the record survives a power
// loss too. Without it the write is still atomic and survives any crash of
// diycd itself (the page cache outlives the process).
absl::Status WriteAtomicallyIn(int dir_fd, const std::string& file, const std::string& contents, bool durable = true) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(".", file, ".tmp", getpid(), "-", counter++);
  const std::string what = absl::StrCat("write state ", file);
  UniqueFd fd(openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError(errno, what);
  absl::Cleanup remove_tmp = [&] { unlinkat(dir_fd, tmp.c_str(), 0); };
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, what);
    }
    done += n;
  }
  if (durable && fdatasync(fd.get()) != 0) return ErrnoError(errno, what);
  if (close(fd.Release()) != 0) return ErrnoError(errno, what);
  if (renameat(dir_fd, tmp.c_str(), dir_fd, file.c_str()) != 0) return ErrnoError(errno, what);
  std::move(remove_tmp).Cancel();
  if (durable && fsync(dir_fd) != 0) return ErrnoError(errno, what);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> RecordToJson(const google::protobuf::Message& message) { return ToJson(message); }

absl::Status RecordFromJson(const std::string& json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) return absl::DataLossError(absl::StrCat("decode record: ", status.ToString()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  const size_t slash = path.rfind('/');
  UniqueFd dir(open(slash == 0 ? "/" : path.substr(0, slash).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoError(errno, absl::StrCat("open ", path));
  return ReadFile(dir.get(), path.substr(slash + 1));
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("not an absolute path: ", path));
  UniqueFd dir(open(slash == 0 ? "/" : path.substr(0, slash).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoError(errno, absl::StrCat("open directory of ", path));
  return WriteAtomicallyIn(dir.get(), path.substr(slash + 1), contents);
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir) {
  if (dir.empty() || dir[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("state directory ", netcore::Quote(dir), ": must be absolute"));
  }
  // Parents as `mkdir -p` makes them; the state directory itself is private.
  for (size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1)) {
    if (mkdir(dir.substr(0, slash).c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("create ", dir.substr(0, slash)));
    }
  }
  DIYC_RETURN_IF_ERROR(MakeDir(dir));
  chmod(dir.c_str(), 0700);
  UniqueFd lock(open(absl::StrCat(dir, "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) return ErrnoError(errno, absl::StrCat("open lock in ", dir));
  if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat("state directory ", dir, " is in use by another diycd"));
    }
    return ErrnoError(errno, absl::StrCat("lock ", dir));
  }
  for (const char* sub : {kNetworksDir, kAttachmentsDir, kQuarantineDir}) {
    DIYC_RETURN_IF_ERROR(MakeDir(absl::StrCat(dir, "/", sub)));
  }
  DIYC_ASSIGN_OR_RETURN(UniqueFd networks, OpenDir(absl::StrCat(dir, "/", kNetworksDir)));
  DIYC_ASSIGN_OR_RETURN(UniqueFd attachments, OpenDir(absl::StrCat(dir, "/", kAttachmentsDir)));
  return std::unique_ptr<StateStore>(
      new StateStore(dir, std::move(lock), std::move(networks), std::move(attachments)));
}

StateStore::StateStore(std::string dir, UniqueFd lock, UniqueFd networks_dir, UniqueFd attachments_dir)
    : dir_(std::move(dir)),
      lock_(std::move(lock)),
      networks_dir_(std::move(networks_dir)),
      attachments_dir_(std::move(attachments_dir)) {}


absl::Status StateStore::PutNetwork(const v1::NetworkRecord& record) {
  DIYC_ASSIGN_OR_RETURN(std::string json, ToJson(record));
  return WriteAtomicallyIn(networks_dir_.get(), absl::StrCat(record.network().name(), kSuffix), json);
}

absl::Status StateStore::DeleteNetwork(absl::string_view name) {
  const std::string file = absl::StrCat(name, kSuffix);
  if (unlinkat(networks_dir_.get(), file.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("delete state ", file));
  }
  return absl::OkStatus();
}

absl::Status StateStore::PutAttachment(const v1::AttachmentRecord& record) {
  DIYC_ASSIGN_OR_RETURN(std::string json, ToJson(record));
  // An attachment only exists within one boot (its namespace and veth die
  // with the kernel), so surviving a crash of diycd is all it needs: no
  // fsync, which would cost more than the whole attach.
  return WriteAtomicallyIn(attachments_dir_.get(), absl::StrCat(record.attachment().host_ifname(), kSuffix), json,
                           /*durable=*/false);
}

absl::Status StateStore::DeleteAttachment(absl::string_view host_ifname) {
  const std::string file = absl::StrCat(host_ifname, kSuffix);
  if (unlinkat(attachments_dir_.get(), file.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("delete state ", file));
  }
  return absl::OkStatus();
}

absl::StatusOr<StateStore::Contents> StateStore::Load() {
  Contents contents;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // records written by a newer diycd
  auto load_dir = [&](int dir_fd, const char* sub, auto& out, auto key_of) {
    for (const std::string& file : ListRecords(dir_fd)) {
      typename std::decay_t<decltype(out)>::value_type record;
      absl::StatusOr<std::string> data = ReadFile(dir_fd, file);
      std::string problem;
      if (!data.ok()) {
        problem = std::string(data.status().message());
      } else if (auto parsed = google::protobuf::util::JsonStringToMessage(*data, &record, options); !parsed.ok()) {
        problem = parsed.ToString();
      } else if (absl::StrCat(key_of(record), kSuffix) != file) {
        problem = "record does not match its file name";
      }
      if (problem.empty()) {
        out.push_back(std::move(record));
        continue;
      }
      const std::string from = absl::StrCat(dir_, "/", sub, "/", file);
      const std::string to = absl::StrCat(dir_, "/", kQuarantineDir, "/", sub, "-", file);
      rename(from.c_str(), to.c_str());
      contents.quarantined.push_back(absl::StrCat(from, ": ", problem, " (moved to ", to, ")"));
    }
  };
  load_dir(networks_dir_.get(), kNetworksDir, contents.networks,
           [](const v1::NetworkRecord& r) { return r.network().name(); });
  load_dir(attachments_dir_.get(), kAttachmentsDir, contents.attachments,
           [](const v1::AttachmentRecord& r) { return r.attachment().host_ifname(); });
  return contents;
}

}  // namespace diyc::server
