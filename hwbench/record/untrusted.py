"""Reading a file that anyone may have put there: records are copied together from other machines and people.

Only a regular file is read; it is opened without blocking (a FIFO named results.json blocks a plain open until
someone writes to it) and without taking a terminal as the process's own; more than ``MAX_RECORD_BYTES`` is
refused before a byte is read. Whatever is wrong is one ValueError with a one-line reason.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_RECORD_BYTES = 16 * 2**20  # a real record is tens of KB; a run of 1,000 epochs is a few hundred
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
KINDS = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
         stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}  # fmt: skip


def kind(mode: int) -> str:
    return next((name for test, name in KINDS.items() if test(mode)), "not a plain file")


def file_bytes(path: str | Path, limit: int = MAX_RECORD_BYTES) -> bytes:
    """A small regular file's bytes in four system calls (open, fstat, read, close), where Python's file objects
    take seven: reading 50,000 records is mostly system calls. The size fstat gives is read at once, plus a byte:
    a short read is the end; a file that grew meanwhile is read on, to ``limit``."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as err:
        raise ValueError(f"cannot be read ({err.strerror or err})") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file ({kind(st.st_mode)})")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size:,} bytes, over the {limit:,} a record may have")
        want = st.st_size + 1
        chunks = [os.read(fd, want)]
        total = len(chunks[0])
        while len(chunks[-1]) == want and total <= limit:  # it grew since fstat
            want = 1 << 16
            chunks.append(os.read(fd, want))
            total += len(chunks[-1])
        if total > limit:
            raise ValueError(f"over the {limit:,} bytes a record may have")
        return b"".join(chunks)
    except OSError as err:  # EIO, or a folder read as a file where fstat raced with a rename
        raise ValueError(f"cannot be read ({err.strerror or err})") from err
    finally:
        os.close(fd)
