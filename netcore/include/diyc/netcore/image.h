// Container images: a root filesystem directory kept under diycd's state
// directory, imported from a host directory or a tar archive.
//
// Archives and source trees are untrusted. Every entry is created relative to
// a directory fd of the destination, with its parent resolved by
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so no symlink in the image
// can make a later entry land outside it, and the final component is never
// followed (an existing symlink there is replaced). Symlink targets are stored
// verbatim: they are resolved inside the container root at run time.
//
// Policies (the same for directories and tars):
//  - Absolute entry names have their leading '/' stripped ("/etc/passwd" is
//    extracted to "<dest>/etc/passwd"), as GNU tar and Docker do; names with a
//    ".." component are rejected (INVALID_ARGUMENT); "." components are
//    dropped, and an entry naming the root itself ("./") only sets the root's
//    owner and mtime.
//  - setuid and setgid bits of files are dropped (unless
//    ImportOptions::keep_setid_bits): containers run with no_new_privs, where
//    they grant nothing, while a setuid-root file in a host directory is a
//    standing privilege escalation. Directories keep setgid (group
//    inheritance only) and the sticky bit (tmp 1777).
//  - Owners are restored by number (tar uname/gname are ignored: they would
//    be looked up in the host's user database, not the image's). When the
//    caller is not root, files belong to the caller instead, as with tar.
//  - Modification times are restored; extended attributes, ACLs and file
//    capabilities (security.capability) are not.
//  - Device nodes, fifos and sockets are skipped (and counted): /dev is
//    provided by the runtime, and a device node in a host directory is a
//    hole in itself. A hard link to a skipped entry is skipped too.
//  - The image root is always mode 0755: a 0700 root, as made by mkdtemp,
//    would lock every non-root container user out of "/".
//  - Hard links must name an earlier entry inside the image (resolved in
//    the image root); a hard link to a directory is rejected.
//
// The destination must not exist. It is created 0700 while entries are
// written (directories get their final modes last, so a read-only directory
// in the archive does not block its own children) and is removed entirely on
// any failure. It is not fsynced: callers that need the image to survive a
// crash import under a temporary name, syncfs(2), then rename(2) into place.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace diyc::netcore {

struct ImageStats {
  uint64_t files = 0;        // regular files written with their data
  uint64_t directories = 0;  // directory entries (not counting the root)
  uint64_t symlinks = 0;
  uint64_t hard_links = 0;
  uint64_t skipped = 0;  // devices, fifos, sockets, unknown tar types
  uint64_t bytes = 0;    // file data written
};

struct ImportOptions {
  // Past either limit the import fails with RESOURCE_EXHAUSTED.
  uint64_t max_bytes = uint64_t{16} << 30;   // file data
  uint64_t max_entries = uint64_t{1} << 20;  // entries of every kind
  // Keep setuid/setgid bits on files (see the policy above).
  bool keep_setid_bits = false;
};

inline constexpr size_t kMaxImageNameLen = 63;

// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}: usable as one path component and inside
// an overlayfs mount option (no '/', ',', ':', '\\', '=', whitespace or NUL).
absl::Status ValidateImageName(absl::string_view name);

// Copies the tree at `source_dir` into `dest_dir`. Regular files,
// directories and symlinks (copied as links, never followed) are copied;
// files hard-linked to each other stay hard links. Mount points inside the
// source are not crossed: they appear as empty directories. Errors read
// "import image from directory '<src>': entry '<path>': <cause>".
absl::StatusOr<ImageStats> ImportDirectory(const std::string& source_dir, const std::string& dest_dir,
                                           const ImportOptions& options = {});

// Extracts an uncompressed tar archive (ustar, GNU 'L'/'K' long names, pax
// 'x'/'g' headers with path, linkpath, size, uid, gid, mtime) into
// `dest_dir`. `tar_path` may also be a fifo. Truncated or corrupt archives
// are DATA_LOSS; unsafe names INVALID_ARGUMENT; compressed archives and GNU
// sparse files are rejected. Errors read
// "import image from tar '<tar>': entry '<name>': <cause>".
absl::StatusOr<ImageStats> ImportTar(const std::string& tar_path, const std::string& dest_dir,
                                     const ImportOptions& options = {});

// Removes `dir` and everything below it without following any symlink and
// without crossing a mount point (FAILED_PRECONDITION if one is found, so a
// still-mounted rootfs is never emptied through its mount). A symlink at
// `dir` itself is removed, not followed. NOT_FOUND if `dir` does not exist.
// Stops at the first error; calling it again continues.
absl::Status RemoveTree(const std::string& dir);

}  // namespace diyc::netcore
