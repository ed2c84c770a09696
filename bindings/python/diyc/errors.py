"""Exceptions raised by diyc.

Every failure of the core carries a canonical status code (the same codes the
diycd gRPC service returns), so one hierarchy serves the bindings and the
client alike. Subclasses also derive from the matching builtin exception, so
``except LookupError`` or ``except ValueError`` work as a Python user expects.
"""

from __future__ import annotations


class DiycError(Exception):
    """A failed diyc operation.

    Attributes:
        code: canonical status code name, e.g. ``"NOT_FOUND"``.
        errno: the kernel's errno when the failure came from a syscall.
        message: what failed and why, e.g. ``create veth 'v0' in netns 'a': File exists``.
    """

    code: str = "UNKNOWN"

    def __init__(self, message: str, *, code: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.errno = errno

    def __str__(self) -> str:
        return self.message


class NotFoundError(DiycError, LookupError):
    code = "NOT_FOUND"


class AlreadyExistsError(DiycError):
    code = "ALREADY_EXISTS"


class InvalidArgumentError(DiycError, ValueError):
    code = "INVALID_ARGUMENT"


class PermissionDeniedError(DiycError, PermissionError):
    code = "PERMISSION_DENIED"

    def __init__(self, message: str, *, code: str | None = None, errno: int | None = None) -> None:
        # PermissionError's own constructor would read the first argument as errno.
        DiycError.__init__(self, message, code=code, errno=errno)


class FailedPreconditionError(DiycError):
    code = "FAILED_PRECONDITION"


class ResourceExhaustedError(DiycError):
    code = "RESOURCE_EXHAUSTED"


class UnavailableError(DiycError):
    code = "UNAVAILABLE"


_BY_CODE: dict[str, type[DiycError]] = {
    cls.code: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        InvalidArgumentError,
        PermissionDeniedError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnavailableError,
    )
}


def error_for_code(code: str, message: str, errno: int | None = None) -> DiycError:
    """The exception for a canonical status code name (``"NOT_FOUND"``, ...)."""
    cls = _BY_CODE.get(code.upper(), DiycError)
    return cls(message, code=code.upper(), errno=errno)


def _from_status(code: str, message: str, errno: int | None) -> DiycError:
    # Called by the extension module; absl spells codes like "NOT_FOUND".
    return error_for_code(code, message, errno)
