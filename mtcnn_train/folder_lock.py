"""Output folder locks: two commands writing into one folder at once would mix or lose their work.

Every command that writes holds :class:`FolderLock` on its output folder (``cli.common``); a second
command on the same folder stops at once with "folder in use by process N".
"""
from __future__ import annotations

import os
from pathlib import Path

from mtcnn_train.errors import UserError

#: The lock file inside a locked output folder; it holds the owner's process id.
LOCK_FILE = ".mtcnn-train.lock"


class FolderLock:
    """An exclusive ``fcntl.flock`` on ``folder/.mtcnn-train.lock``, held until :meth:`release`.

    The kernel drops the lock when the process ends, however it ends, so a killed run never
    leaves a folder locked; the file it leaves behind is taken over by the next run.  A second
    process asking for a held lock gets a :class:`UserError` naming the holder's process id.
    """

    def __init__(self, folder: str | Path) -> None:
        import fcntl

        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        #: A folder this lock made is removed again when the command leaves it empty (it failed).
        self.created = not self.folder.is_dir()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(f"{self.folder}: exists and is not a folder") from None
        except OSError as exc:
            raise UserError(f"{self.folder}: cannot create the output folder ({exc.strerror or exc})") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"{self.folder}: cannot write into the output folder ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise UserError(f"{self.folder}: folder in use by process {holder} (another mtcnn-train command "
                                "writes here); wait for it to finish or choose another output folder") from None
            # The holder we waited on may have removed the file between our open and our lock:
            # then we hold a lock on a file nobody else can see, so start again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in this order, so nobody locks a removed file)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder keeps the file; the next run takes it over
        os.close(self._fd)
        self._fd = None
        if self.created:
            try:
                self.folder.rmdir()  # only succeeds when empty
            except OSError:
                pass
