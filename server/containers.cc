#include "containers.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "container_launcher.h"
#include "container_log.h"
#include "diyc/netcore/cgroup.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/image.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/netns.h"
#include "diyc/netcore/rootfs.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/sysctl.h"
#include "google/protobuf/util/time_util.h"
#include "fault.h"
#include "names.h"
#include "request_validation.h"
#include "store.h"

namespace diyc::server {

using google::protobuf::util::TimeUtil;
using netcore::ErrnoError;
using netcore::Quote;

namespace {

constexpr int64_t kDefaultPids = 4096;
constexpr absl::Duration kStartTimeout = absl::Seconds(30);

std::string NewContainerName() {
  uint64_t bits = 0;
  if (getrandom(&bits, sizeof(bits), 0) != sizeof(bits)) bits = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  return absl::StrFormat("c%012x", bits & 0xffffffffffffull);
}

absl::Status MakeDir(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return ErrnoError(errno, absl::StrCat("create ", Quote(path)));
  return absl::OkStatus();
}

// The host's resolvers, minus loopback ones that mean nothing inside the
// container's network namespace.
std::string ResolvConf() {
  std::ifstream in("/etc/resolv.conf");
  std::string line, out;
  int nameservers = 0;
  while (std::getline(in, line)) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (absl::StartsWith(l, "nameserver")) {
      absl::string_view addr = absl::StripAsciiWhitespace(l.substr(10));
      if (absl::StartsWith(addr, "127.") || addr == "::1") continue;
      ++nameservers;
      absl::StrAppend(&out, l, "\n");
    } else if (absl::StartsWith(l, "search") || absl::StartsWith(l, "options")) {
      absl::StrAppend(&out, l, "\n");
    }
  }
  if (nameservers == 0) absl::StrAppend(&out, "# no nameserver of the host is reachable from containers\n");
  return out;
}

std::string HostsFile(const std::string& hostname, const std::vector<v1::Attachment>& attachments) {
  std::string hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (const v1::Attachment& a : attachments) {
    absl::StrAppend(&hosts, a.ip().substr(0, a.ip().find('/')), "\t", hostname, "\n");
    if (!a.ip6().empty()) absl::StrAppend(&hosts, a.ip6().substr(0, a.ip6().find('/')), "\t", hostname, "\n");
  }
  if (attachments.empty()) absl::StrAppend(&hosts, "127.0.1.1\t", hostname, "\n");
  return hosts;
}

bool HasKey(const google::protobuf::RepeatedPtrField<std::string>& env, absl::string_view key) {
  return std::any_of(env.begin(), env.end(), [&](const std::string& e) { return absl::StartsWith(e, absl::StrCat(key, "=")); });
}

// The names in a state directory, sorted, without hidden ones (temporary
// files of interrupted writes).
absl::StatusOr<std::vector<std::string>> ListEntries(const std::string& root) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(root.c_str()), &closedir);
  if (dir == nullptr) return ErrnoError(errno, absl::StrCat("list ", root));
  std::vector<std::string> names;
  while (dirent* e = readdir(dir.get())) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Containers>> Containers::Open(Options options, Node* node) {
  for (const char* sub : {"/containers", "/images"}) {
    DIYC_RETURN_IF_ERROR(MakeDir(options.state_dir + sub, 0700));
  }
  DIYC_RETURN_IF_ERROR(netcore::ValidateOverlayPath(options.state_dir));
  if (access(options.init_binary.c_str(), X_OK) != 0) {
    return ErrnoError(errno, absl::StrCat("container init helper ", Quote(options.init_binary)));
  }
  std::unique_ptr<Containers> containers(new Containers(std::move(options), node));
  containers->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  containers->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (containers->epoll_fd_ < 0 || containers->wake_fd_ < 0) return ErrnoError(errno, "create watcher");
  epoll_event ev{EPOLLIN, {.fd = -1}};
  epoll_ctl(containers->epoll_fd_, EPOLL_CTL_ADD, containers->wake_fd_, &ev);
  containers->watcher_ = std::thread([c = containers.get()] { c->WatchLoop(); });
  return containers;
}

Containers::Containers(Options options, Node* node) : options_(std::move(options)), node_(node) {
  boot_id_ = netcore::ReadSysctl(nullptr, "kernel.random.boot_id").value_or("");
}

Containers::~Containers() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  if (watcher_.joinable()) watcher_.join();
  for (auto& [name, entry] : containers_) {
    if (entry.pidfd >= 0) close(entry.pidfd);
  }
  close(epoll_fd_);
  close(wake_fd_);
}

