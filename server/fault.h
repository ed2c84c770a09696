// Crash-test hooks. With DIYC_FAULT=NAME (or NAME@N for the Nth time the
// point is reached) in diycd's environment, diycd kills itself with SIGKILL
// at that point, so tests can prove that a crash anywhere is reconciled.
// Without the variable a fault point costs one relaxed atomic load.
#pragma once

#include <string_view>

namespace diyc::server {

// Every fault point diycd has, in the order an operation reaches them.
inline constexpr std::string_view kFaultPoints[] = {
    "network.create.recorded",     // intent record written, nothing in the kernel yet
    "network.create.bridge",       // bridge and gateway address exist
    "network.create.firewall",     // rules applied, record still CREATING
    "network.delete.recorded",     // DELETING record written
    "network.delete.bridge",       // bridge gone, rules still there
    "attach.recorded",             // attachment record written
    "attach.veth",                 // veth pair exists, peer not configured
    "attach.address",              // peer has its address, no route yet
    "detach.unwired",              // veth gone, record still there
    "container.run.netns",         // container namespace made
    "container.run.attached",      // networks attached, not started
    "container.run.started",       // command running, record not yet RUNNING
    "container.remove.detached",   // attachments gone, files still there
    "peer.add.recorded",           // peer in the record, firewall and FDB not yet
    "peer.remove.recorded",        // peer out of the record, still in firewall and FDB
};

// Checks DIYC_FAULT once; call before serving.
void InitFaultPoints();
void FaultPoint(std::string_view name);

}  // namespace diyc::server
