"""Which exceptions are the user's input being wrong (printed as one line) rather than our bugs."""

from __future__ import annotations

# ValueError is the project-wide contract for bad user data: its message names the file or field
# and what is wrong with it. File-system errors already name the path.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
