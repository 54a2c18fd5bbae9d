"""A throwaway PostgreSQL cluster for tests that stop, restart or break the server: initdb into a temporary
directory, ``pg_ctl start`` on a free loopback port with its unix socket in that directory, removed after.

The shared server on 127.0.0.1:5432 is never touched. The binaries are looked up in
``$FUSIONGRAPH_TEST_PG_BIN``, then ``pg_config --bindir``, then ``/usr/lib/postgresql/<version>/bin``;
when none has ``initdb`` and ``pg_ctl`` the test FAILS (it is not skipped). Postgres refuses to run as
root, so under root the cluster belongs to the ``postgres`` user and every command runs through
``runuser -u postgres``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

RUN_AS = "postgres"  # the account that owns the cluster when the tests run as root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path:
    """The directory holding initdb and pg_ctl; fails the test when there is none."""
    candidates = []
    if os.environ.get("FUSIONGRAPH_TEST_PG_BIN"):
        candidates.append(os.environ["FUSIONGRAPH_TEST_PG_BIN"])
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    pytest.fail(
        "this test starts a throwaway PostgreSQL cluster and needs its server binaries (initdb, pg_ctl): "
        "install postgresql (apt-get install postgresql) or set FUSIONGRAPH_TEST_PG_BIN; looked in "
        f"{candidates or 'nothing found'}"
    )


class ThrowawayPostgres:
    """One private cluster: ``start()``, ``stop()``, ``restart()``, ``url``; ``destroy()`` removes it."""

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or pg_bindir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.owner = pwd.getpwnam(RUN_AS)
            except KeyError:
                pytest.fail(f"running as root, this test needs a {RUN_AS!r} user to own the throwaway cluster")
        # not pytest's tmp_path: its parents are private to root, and the cluster's owner must reach it
        self.root = Path(tempfile.mkdtemp(prefix="fg-pg-"))
        self.data, self.sock, self.log = self.root / "data", self.root / "sock", self.root / "postgres.log"
        self.sock.mkdir()
        if self.as_root:
            for p in (self.root, self.sock):
                os.chown(p, self.owner.pw_uid, self.owner.pw_gid)
        self.port = _free_port()
        self._pg(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", timeout=120
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.sock}'\n"
                "fsync = off\nmax_connections = 100\n"
            )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and out.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            pytest.fail(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n{log}")
        return out

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start", timeout=90)

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def restart(self, mode: str = "fast") -> None:
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "-t", "60", "restart", timeout=120
        )

    def running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
