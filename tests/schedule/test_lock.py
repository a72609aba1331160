"""The state lock: one holder at a time, a clear refusal, nothing left behind by a dead holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from publisher.errors import LockError
from publisher.schedule.lock import StateLock, holder_pid


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    path = tmp_path / "state" / "run.lock"
    with StateLock(path):
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(LockError, match=rf"^already running \(pid {os.getpid()}\)$"):
            StateLock(path).acquire()
        assert holder_pid(path) == os.getpid()
    # Released: free for the next one, and the pid is gone from the file.
    assert holder_pid(path) is None
    assert path.read_text() == ""
    with StateLock(path):
        pass


def test_refusal_names_what_is_going_on(tmp_path: Path) -> None:
    path = tmp_path / "digest.lock"
    with (
        StateLock(path, "a digest is being sent"),
        pytest.raises(LockError, match=r"^a digest is being sent \(pid \d+\)$"),
    ):
        StateLock(path, "a digest is being sent").acquire()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from publisher.schedule.lock import StateLock
                StateLock(Path({str(path)!r})).acquire()
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=rf"\(pid {holder.pid}\)"):
            StateLock(path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    # The file is still there with the dead pid in it, and yet it does not block.
    assert path.read_text().strip() == str(holder.pid)
    assert holder_pid(path) is None
    with StateLock(path) as lock:
        assert lock.held


def test_holder_pid_of_a_missing_lock_file_is_none(tmp_path: Path) -> None:
    assert holder_pid(tmp_path / "nothing.lock") is None