std::string Containers::Dir(const std::string& name) const { return absl::StrCat(options_.state_dir, "/containers/", name); }
std::string Containers::ImageDir(const std::string& name) const { return absl::StrCat(options_.state_dir, "/images/", name); }

absl::Status Containers::SaveRecord(const v1::ContainerRecord& record) {
  DIYC_ASSIGN_OR_RETURN(std::string json, RecordToJson(record));
  return WriteFileAtomically(Dir(record.container().name()) + "/container.json", json);
}

absl::StatusOr<std::string> Containers::NetnsPath(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = containers_.find(name);
  if (it == containers_.end()) return absl::NotFoundError(absl::StrCat("container ", Quote(name), " not found"));
  if (it->second.record.container().state() == v1::Container::EXITED) {
    return absl::FailedPreconditionError(absl::StrCat("container ", Quote(name), " is not running"));
  }
  return Dir(name) + "/netns";
}

absl::Status Containers::Load() {
  DIYC_ASSIGN_OR_RETURN(std::vector<std::string> names, ListEntries(options_.state_dir + "/containers"));
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& name : names) {
    Entry entry;
    absl::StatusOr<std::string> json = ReadSmallFile(Dir(name) + "/container.json");
    absl::Status parsed = json.ok() ? RecordFromJson(*json, &entry.record) : json.status();
    if (!parsed.ok() || entry.record.container().name() != name) {
      // A start that crashed before its first record: only files to remove.
      entry.record.mutable_container()->set_name(name);
      entry.record.mutable_container()->set_state(v1::Container::CREATED);
    }
    containers_[name] = std::move(entry);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Containers::Reconcile() {
  std::vector<std::string> report;
  std::vector<std::string> interrupted, running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, entry] : containers_) {
      if (entry.record.container().state() == v1::Container::CREATED) interrupted.push_back(name);
      if (entry.record.container().state() == v1::Container::RUNNING) running.push_back(name);
    }
  }
  for (const std::string& name : interrupted) {
    (void)Teardown(name);
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(name);
    report.push_back(absl::StrCat("rolled back interrupted start of container ", Quote(name)));
  }
  for (const std::string& name : running) {
    v1::ContainerRecord record;
    {
      std::lock_guard<std::mutex> lock(mu_);
      record = containers_.at(name).record;
    }
    const bool same_boot = record.boot_id() == boot_id_;
    absl::StatusOr<uint64_t> start = ProcessStartTime(record.monitor_pid());
    if (same_boot && start.ok() && *start == record.monitor_start_time() && Watch(name, record.monitor_pid()).ok()) {
      continue;
    }
    Finish(name);
    report.push_back(absl::StrCat("container ", Quote(name), " ended while diycd was away"));
  }
  return report;
}

absl::Status Containers::Watch(const std::string& name, pid_t monitor_pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, monitor_pid, 0));
  if (fd < 0) return ErrnoError(errno, absl::StrCat("watch container ", Quote(name)));
  std::lock_guard<std::mutex> lock(mu_);
  Entry& entry = containers_.at(name);
  entry.pidfd = fd;
  epoll_event ev{EPOLLIN, {.fd = fd}};
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    entry.pidfd = -1;
    return ErrnoError(errno, "watch container");
  }
  return absl::OkStatus();
}

void Containers::WatchLoop() {
  while (true) {
    epoll_event events[32];
    int n = epoll_wait(epoll_fd_, events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == -1) return;  // shutting down
      std::string name;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [n2, entry] : containers_) {
          if (entry.pidfd == events[i].data.fd) {
            name = n2;
            epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, entry.pidfd, nullptr);
            close(entry.pidfd);
            entry.pidfd = -1;
          }
        }
      }
      if (!name.empty()) Finish(name);
    }
  }
}

