"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, a Unix socket only, stopped at the end.

initdb refuses to run as root, so as root the cluster is made and run by ``nobody`` (``runuser``).
Without the binaries the PostgreSQL tests skip, unless ``VEIL_REQUIRE_POSTGRES=1`` (CI) makes that a
failure. ``VEIL_PG_URL`` points the tests at an existing server instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


def binaries() -> Path | None:
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))  # Debian's, not its wrapper scripts
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class Cluster:
    folder: Path
    bin: Path
    user: str | None  # run as this user (root cannot run PostgreSQL), or as ourselves

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def url(self, database: str = "veil") -> str:
        return f"postgresql://veil@/{database}?host={self.folder}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o",
                  f"-k {self.folder} -c listen_addresses='' -c max_connections=60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def new_database(self) -> str:
        """A fresh empty database in the cluster, so each test has its own gallery."""
        name = "g" + uuid.uuid4().hex[:12]
        self._run("createdb", "-h", str(self.folder), "-U", "veil", name)
        return self.url(name)


def start_cluster() -> Cluster:
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    folder = Path(tempfile.mkdtemp(prefix="veil-pg-"))
    user = "nobody" if os.geteuid() == 0 else None
    if user:
        shutil.chown(folder, user)
    cluster = Cluster(folder, bin_dir, user)
    cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "veil", "--no-sync")
    cluster.start()
    try:
        cluster._run("createdb", "-h", str(folder), "-U", "veil", "veil")
    except BaseException:
        cluster.stop()
        raise
    return cluster
