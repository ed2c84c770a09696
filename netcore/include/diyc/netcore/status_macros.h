// Early-return helpers for absl::Status / absl::StatusOr.
//
// Abseil 20220623 (Debian 12) ships no RETURN_IF_ERROR / ASSIGN_OR_RETURN, so
// diyc defines its own with the same meaning.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DIYC_STATUS_CONCAT_INNER_(a, b) a##b
#define DIYC_STATUS_CONCAT_(a, b) DIYC_STATUS_CONCAT_INNER_(a, b)

#define DIYC_RETURN_IF_ERROR(expr)                       \
  do {                                                   \
    ::absl::Status diyc_status_ = (expr);                \
    if (!diyc_status_.ok()) return diyc_status_;         \
  } while (0)

#define DIYC_ASSIGN_OR_RETURN(lhs, rexpr) \
  DIYC_ASSIGN_OR_RETURN_IMPL_(DIYC_STATUS_CONCAT_(diyc_statusor_, __LINE__), lhs, rexpr)

#define DIYC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