void Containers::Finish(const std::string& name) {
  v1::ContainerExit exit_record;
  absl::StatusOr<std::string> json = ReadSmallFile(Dir(name) + "/exit.json");
  if (!json.ok() || !RecordFromJson(*json, &exit_record).ok()) {
    // diyc-init was killed, or the host rebooted: the outcome is unknown.
    exit_record.set_exit_code(255);
    exit_record.set_error("diyc-init ended without recording the container's exit");
    *exit_record.mutable_finished_at() = TimeUtil::GetCurrentTime();
  }
  v1::Container snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = containers_.find(name);
    if (it == containers_.end()) return;
    v1::Container& c = *it->second.record.mutable_container();
    if (c.state() == v1::Container::EXITED) return;
    c.set_state(v1::Container::EXITED);
    c.set_exit_code(exit_record.exit_code());
    c.set_signal(exit_record.signal());
    c.set_oom_killed(exit_record.oom_killed());
    *c.mutable_finished_at() = exit_record.finished_at();
    c.set_pid(0);
    (void)SaveRecord(it->second.record);
    snapshot = c;
  }
  changed_.notify_all();
  v1::Event event;
  event.set_type(v1::Event::CONTAINER_EXITED);
  *event.mutable_time() = TimeUtil::GetCurrentTime();
  *event.mutable_container() = snapshot;
  node_->events().Publish(event);
}

absl::Status Containers::Teardown(const std::string& name) {
  absl::Status first;
  auto note = [&](const absl::Status& s) {
    if (!s.ok() && first.ok()) first = s;
  };
  // Attachments first: they reference the namespace.
  absl::StatusOr<std::vector<v1::Attachment>> attachments = node_->AttachmentsOfContainer(name);
  if (attachments.ok()) {
    for (const v1::Attachment& a : *attachments) {
      v1::DetachContainerRequest detach;
      detach.set_network(a.network());
      detach.set_container(name);
      detach.set_ifname(a.ifname());
      note(node_->Detach(detach));
    }
  } else {
    note(attachments.status());
  }
  FaultPoint("container.remove.detached");
  const std::string dir = Dir(name);
  if (absl::Status s = netcore::Netns::RemoveAt(dir + "/netns"); !absl::IsNotFound(s)) note(s);
  if (absl::StatusOr<std::unique_ptr<netcore::Cgroup>> cg = netcore::OpenCgroup(name, {.parent = options_.cgroup_parent});
      cg.ok()) {
    note((*cg)->KillAll());
    note((*cg)->Remove());
    (void)netcore::RemoveCgroupParentIfUnused({.parent = options_.cgroup_parent});
  } else if (!absl::IsNotFound(cg.status())) {
    note(cg.status());
  }
  if (access(dir.c_str(), F_OK) == 0) note(netcore::RemoveTree(dir));
  return first;
}

