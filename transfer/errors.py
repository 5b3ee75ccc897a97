"""Which exceptions are the user's input or system being wrong (printed as one line) rather than our bugs."""

from __future__ import annotations

import errno as errno_codes

# ValueError is the project-wide contract for bad user data: its message names the file or field
# and what is wrong with it. Our own file-system errors name the path in their message.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def describe(error: BaseException) -> str:
    """One line for the user: our own messages as they are; an operating-system error as path: reason."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        code = errno_codes.errorcode.get(error.errno or 0)
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
        return f"{where}: {error.strerror}" + (f" ({code})" if code else "")
    return str(error)
