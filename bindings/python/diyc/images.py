"""Minimal container root filesystems built from Debian's busybox-static.

``build_busybox_rootfs`` lays out a directory that diyc's image importer
(``ImportDirectory``) takes as it is; ``write_busybox_tar`` writes the same
tree as an uncompressed tar in the shape ``docker export`` produces (relative
names, directory and symlink entries, numeric root ownership), for
``ImportTar``.

The busybox binary must be statically linked (Debian's ``busybox-static``
installs one as ``/bin/busybox``): the image holds no shared libraries.
This module is pure Python and does not load diyc's native extension.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

__all__ = [
    "REQUIRED_APPLETS",
    "build_busybox_rootfs",
    "busybox_applets",
    "write_busybox_tar",
]

#: Applets the tests and examples rely on; a busybox lacking one is refused.
REQUIRED_APPLETS: frozenset[str] = frozenset(
    {
        "sh", "ls", "cat", "echo", "sleep", "ping", "hostname", "ip", "ps", "mount",
        "id", "true", "false", "env", "grep", "head", "wc", "dd", "yes", "kill",
    }
)

# '[' and '[[' are applets too; anything else (a '/', a NUL, "..") would be
# a busybox we should not trust with naming files.
_APPLET_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]+")

# Directory modes as on a Debian system; tmp is world-writable and sticky.
_DIRECTORIES: tuple[tuple[str, int], ...] = (
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("var", 0o755),
)

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"

_PT_INTERP = 3


def _is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter.

    A dynamically linked busybox would fail with "not found" inside a
    rootfs that has no ld.so, so this is checked up front.
    """
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return False
        is_64 = ident[4] == 2
        endian = "<" if ident[5] == 1 else ">"
        header = f.read(48 if is_64 else 36)
        if is_64:
            (phoff,) = struct.unpack_from(endian + "Q", header, 32 - 16)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 54 - 16)
        else:
            (phoff,) = struct.unpack_from(endian + "I", header, 28 - 16)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 42 - 16)
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            raw = f.read(4)
            if len(raw) < 4:
                return False
            (p_type,) = struct.unpack(endian + "I", raw)
            if p_type == _PT_INTERP:
                return False
    return True


def busybox_applets(busybox: str | Path = "/bin/busybox") -> list[str]:
    """The applet names ``busybox --list`` prints, sorted, without "busybox".

    Raises ``ValueError`` if busybox prints a name that is not a plain file
    name.
    """
    result = subprocess.run(
        [os.fspath(busybox), "--list"], check=True, capture_output=True, text=True, timeout=30
    )
    applets: set[str] = set()
    for line in result.stdout.splitlines():
        name = line.strip()
        if not name or name == "busybox":
            continue
        if not _APPLET_NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"busybox --list printed an unusable applet name {name!r}")
        applets.add(name)
    return sorted(applets)


def build_busybox_rootfs(dest: str | Path, *, busybox: str = "/bin/busybox") -> Path:
    """Builds a minimal root filesystem at ``dest`` and returns its path.

    The tree holds ``bin/busybox`` (a copy of ``busybox``, mode 0755), a
    symlink ``bin/<applet> -> busybox`` for every applet ``busybox --list``
    prints, the directories ``dev proc sys etc tmp root var run`` (tmp 1777),
    and ``etc/passwd`` / ``etc/group`` with root and nobody/nogroup. Modes are
    set explicitly, so the umask does not matter; owners are the caller's.

    ``dest`` may be missing (it is created, with missing parents) or an empty
    directory. Raises ``FileExistsError`` if it is not empty and
    ``ValueError`` if ``busybox`` is not statically linked or lacks one of
    ``REQUIRED_APPLETS``. On failure a ``dest`` this call created is removed.
    """
    source = Path(busybox)
    if not _is_static_elf(source):
        raise ValueError(f"{busybox} is not a statically linked ELF executable (install busybox-static)")
    applets = busybox_applets(source)
    missing = REQUIRED_APPLETS.difference(applets)
    if missing:
        raise ValueError(f"{busybox} lacks the applets {', '.join(sorted(missing))}")

    root = Path(dest)
    created = not root.exists()
    if created:
        root.mkdir(mode=0o755, parents=True)
    elif not root.is_dir() or any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not an empty directory")
    try:
        os.chmod(root, 0o755)
        for name, mode in _DIRECTORIES:
            path = root / name
            path.mkdir()
            os.chmod(path, mode)
        binary = root / "bin" / "busybox"
        shutil.copyfile(source, binary)
        os.chmod(binary, 0o755)
        for applet in applets:
            os.symlink("busybox", root / "bin" / applet)
        for name, text in (("passwd", _PASSWD), ("group", _GROUP)):
            path = root / "etc" / name
            path.write_text(text, encoding="ascii")
            os.chmod(path, 0o644)
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Images are owned by root whoever built them, as in `docker export`.
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_busybox_tar(dest_tar: str | Path, *, busybox: str = "/bin/busybox") -> Path:
    """Writes the ``build_busybox_rootfs`` tree as an uncompressed tar.

    Entries are relative (``bin/``, ``bin/busybox``, ``bin/sh`` ...), in
    sorted order, with directory and symlink entries and uid/gid 0, in pax
    format. The archive is written to a temporary file beside ``dest_tar``
    and renamed into place, so ``dest_tar`` is never seen half-written.
    Returns ``dest_tar`` as a ``Path``.
    """
    target = Path(dest_tar)
    with tempfile.TemporaryDirectory(prefix="diyc-busybox-") as scratch:
        root = build_busybox_rootfs(Path(scratch) / "rootfs", busybox=busybox)
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for child in sorted(root.iterdir()):
                    tar.add(child, arcname=child.name, recursive=True, filter=_as_root)
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        except BaseException:
            try:
                os.unlink(partial)
            except FileNotFoundError:
                pass
            raise
    return target
