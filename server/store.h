// diycd's state directory: one small JSON file per network and per attachment.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "diyc/netcore/unique_fd.h"
#include "diyc/v1/state.pb.h"
#include "google/protobuf/message.h"

namespace diyc::server {

// Replaces PATH with CONTENTS atomically and durably (temporary file in the
// same directory, fdatasync, rename, fsync of the directory).
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// Protobuf records as the JSON files diycd keeps (proto field names).
absl::StatusOr<std::string> RecordToJson(const google::protobuf::Message& message);
absl::Status RecordFromJson(const std::string& json, google::protobuf::Message* message);
// Reads a whole small file (at most 1 MiB), not following a final symlink.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

// Every write is atomic (temporary file, rename), so a crash leaves either
// the old record or the new one. Network records are also durable (fsync of
// file and directory): they outlive a reboot. Attachment records are not
// fsynced: what they describe cannot outlive the boot, and the page cache
// outlives any crash of diycd.
// Deletes are not fsynced: a record that comes back after a crash describes
// objects that are gone, and the startup reconcile drops it.
// Thread-safe: distinct records may be written concurrently.
class StateStore {
 public:
  // Creates DIR (mode 0700) if needed and locks it, so two diycd processes
  // never share one: FAILED_PRECONDITION if another holds it.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir);

  absl::Status PutNetwork(const v1::NetworkRecord& record);
  absl::Status DeleteNetwork(absl::string_view name);
  // Keyed by the attachment's host_ifname.
  absl::Status PutAttachment(const v1::AttachmentRecord& record);
  absl::Status DeleteAttachment(absl::string_view host_ifname);

  struct Contents {
    std::vector<v1::NetworkRecord> networks;
    std::vector<v1::AttachmentRecord> attachments;
    // Records that could not be read, moved to DIR/quarantine: one line each.
    std::vector<std::string> quarantined;
  };
  // Reads every record; unreadable ones are set aside, not fatal.
  absl::StatusOr<Contents> Load();

  const std::string& dir() const { return dir_; }

 private:
  StateStore(std::string dir, netcore::UniqueFd lock, netcore::UniqueFd networks_dir,
             netcore::UniqueFd attachments_dir);

  std::string dir_;
  netcore::UniqueFd lock_;
  netcore::UniqueFd networks_dir_;
  netcore::UniqueFd attachments_dir_;
};

}  // namespace diyc::server
