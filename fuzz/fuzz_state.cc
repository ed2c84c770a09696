// State-file loading: the input is written as both a network record and an
// attachment record into a state directory, then StateStore::Load reads
// them. Each record must be either loaded (name matching the file, and
// re-encodable to JSON that decodes to the same record) or quarantined; it
// is never lost and Load never fails. A loaded network record goes through
// request validation as Node::Reconcile re-plans it. RecordFromJson is also
// run on the input for each record type directly.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "diyc/v1/state.pb.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_scratch.h"
#include "google/protobuf/message.h"
#include "server/request_validation.h"
#include "server/store.h"

namespace {

using diyc::server::StateStore;

constexpr char kFile[] = "fz0.json";
constexpr char kKey[] = "fz0";

// Records hold no map fields, so their serialization is canonical.
std::string Bytes(const google::protobuf::Message& message) { return message.SerializePartialAsString(); }

// A decoded record encodes again, and the encoding decodes to the same record.
void CheckRoundTrip(const google::protobuf::Message& record, absl::string_view input) {
  absl::StatusOr<std::string> json = diyc::server::RecordToJson(record);
  FUZZ_CHECK(json.ok(), input);
  std::unique_ptr<google::protobuf::Message> again(record.New());
  FUZZ_CHECK(diyc::server::RecordFromJson(*json, again.get()).ok(), input);
  FUZZ_CHECK(Bytes(*again) == Bytes(record), input);
}

template <typename Record>
bool DecodeDirectly(const std::string& json, absl::string_view input, Record* record) {
  if (!diyc::server::RecordFromJson(json, record).ok()) return false;
  CheckRoundTrip(*record, input);
  return true;
}

void WriteFile(const std::string& path, absl::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) std::abort();
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

void Empty(const std::string& dir) {
  for (const std::string& name : List(dir)) ::unlink((dir + "/" + name).c_str());
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  static const std::string dir = diyc::fuzz::ScratchDir("fuzz-state") + "/state";
  static StateStore* store = [] {
    absl::StatusOr<std::unique_ptr<StateStore>> opened = StateStore::Open(dir);
    if (!opened.ok()) std::abort();
    return opened->release();
  }();
  const std::string networks = dir + "/networks", attachments = dir + "/attachments",
                    quarantine = dir + "/quarantine";
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string json(input);

  diyc::v1::NetworkRecord network;
  diyc::v1::AttachmentRecord attachment;
  diyc::v1::ContainerRecord container;
  const bool network_ok = DecodeDirectly(json, input, &network) && network.network().name() == kKey;
  const bool attachment_ok = DecodeDirectly(json, input, &attachment) && attachment.attachment().host_ifname() == kKey;
  DecodeDirectly(json, input, &container);

  WriteFile(networks + "/" + kFile, input);
  WriteFile(attachments + "/" + kFile, input);
  absl::StatusOr<StateStore::Contents> contents = store->Load();
  FUZZ_CHECK(contents.ok(), input);

  // Every record is accounted for: loaded where it was, or moved aside.
  FUZZ_CHECK(contents->networks.size() + contents->attachments.size() + contents->quarantined.size() == 2, input);
  FUZZ_CHECK(contents->networks.size() == (network_ok ? 1u : 0u), input);
  FUZZ_CHECK(contents->attachments.size() == (attachment_ok ? 1u : 0u), input);
  FUZZ_CHECK(Exists(networks + "/" + kFile) == network_ok, input);
  FUZZ_CHECK(Exists(quarantine + "/networks-" + kFile) == !network_ok, input);
  FUZZ_CHECK(Exists(attachments + "/" + kFile) == attachment_ok, input);
  FUZZ_CHECK(Exists(quarantine + "/attachments-" + kFile) == !attachment_ok, input);
  for (const diyc::v1::NetworkRecord& r : contents->networks) {
    FUZZ_CHECK(r.network().name() == kKey, input);
    CheckRoundTrip(r, input);
    // As Node::Reconcile turns a record back into a request.
    const diyc::v1::Network& n = r.network();
    diyc::v1::CreateNetworkRequest request;
    request.set_name(n.name());
    request.set_subnet(n.subnet());
    request.set_subnet6(n.subnet6());
    request.set_gateway(n.gateway());
    request.set_bridge(n.bridge());
    request.set_nat(n.nat());
    request.set_internal(n.internal());
    request.set_mtu(n.mtu());
    absl::StatusOr<diyc::server::NetworkPlan> plan = diyc::server::PlanNetworkRequest(request);
    if (plan.ok()) FUZZ_CHECK(plan->name == kKey && plan->subnet.Contains(plan->gateway), input);
  }
  for (const diyc::v1::AttachmentRecord& r : contents->attachments) {
    FUZZ_CHECK(r.attachment().host_ifname() == kKey, input);
    CheckRoundTrip(r, input);
  }

  Empty(networks);
  Empty(attachments);
  Empty(quarantine);
  return 0;
}