absl::StatusOr<v1::Container> Containers::Run(const v1::RunContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateRunRequest(request));
  const std::string name = request.name().empty() ? NewContainerName() : request.name();
  DIYC_RETURN_IF_ERROR(ValidateObjectName("container", name));
  DIYC_RETURN_IF_ERROR(netcore::ValidateImageName(request.image()));
  const std::string lower = ImageDir(request.image()) + "/rootfs";
  if (access(lower.c_str(), F_OK) != 0) return absl::NotFoundError(absl::StrCat("image ", Quote(request.image()), " not found"));

  v1::ContainerRecord record;
  v1::Container& c = *record.mutable_container();
  c.set_name(name);
  c.set_image(request.image());
  *c.mutable_command() = request.command();
  *c.mutable_env() = request.env();
  c.set_workdir(request.workdir().empty() ? "/" : request.workdir());
  c.set_hostname(request.hostname().empty() ? name : request.hostname());
  c.set_memory_bytes(request.memory_bytes());
  c.set_pids_limit(request.pids_limit() == 0 ? kDefaultPids : request.pids_limit());
  c.set_cpus(request.cpus());
  c.set_state(v1::Container::CREATED);
  *c.mutable_created_at() = TimeUtil::GetCurrentTime();
  if (!HasKey(c.env(), "PATH")) c.add_env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (!HasKey(c.env(), "HOSTNAME")) c.add_env(absl::StrCat("HOSTNAME=", c.hostname()));
  if (!HasKey(c.env(), "HOME")) c.add_env("HOME=/root");
  record.set_boot_id(boot_id_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (containers_.count(name)) return absl::AlreadyExistsError(absl::StrCat("container ", Quote(name), " already exists"));
    containers_[name].record = record;
  }
  const std::string dir = Dir(name);
  // From here a failure takes down whatever was made.
  absl::Cleanup undo = [&] {
    (void)Teardown(name);
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(name);
  };
  DIYC_RETURN_IF_ERROR(MakeDir(dir, 0700));
  for (const char* sub : {"/upper", "/work", "/rootfs"}) DIYC_RETURN_IF_ERROR(MakeDir(dir + sub, 0755));
  DIYC_RETURN_IF_ERROR(SaveRecord(record));
  DIYC_RETURN_IF_ERROR(netcore::Netns::CreateAt(dir + "/netns").status());
  FaultPoint("container.run.netns");

  std::vector<v1::Attachment> attachments;
  for (const v1::ContainerNetwork& n : request.networks()) {
    v1::AttachContainerRequest attach;
    attach.set_network(n.network());
    attach.set_container(name);
    attach.set_ip(n.ip());
    // A second network needs a second interface name.
    attach.set_ifname(absl::StrCat("eth", attachments.size()));
    DIYC_ASSIGN_OR_RETURN(v1::Attachment a, node_->Attach(attach));
    attachments.push_back(std::move(a));
  }

  FaultPoint("container.run.attached");
  netcore::CgroupLimits limits{.memory_bytes = c.memory_bytes(), .pids = c.pids_limit(), .cpus = c.cpus()};
  DIYC_RETURN_IF_ERROR(netcore::CreateCgroup(name, limits, {.parent = options_.cgroup_parent}).status());

  v1::ContainerSpec spec;
  spec.set_id(name);
  spec.set_lower_dir(lower);
  spec.set_upper_dir(dir + "/upper");
  spec.set_overlay_work_dir(dir + "/work");
  spec.set_rootfs_dir(dir + "/rootfs");
  spec.set_netns_path(dir + "/netns");
  *spec.mutable_argv() = c.command();
  *spec.mutable_env() = c.env();
  spec.set_workdir(c.workdir());
  spec.set_hostname(c.hostname());
  spec.set_hosts(HostsFile(c.hostname(), attachments));
  spec.set_resolv_conf(ResolvConf());
  spec.set_cgroup_name(name);
  spec.set_cgroup_parent(options_.cgroup_parent);
  spec.set_log_path(dir + "/log");
  spec.set_exit_path(dir + "/exit.json");
  DIYC_ASSIGN_OR_RETURN(std::string spec_json, RecordToJson(spec));
  DIYC_RETURN_IF_ERROR(WriteFileAtomically(dir + "/spec.json", spec_json));

  DIYC_ASSIGN_OR_RETURN(Launched launched, LaunchContainer(options_.init_binary, dir + "/spec.json", kStartTimeout));
  FaultPoint("container.run.started");
  c.set_state(v1::Container::RUNNING);
  c.set_pid(launched.pid);
  *c.mutable_started_at() = TimeUtil::GetCurrentTime();
  *c.mutable_attachments() = {attachments.begin(), attachments.end()};
  record.set_monitor_pid(launched.monitor_pid);
  record.set_monitor_start_time(launched.monitor_start_time);
  record.set_pid_start_time(launched.pid_start_time);
  absl::Status saved = SaveRecord(record);
  if (!saved.ok()) {
    kill(launched.pid, SIGKILL);
    return saved;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    containers_.at(name).record = record;
  }
  std::move(undo).Cancel();
  if (absl::Status watched = Watch(name, launched.monitor_pid); !watched.ok()) Finish(name);  // it ended already

  v1::Event event;
  event.set_type(v1::Event::CONTAINER_STARTED);
  *event.mutable_time() = TimeUtil::GetCurrentTime();
  *event.mutable_container() = c;
  node_->events().Publish(event);
  return c;
}

absl::StatusOr<v1::Container> Containers::Get(const v1::GetContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("container", request.name()));
  v1::Container c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = containers_.find(request.name());
    if (it == containers_.end() || it->second.record.container().state() == v1::Container::CREATED) {
      return absl::NotFoundError(absl::StrCat("container ", Quote(request.name()), " not found"));
    }
    c = it->second.record.container();
  }
  if (absl::StatusOr<std::vector<v1::Attachment>> a = node_->AttachmentsOfContainer(c.name()); a.ok()) {
    *c.mutable_attachments() = {a->begin(), a->end()};
  }
  return c;
}

absl::StatusOr<v1::ListContainersResponse> Containers::List(const v1::ListContainersRequest& request) {
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size must not be negative");
  const int page_size = request.page_size() == 0 ? 100 : std::min(request.page_size(), 1000);
  v1::ListContainersResponse response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = containers_.upper_bound(request.page_token()); it != containers_.end(); ++it) {
      const v1::Container& c = it->second.record.container();
      if (c.state() == v1::Container::CREATED) continue;
      if (!request.all() && c.state() != v1::Container::RUNNING) continue;
      if (response.containers_size() == page_size) {
        response.set_next_page_token(response.containers(page_size - 1).name());
        break;
      }
      *response.add_containers() = c;
    }
  }
  return response;
}

