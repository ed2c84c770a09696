// Images and containers of the node: the runtime half of diycd.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "diyc/v1/container.pb.h"
#include "diyc/v1/state.pb.h"
#include "node.h"

namespace diyc::server {

// Thread-safe. Containers are started through diyc-init (one monitor process
// per container, outliving diycd), attached to networks through Node before
// their command runs, and recorded under STATE/containers/NAME so a restarted
// diycd still sees, stops, waits for and removes them.
class Containers {
 public:
  struct Options {
    std::string state_dir;
    std::string init_binary;  // diyc-init
    std::string cgroup_parent = "diyc";
  };

  static absl::StatusOr<std::unique_ptr<Containers>> Open(Options options, Node* node);
  ~Containers();

  // Loads the records (before Node::Reconcile, which resolves container
  // targets through NetnsPath).
  absl::Status Load();
  // After Node::Reconcile: watches running containers again, reads the exit
  // of those that ended meanwhile, rolls back interrupted starts. Returns one
  // line per repair.
  absl::StatusOr<std::vector<std::string>> Reconcile();

  // For Node: the network namespace of a container that exists.
  absl::StatusOr<std::string> NetnsPath(const std::string& name);

  absl::StatusOr<v1::Image> ImportImage(const v1::ImportImageRequest& request);
  absl::StatusOr<v1::ListImagesResponse> ListImages();
  absl::Status RemoveImage(const v1::RemoveImageRequest& request);

  absl::StatusOr<v1::Container> Run(const v1::RunContainerRequest& request);
  absl::StatusOr<v1::Container> Get(const v1::GetContainerRequest& request);
  absl::StatusOr<v1::ListContainersResponse> List(const v1::ListContainersRequest& request);
  // Blocks until the container has exited or cancelled() says to give up.
  absl::StatusOr<v1::WaitContainerResponse> Wait(const v1::WaitContainerRequest& request,
                                                 const std::function<bool()>& cancelled);
  absl::Status Stop(const v1::StopContainerRequest& request);
  absl::Status Remove(const v1::RemoveContainerRequest& request);
  // Sends the log from the start; with follow, keeps sending until the
  // container exits or cancelled() is true. send returns false when the
  // client is gone.
  absl::Status Logs(const v1::ContainerLogsRequest& request, const std::function<bool(const v1::LogChunk&)>& send,
                    const std::function<bool()>& cancelled);

 private:
  struct Entry {
    v1::ContainerRecord record;
    bool removing = false;
    int pidfd = -1;  // the monitor, while running
  };

  Containers(Options options, Node* node);
  std::string Dir(const std::string& name) const;
  std::string ImageDir(const std::string& name) const;
  absl::Status SaveRecord(const v1::ContainerRecord& record);
  // Undoes everything a container has on the host: attachments, namespace,
  // cgroup, files. Keeps going past failures and returns the first.
  absl::Status Teardown(const std::string& name);
  absl::Status Watch(const std::string& name, pid_t monitor_pid);
  void WatchLoop();
  // Reads the exit record and marks the container exited.
  void Finish(const std::string& name);
  absl::Status KillAndWait(const std::string& name, int signal, absl::Duration grace);

  Options options_;
  Node* node_;
  std::string boot_id_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Entry> containers_;
  std::mutex images_mu_;  // serialises image import/removal

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread watcher_;
};

}  // namespace diyc::server
