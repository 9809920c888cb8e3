"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a temp data dir, a free
loopback port, trust authentication, one fresh database per test.

PostgreSQL refuses to run as root; as root (CI) the cluster runs as the `postgres` OS user
(`runuser -u postgres --`), in a directory that user owns. Without the binaries the tests skip,
unless OMNIPOST_REQUIRE_PG is set (CI), when they fail. Import the fixtures into a test module:

    from pg import pg_cluster, pg_url  # noqa: F401
"""

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRED = bool(os.environ.get("OMNIPOST_REQUIRE_PG"))


def _bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin with initdb and pg_ctl (or OMNIPOST_PG_BIN)."""
    candidates = [os.environ["OMNIPOST_PG_BIN"]] if os.environ.get("OMNIPOST_PG_BIN") else []
    found = glob.glob("/usr/lib/postgresql/*/bin")

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(found, key=version, reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists() and (Path(c) / "psql").exists():
            return Path(c)
    return None


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"OMNIPOST_REQUIRE_PG is set but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """A running cluster; `create_database()` makes an empty database and returns its async URL."""

    bin: Path
    root: Path
    port: int
    prefix: list[str]
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, str(self.bin / tool), *args], capture_output=True, text=True, check=check,
                              timeout=120, cwd=self.root)

    def start(self) -> None:
        result = self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
                          check=False)
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{log[-3000:]}")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = self.run("psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                          "-v", "ON_ERROR_STOP=1", "-c", statement)
        return result.stdout

    def create_database(self) -> str:
        name = f"omnipost_t{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}")
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"


def _start_cluster() -> Cluster:
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL server binaries not found (/usr/lib/postgresql/<ver>/bin; apt-get install postgresql)")
    assert bin_dir is not None
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        _unavailable("the asyncpg driver is not installed")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="omnipost-pg-"))  # under /tmp, so the postgres user can reach it
    if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the postgres OS user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            _unavailable("running as root and there is no `postgres` OS user to run PostgreSQL as")
            raise
        os.chown(root, owner.pw_uid, owner.pw_gid)
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["setpriv", f"--reuid={owner.pw_uid}",
                                                                     f"--regid={owner.pw_gid}", "--init-groups"]
    os.chmod(root, 0o700)
    cluster = Cluster(bin=bin_dir, root=root, port=0, prefix=prefix)
    init = cluster.run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                       "--locale=C", check=False)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
    last: Exception | None = None
    for _ in range(5):  # the free port may be taken between choosing and binding it
        cluster.port = _free_port()
        conf = (f"\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\nunix_socket_directories = '{root}'\n"
                "max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "timezone = 'UTC'\n")
        # Appended as the cluster's owner (the file is theirs); later settings win.
        with open(cluster.data / "postgresql.auto.conf", "a") as f:
            f.write(conf)
        try:
            cluster.start()
            return cluster
        except RuntimeError as e:
            last = e
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"could not start PostgreSQL: {last}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the whole session; stopped and deleted at the end."""
    cluster = _start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty database: postgresql+asyncpg://postgres@127.0.0.1:<port>/<name>."""
    return pg_cluster.create_database()
