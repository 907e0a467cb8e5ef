"""What is wrong with a data file path, named precisely (not everything is "file not found")."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def source_file_problem(path: Path) -> str | None:
    """None when ``path`` is a readable regular file (or a link to one); else the real problem."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.EACCES:
            return "cannot be reached: permission denied on a directory above it"
        if os.path.islink(path):
            return f"is a broken symbolic link (to {os.readlink(path)})"
        if exc.errno == errno.ENOENT:
            return "file not found"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a data file"
    if stat.S_ISFIFO(st.st_mode):
        return "is a named pipe (FIFO), not a data file; write the data to a regular file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device or socket)"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "is not readable: permission denied"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None