absl::StatusOr<v1::WaitContainerResponse> Containers::Wait(const v1::WaitContainerRequest& request,
                                                           const std::function<bool()>& cancelled) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("container", request.name()));
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    auto it = containers_.find(request.name());
    if (it == containers_.end()) return absl::NotFoundError(absl::StrCat("container ", Quote(request.name()), " not found"));
    const v1::Container& c = it->second.record.container();
    if (c.state() == v1::Container::EXITED) {
      v1::WaitContainerResponse response;
      response.set_exit_code(c.exit_code());
      response.set_signal(c.signal());
      response.set_oom_killed(c.oom_killed());
      return response;
    }
    if (cancelled && cancelled()) return absl::CancelledError("wait cancelled");
    changed_.wait_for(lock, std::chrono::milliseconds(250));
  }
}

absl::Status Containers::KillAndWait(const std::string& name, int signal, absl::Duration grace) {
  pid_t pid = 0;
  uint64_t start = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = containers_.find(name);
    if (it == containers_.end() || it->second.record.container().state() != v1::Container::RUNNING) {
      return absl::OkStatus();
    }
    pid = it->second.record.container().pid();
    start = it->second.record.pid_start_time();
  }
  // A pidfd pins the process, so the signal cannot hit a reused pid.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    if (ProcessStartTime(pid).value_or(0) == start) syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0);
    close(pidfd);
  }
  auto exited = [&] {
    auto it = containers_.find(name);
    return it == containers_.end() || it->second.record.container().state() == v1::Container::EXITED;
  };
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (changed_.wait_for(lock, absl::ToChronoNanoseconds(grace), exited)) return absl::OkStatus();
  }
  // Still there: everything in its cgroup gets SIGKILL.
  if (absl::StatusOr<std::unique_ptr<netcore::Cgroup>> cg = netcore::OpenCgroup(name, {.parent = options_.cgroup_parent});
      cg.ok()) {
    DIYC_RETURN_IF_ERROR((*cg)->KillAll());
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (!changed_.wait_for(lock, std::chrono::seconds(10), exited)) {
    return absl::DeadlineExceededError(absl::StrCat("container ", Quote(name), " did not exit after SIGKILL"));
  }
  return absl::OkStatus();
}

absl::Status Containers::Stop(const v1::StopContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("container", request.name()));
  if (request.timeout_seconds() < 0 || request.timeout_seconds() > 3600) {
    return absl::InvalidArgumentError("timeout_seconds must be 0..3600");
  }
  const int signal = request.signal() == 0 ? SIGTERM : request.signal();
  if (signal < 1 || signal > 64) return absl::InvalidArgumentError(absl::StrCat("invalid signal ", signal));
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = containers_.find(request.name());
    if (it == containers_.end() || it->second.record.container().state() == v1::Container::CREATED) {
      return absl::NotFoundError(absl::StrCat("container ", Quote(request.name()), " not found"));
    }
  }
  const absl::Duration grace = absl::Seconds(request.timeout_seconds() == 0 ? 10 : request.timeout_seconds());
  return KillAndWait(request.name(), signal, grace);
}

absl::Status Containers::Remove(const v1::RemoveContainerRequest& request) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("container", request.name()));
  const std::string& name = request.name();
  v1::Container snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = containers_.find(name);
    if (it == containers_.end() || it->second.record.container().state() == v1::Container::CREATED) {
      return absl::NotFoundError(absl::StrCat("container ", Quote(name), " not found"));
    }
    if (it->second.removing) return absl::FailedPreconditionError(absl::StrCat("container ", Quote(name), " is being removed"));
    if (it->second.record.container().state() == v1::Container::RUNNING && !request.force()) {
      return absl::FailedPreconditionError(
          absl::StrCat("container ", Quote(name), " is running; stop it first or remove with force"));
    }
    it->second.removing = true;
    snapshot = it->second.record.container();
  }
  absl::Status killed = KillAndWait(name, SIGKILL, absl::Seconds(5));
  absl::Status torn = killed.ok() ? Teardown(name) : killed;
  if (!torn.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = containers_.find(name); it != containers_.end()) it->second.removing = false;
    return torn;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    containers_.erase(name);
  }
  changed_.notify_all();
  v1::Event event;
  event.set_type(v1::Event::CONTAINER_REMOVED);
  *event.mutable_time() = TimeUtil::GetCurrentTime();
  *event.mutable_container() = snapshot;
  node_->events().Publish(event);
  return absl::OkStatus();
}

