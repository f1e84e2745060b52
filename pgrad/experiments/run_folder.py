"""Who may write a run folder: one ``pgrad train`` at a time, and only into a new or empty folder.

Two rules keep a run's files its own:

- A folder that already holds a run is never trained into again, except by ``--resume`` (which
  continues that run) or with ``--overwrite`` (which clears it first, and only if it holds a
  pgrad run, so a typo cannot wipe an unrelated folder).
- While a ``pgrad train`` (or ``--resume``) runs, it holds an exclusive lock on ``RUN/.lock``; a
  second one on the same folder is refused, naming the process. The lock is an ``flock`` on an
  open file, which the kernel releases when the process ends in any way, ``kill -9`` included:
  the file a killed run leaves behind is then not locked, and the next run takes it over (a
  stale lock cleared safely, with no guess about whether a PID is still alive). ``flock`` is per
  machine: on a filesystem shared by several machines (a Ray cluster), it guards each machine
  separately.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from pgrad.errors import ConfigError

LOCK_NAME = ".lock"


def holds_a_run(folder: Path) -> bool:
    """Whether ``folder`` holds pgrad run files (of one seed or several)."""
    markers = ("config.json", "checkpoint", "metrics.csv", "summary.json", "policy.json")
    return any((folder / name).exists() for name in markers) or any(folder.glob("seed_*/config.json"))


def never_checkpointed(folder: Path) -> bool:
    """Whether ``folder`` holds the start of a single run killed before its first checkpoint
    (a run writes config.json, then its step-0 checkpoint, before it trains)."""
    return (
        folder.is_dir()
        and holds_a_run(folder)
        and not (folder / "checkpoint" / "state.json").is_file()
        and not (folder / "checkpoint" / "state.safetensors").is_file()
        and not any(folder.glob("seed_*"))
    )


def check_new_run_folder(folder: Path, overwrite: bool) -> None:
    """Raise ConfigError unless a new run may be written into ``folder``; with ``overwrite``,
    clear a folder that holds a run first."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file, not a folder")
    contents = [path for path in folder.iterdir() if path.name != LOCK_NAME]
    if not contents:
        return
    if not overwrite:
        kind = "a pgrad run" if holds_a_run(folder) else "other files"
        raise ConfigError(
            f"--out {folder} already holds {kind}; continue that run with --resume {folder}, clear it with "
            "--overwrite, or choose another --out"
        )
    if not holds_a_run(folder):
        raise ConfigError(f"--overwrite: {folder} does not hold a pgrad run; pgrad clears only its own run folders")
    for path in contents:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files of atomic writes (``.NAME.XXXX.tmp``, pgrad/io.py) that a
    killed run left in ``folder`` and its subfolders; return them. Called with the folder's lock
    held, so no process of this run is writing one."""
    stale = [path for path in folder.rglob(".*.tmp") if path.is_file() and not path.is_symlink()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class RunFolderLock:
    """An exclusive ``flock`` on ``RUN/.lock``, from :meth:`acquire` to :meth:`release` (or a ``with`` block)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd: int | None = None

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, creating the folder if needed; ConfigError if another process holds it."""
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file, or a path under one
            raise ConfigError(f"cannot make the run folder {self.folder}: {exc.strerror or exc}") from None
        path = self.folder / LOCK_NAME
        # O_NOFOLLOW: a symlink planted at RUN/.lock cannot make pgrad write elsewhere
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{self.folder} is in use by another pgrad train ({holder}); wait for it to finish or stop it "
                "(its checkpoint then resumes with --resume)"
            ) from None
        # ours now: record who holds it, for the message a second run prints
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.write(fd, json.dumps(record).encode())
        self.fd = fd

    def release(self) -> None:
        """Let go of the lock (nothing if it is not held)."""
        if self.fd is not None:
            import fcntl

            # leave the file (another process may be waiting to lock it); unlocking is what counts
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"process {record['pid']} on {record['host']}, since {record['since']}"
    except (ValueError, KeyError, OSError):
        return "a process that has not written its name yet"
