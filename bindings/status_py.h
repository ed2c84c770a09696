// How core statuses cross into Python: a failed status becomes a C++
// StatusError, and one translator turns it into diyc.errors' exception for
// its code (diyc.NotFoundError, ...).
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace diyc::bindings {

class StatusError : public std::exception {
 public:
  explicit StatusError(absl::Status status) : status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }
  const char* what() const noexcept override { return "diyc status error"; }

 private:
  absl::Status status_;
};

inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) throw StatusError(status);
}

template <typename T>
T ValueOrThrow(absl::StatusOr<T> result) {
  if (!result.ok()) throw StatusError(result.status());
  return *std::move(result);
}

void RegisterStatusTranslator(pybind11::module_& m);
void InitNetns(pybind11::module_& m);
void InitSocket(pybind11::module_& m);

}  // namespace diyc::bindings