absl::Status Containers::Logs(const v1::ContainerLogsRequest& request,
                              const std::function<bool(const v1::LogChunk&)>& send,
                              const std::function<bool()>& cancelled) {
  DIYC_RETURN_IF_ERROR(ValidateObjectName("container", request.name()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!containers_.count(request.name())) {
      return absl::NotFoundError(absl::StrCat("container ", Quote(request.name()), " not found"));
    }
  }
  netcore::UniqueFd fd(open((Dir(request.name()) + "/log").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  uint64_t offset = 0;
  bool last_round = false;
  while (true) {
    bool ended;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = containers_.find(request.name());
      ended = it == containers_.end() || it->second.record.container().state() == v1::Container::EXITED;
    }
    if (!fd) fd.Reset(open((Dir(request.name()) + "/log").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd) {
      DIYC_ASSIGN_OR_RETURN(std::vector<v1::LogChunk> chunks, ReadLogFrames(fd.get(), &offset, 1 << 20));
      for (const v1::LogChunk& chunk : chunks) {
        if (!send(chunk)) return absl::OkStatus();
      }
      if (!chunks.empty()) continue;
    }
    // The monitor writes its last frames before the exit record: one more
    // read after seeing the exit catches them.
    if (!request.follow() || last_round || (cancelled && cancelled())) return absl::OkStatus();
    if (ended) {
      last_round = true;
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::StatusOr<v1::Image> Containers::ImportImage(const v1::ImportImageRequest& request) {
  DIYC_RETURN_IF_ERROR(netcore::ValidateImageName(request.name()));
  const std::string& source = request.has_directory() ? request.directory() : request.tar_path();
  if (source.empty() || source[0] != '/' || source.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("image source must be an absolute directory or tar path");
  }
  std::lock_guard<std::mutex> lock(images_mu_);
  const std::string dir = ImageDir(request.name());
  if (mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat("image ", Quote(request.name()), " already exists"));
    return ErrnoError(errno, absl::StrCat("create ", Quote(dir)));
  }
  absl::Cleanup remove = [&] { (void)netcore::RemoveTree(dir); };
  absl::StatusOr<netcore::ImageStats> stats = request.has_directory() ? netcore::ImportDirectory(source, dir + "/rootfs")
                                                                      : netcore::ImportTar(source, dir + "/rootfs");
  if (!stats.ok()) return stats.status();
  // The lower layer is shared by every container: it must not be writable
  // through a path others can reach.
  chmod((dir + "/rootfs").c_str(), 0755);
  v1::ImageRecord record;
  v1::Image& image = *record.mutable_image();
  image.set_name(request.name());
  image.set_size_bytes(stats->bytes);
  image.set_file_count(stats->files);
  *image.mutable_created_at() = TimeUtil::GetCurrentTime();
  DIYC_ASSIGN_OR_RETURN(std::string json, RecordToJson(record));
  DIYC_RETURN_IF_ERROR(WriteFileAtomically(dir + "/image.json", json));
  std::move(remove).Cancel();
  return image;
}

absl::StatusOr<v1::ListImagesResponse> Containers::ListImages() {
  std::lock_guard<std::mutex> lock(images_mu_);
  v1::ListImagesResponse response;
  DIYC_ASSIGN_OR_RETURN(std::vector<std::string> names, ListEntries(options_.state_dir + "/images"));
  for (const std::string& name : names) {
    v1::ImageRecord record;
    absl::StatusOr<std::string> json = ReadSmallFile(ImageDir(name) + "/image.json");
    if (json.ok() && RecordFromJson(*json, &record).ok()) *response.add_images() = record.image();
  }
  return response;
}

absl::Status Containers::RemoveImage(const v1::RemoveImageRequest& request) {
  DIYC_RETURN_IF_ERROR(netcore::ValidateImageName(request.name()));
  std::lock_guard<std::mutex> images_lock(images_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, entry] : containers_) {
      if (entry.record.container().image() == request.name()) {
        return absl::FailedPreconditionError(
            absl::StrCat("image ", Quote(request.name()), " is used by container ", Quote(name)));
      }
    }
  }
  const std::string dir = ImageDir(request.name());
  if (access(dir.c_str(), F_OK) != 0) return absl::NotFoundError(absl::StrCat("image ", Quote(request.name()), " not found"));
  return netcore::RemoveTree(dir);
}

}  // namespace diyc::server
