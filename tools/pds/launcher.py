#!/usr/bin/env python3
"""Run a real Bluesky PDS (@atproto/pds) on loopback for integration tests.

    python tools/pds/launcher.py install [--home DIR]
    python tools/pds/launcher.py start   [--fresh] [--home DIR] [--run-dir DIR] [--port N] [--plc-port N]
    python tools/pds/launcher.py stop    [--home DIR] [--run-dir DIR]
    python tools/pds/launcher.py status  [--home DIR] [--run-dir DIR]
    python tools/pds/launcher.py env     [--home DIR] [--run-dir DIR]
    python tools/pds/launcher.py node    [--home DIR]

``node`` prints the path of a node >= 22 (the one on PATH, or node-linux-<arch>
installed into the home as below) for other node tools that need it, such as
the MCP conformance suite (tests/test_mcp_conformance.py).

What it runs: one node process (``start.mjs``, written by this launcher) with
a did:plc directory (@did-plc/server, in-memory, as @atproto/dev-env does) and
the reference PDS pointed at it, both bound to 127.0.0.1 only, in dev mode,
accounts created without invite codes, handles under ``.test``.

``install`` puts everything under ``--home`` (default ``.tools/pds`` in the repo,
gitignored; or $OMNIPOST_PDS_HOME):

    node/         node 22 from the npm package node-linux-<arch>, only when the
                  node on PATH is older than 22 (the PDS needs >= 22)
    app/          package.json, node_modules, start.mjs
    installed.json  marker: versions installed; a second install is a no-op

The native better-sqlite3 module is compiled from source (its prebuilt
binaries come from a host this machine cannot reach): it needs g++, make and
python3, and the headers of the node that runs it (npm_config_nodedir).

``start`` keeps its state in ``--run-dir`` (default: the home): data/ (sqlite
databases, blobs, the PLC operation log), secrets.env (generated once), pds.log,
state.json (pid, ports). ``--fresh`` wipes data/ first. Several instances can
share one home with different run dirs and ports (the pytest fixture does).

Stdlib only, no omnipost imports: CI and fresh clones run it before anything
else is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PDS_NPM_VERSION = "0.5.35"  # @atproto/pds
PLC_NPM_VERSION = "0.0.1"  # @did-plc/server
NODE_NPM_VERSION = "22.23.3"  # node-linux-<arch>, used when the system node is < 22
MIN_NODE_MAJOR = 22
LAUNCHER_REVISION = 1  # bump when the install layout changes

HOST = "127.0.0.1"
DEFAULT_PORT = 2583
DEFAULT_PLC_PORT = 2582
DEFAULT_READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = REPO_ROOT / ".tools" / "pds"


class LauncherError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[pds-launcher] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- node


def _node_arch() -> str:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise LauncherError(f"no node-linux npm package for machine {platform.machine()!r}")


def _node_version(node: str | Path) -> str | None:
    try:
        out = subprocess.run(
            [str(node), "-p", "process.versions.node"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _major(version: str | None) -> int:
    try:
        return int((version or "0").split(".")[0])
    except ValueError:
        return 0


def _private_node_pkg(home: Path) -> Path:
    return home / "node" / "node_modules" / f"node-linux-{_node_arch()}"


def _system_node() -> tuple[Path, Path] | None:
    """(node binary, headers dir) of the node on PATH if it is >= 22 and has headers."""
    found = shutil.which("node")
    if not found:
        return None
    if _major(_node_version(found)) < MIN_NODE_MAJOR:
        return None
    prefix = Path(os.path.realpath(found)).parent.parent
    if not (prefix / "include" / "node" / "node.h").is_file():
        # node-gyp would download headers from nodejs.org: unreachable here.
        return None
    return Path(found), prefix


def _resolve_node(home: Path) -> tuple[Path, Path]:
    """The node to run the PDS with and the dir holding its include/node headers.

    Does not install anything: see _ensure_node."""
    system = _system_node()
    if system:
        return system
    pkg = _private_node_pkg(home)
    return pkg / "bin" / "node", pkg


def _npm() -> str:
    npm = shutil.which("npm")
    if not npm:
        raise LauncherError("npm is not on PATH: install Node.js and npm (apt-get install nodejs npm)")
    return npm


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    log("$ " + " ".join(shlex.quote(c) for c in cmd) + f"   (in {cwd})")
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        raise LauncherError(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}")


def _npm_env(node: Path, headers: Path) -> dict[str, str]:
    env = dict(os.environ)
    # npm and node-gyp run under the node that will run the PDS.
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    # Compile native modules against that node's headers (a user npmrc may say
    # nodedir=/usr, the headers of an older system node), and never try to
    # download prebuilt binaries or headers: only the registry is reachable.
    env["npm_config_nodedir"] = str(headers)
    env["npm_config_build_from_source"] = "true"
    env["npm_config_audit"] = "false"
    env["npm_config_fund"] = "false"
    env["npm_config_update_notifier"] = "false"
    env.setdefault("npm_config_loglevel", "error")
    env.setdefault("JOBS", str(os.cpu_count() or 2))  # node-gyp parallel make
    return env


def _ensure_node(home: Path) -> tuple[Path, Path]:
    system = _system_node()
    if system:
        return system
    pkg = _private_node_pkg(home)
    node = pkg / "bin" / "node"
    if node.is_file() and _node_version(node) == NODE_NPM_VERSION:
        return node, pkg
    current = shutil.which("node")
    log(
        f"node on PATH is {_node_version(current) if current else 'missing'}; the PDS needs >= {MIN_NODE_MAJOR}: "
        f"installing node-linux-{_node_arch()}@{NODE_NPM_VERSION} from npm (~60 MB download)"
    )
    node_dir = home / "node"
    node_dir.mkdir(parents=True, exist_ok=True)
    (node_dir / "package.json").write_text(
        json.dumps(
            {
                "name": "omnipost-local-node",
                "private": True,
                "dependencies": {f"node-linux-{_node_arch()}": NODE_NPM_VERSION},
            },
            indent=2,
        )
        + "\n"
    )
    env = dict(os.environ)
    env["npm_config_audit"] = "false"
    env["npm_config_fund"] = "false"
    _run([_npm(), "install", "--no-package-lock", "--loglevel=error"], node_dir, env)
    if _node_version(node) != NODE_NPM_VERSION:
        raise LauncherError(f"{node} is not node {NODE_NPM_VERSION} after npm install")
    return node, pkg


def ensure_node(home: Path) -> Path:
    """A node >= 22: the one on PATH if it qualifies, else node-linux-<arch> installed into `home`/node."""
    with _install_lock(home):  # a concurrent `install` may be fetching the same package
        return _ensure_node(home)[0]


# ------------------------------------------------------------------------ install


def _app_dir(home: Path) -> Path:
    return home / "app"


def _wanted_marker(node: Path) -> dict[str, object]:
    return {
        "launcher_revision": LAUNCHER_REVISION,
        "pds": PDS_NPM_VERSION,
        "plc": PLC_NPM_VERSION,
        "node": str(node),
        "node_version": _node_version(node),
    }


def _marker_ok(home: Path) -> bool:
    marker = home / "installed.json"
    try:
        have = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    node, _ = _resolve_node(home)
    if not node.is_file() or have.get("node") != str(node):
        return False
    if not (_app_dir(home) / "node_modules" / "@atproto" / "pds" / "package.json").is_file():
        return False
    want = {k: v for k, v in _wanted_marker(node).items() if k != "node_version"}
    if any(have.get(k) != v for k, v in want.items()):
        return False
    # a system node upgrade would need a rebuild of better-sqlite3
    return have.get("node_version") == _node_version(node)


@contextlib.contextmanager
def _install_lock(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".install.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install(home: Path) -> Path:
    """Install node 22 (if needed) + the PDS and PLC packages; return the node binary."""
    if _marker_ok(home):
        return _resolve_node(home)[0]
    with _install_lock(home):  # another process may be installing into the same home
        if _marker_ok(home):
            return _resolve_node(home)[0]
        t0 = time.monotonic()
        (home / "installed.json").unlink(missing_ok=True)
        node, headers = _ensure_node(home)
        app = _app_dir(home)
        app.mkdir(parents=True, exist_ok=True)
        (app / "package.json").write_text(
            json.dumps(
                {
                    "name": "omnipost-local-pds",
                    "private": True,
                    "type": "module",
                    "dependencies": {
                        "@atproto/pds": PDS_NPM_VERSION,
                        "@did-plc/server": PLC_NPM_VERSION,
                    },
                },
                indent=2,
            )
            + "\n"
        )
        env = _npm_env(node, headers)
        log(f"installing @atproto/pds@{PDS_NPM_VERSION} + @did-plc/server@{PLC_NPM_VERSION} (a few minutes the first time)")
        _run([_npm(), "install", "--no-audit", "--no-fund"], app, env)
        # The sqlite binding must load in this node: it is missing if npm skipped
        # install scripts, and fails with NODE_MODULE_VERSION if it was built
        # for another node. Rebuild it from source in either case.
        if not _sqlite_loads(node, app):
            log(f"compiling better-sqlite3 for node {_node_version(node)}")
            _run([_npm(), "rebuild", "better-sqlite3"], app, env)
            if not _sqlite_loads(node, app):
                raise LauncherError("better-sqlite3 still does not load after npm rebuild (need g++, make, python3)")
        marker = _wanted_marker(node)
        marker["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        marker["seconds"] = round(time.monotonic() - t0, 1)
        (home / "installed.json").write_text(json.dumps(marker, indent=2) + "\n")
        log(f"installed in {home} in {marker['seconds']} s (node {marker['node_version']})")
        return node


def _sqlite_loads(node: Path, app: Path) -> bool:
    proc = subprocess.run(
        [str(node), "-e", "const D = require('better-sqlite3'); new D(':memory:').prepare('select 1').get()"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        log("better-sqlite3 does not load: " + (proc.stderr.strip().splitlines() or ["?"])[-1])
    return proc.returncode == 0


# -------------------------------------------------------------------- start.mjs

START_MJS = r"""// Written by tools/pds/launcher.py; do not edit (rewritten at each start).
// One process: a did:plc directory (@did-plc/server, in-memory database) and
// @atproto/pds configured from its own PDS_* environment variables.
// Launcher variables: OMNIPOST_BIND_HOST, OMNIPOST_PLC_PORT,
// OMNIPOST_PLC_OPLOG (accepted PLC operations, one JSON per line, replayed at
// start so the DIDs already in the PDS's databases resolve after a restart),
// OMNIPOST_EXIT_WITH_PID (exit when that process is gone).
import fs from 'node:fs'
import { createRequire } from 'node:module'
import * as pdsModule from '@atproto/pds'

const { PDS, envToCfg, envToSecrets, readEnv } = pdsModule
const require = createRequire(import.meta.url)
const { Database: PlcDatabase, PlcServer } = require('@did-plc/server')

const host = process.env.OMNIPOST_BIND_HOST || '127.0.0.1'
const plcPort = Number(process.env.OMNIPOST_PLC_PORT || 2582)
const oplogPath = process.env.OMNIPOST_PLC_OPLOG || ''
const started = Date.now()
const say = (msg) => console.log(`[start.mjs] ${msg}`)

// Both servers call app.listen(port) with no address (all interfaces).
const listenOnLoopback = (app) => {
  const original = app.listen.bind(app)
  app.listen = (port, ...args) => original(port, host, ...args)
}

// ---- PLC directory
const plcDb = PlcDatabase.mock()
if (oplogPath && fs.existsSync(oplogPath)) {
  const lines = fs.readFileSync(oplogPath, 'utf8').split('\n').filter((l) => l.trim())
  for (const line of lines) {
    const entry = JSON.parse(line)
    await plcDb.validateAndAddOp(entry.did, entry.op)
  }
  say(`plc: replayed ${lines.length} operation(s)`)
}
if (oplogPath) {
  const addOp = plcDb.validateAndAddOp.bind(plcDb)
  plcDb.validateAndAddOp = async (did, op) => {
    await addOp(did, op) // throws on a bad op, so only accepted ones are kept
    fs.appendFileSync(oplogPath, JSON.stringify({ did, op }) + '\n')
  }
}
const plc = PlcServer.create({ db: plcDb, port: plcPort })
listenOnLoopback(plc.app)
await plc.start()
say(`plc: http://${host}:${plcPort}`)

// ---- PDS
const env = readEnv()
// The PDS refuses IP-literal URLs for DID resolution: use a name.
env.didPlcUrl = env.didPlcUrl || `http://localhost:${plcPort}`
const pds = await PDS.create(envToCfg(env), envToSecrets(env))
listenOnLoopback(pds.app)

// Handles under this PDS's own domains (.test) cannot resolve through DNS or
// https://<handle>/.well-known offline: answer them from the account table.
const { cfg, idResolver, accountManager } = pds.ctx
const resolveElsewhere = idResolver.handle.resolve.bind(idResolver.handle)
idResolver.handle.resolve = async (handle) => {
  const ours = cfg.identity.serviceHandleDomains.some((d) => handle.endsWith(d))
  if (!ours) return resolveElsewhere(handle)
  const account = await accountManager.getAccount(handle)
  return account ? account.did : undefined
}

await pds.start()
say(
  `pds ${cfg.service.version}: http://${host}:${cfg.service.port}` +
    ` (public ${cfg.service.publicUrl}, plc ${cfg.identity.plcUrl}) ready in ${Date.now() - started} ms`,
)

// ---- stop
let stopping = false
const stop = async (why) => {
  if (stopping) return
  stopping = true
  say(`stopping: ${why}`)
  setTimeout(() => process.exit(1), 10000).unref()
  try { await pds.destroy() } catch (e) { console.error('pds.destroy', e) }
  try { await plc.destroy() } catch (e) { console.error('plc.destroy', e) }
  process.exit(0)
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
const parentPid = Number(process.env.OMNIPOST_EXIT_WITH_PID || 0)
if (parentPid) {
  setInterval(() => {
    try { process.kill(parentPid, 0) } catch { stop(`process ${parentPid} is gone`) }
  }, 1000).unref()
}
"""


# ------------------------------------------------------------------------ running


class Instance:
    """Paths and state of one running (or not) PDS, kept in its run dir."""

    def __init__(self, home: Path, run_dir: Path | None = None):
        self.home = home
        self.run_dir = run_dir or home
        self.data_dir = self.run_dir / "data"
        self.secrets_file = self.run_dir / "secrets.env"
        self.log_file = self.run_dir / "pds.log"
        self.state_file = self.run_dir / "state.json"

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        st = self.state()
        if not st:
            return None
        pid = int(st.get("pid", 0))
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        # the pid may have been reused by an unrelated process
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return pid  # no /proc: trust kill(0)
        if not any(part.endswith(b"start.mjs") for part in cmdline):
            return None
        # a zombie child (only when our own process started it) is not running
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return None
        return pid

    def secrets(self) -> dict[str, str]:
        if not self.secrets_file.is_file():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: any 32 random bytes are a
            # valid secp256k1 key; it signs every account's PLC operations, so it
            # is kept (like the JWT secret) for restarts that keep the data.
            values = {
                "PDS_JWT_SECRET": secrets.token_hex(32),
                "PDS_ADMIN_PASSWORD": secrets.token_hex(16),
                "PDS_DPOP_SECRET": secrets.token_hex(32),
                "PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX": secrets.token_hex(32),
            }
            tmp = self.secrets_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("".join(f"{k}={v}\n" for k, v in values.items()))
            os.replace(tmp, self.secrets_file)
        out = {}
        for line in self.secrets_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
        return out


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never proxy loopback


def _healthy(url: str) -> dict | None:
    try:
        with _opener.open(f"{url}/xrpc/_health", timeout=2) as resp:
            if resp.status == 200:
                return json.loads(resp.read() or b"{}")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return None


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start(
    home: Path,
    run_dir: Path | None = None,
    port: int = DEFAULT_PORT,
    plc_port: int = DEFAULT_PLC_PORT,
    fresh: bool = False,
    timeout: float = DEFAULT_READY_TIMEOUT,
    exit_with_pid: int | None = None,
) -> str:
    inst = Instance(home, run_dir)
    pid = inst.running_pid()
    if pid and fresh:
        raise LauncherError(f"already running (pid {pid}); stop it before --fresh")
    if pid:
        url = inst.state()["url"]  # type: ignore[index]
        log(f"already running (pid {pid}) at {url}")
        return url
    node = install(home)
    if fresh and inst.data_dir.exists():
        shutil.rmtree(inst.data_dir)
    for p in (port, plc_port):
        if _port_in_use(p):
            raise LauncherError(f"port {p} on {HOST} is already in use")
    inst.data_dir.mkdir(parents=True, exist_ok=True)
    (inst.data_dir / "blobs").mkdir(exist_ok=True)
    app = _app_dir(home)
    script = app / "start.mjs"
    if not script.is_file() or script.read_text() != START_MJS:
        script.write_text(START_MJS)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PDS_", "OMNIPOST_"))}
    env.update(inst.secrets())
    env.update(
        {
            "PDS_HOSTNAME": "localhost",  # public URL http://localhost:PORT; handles under .test
            "PDS_PORT": str(port),
            "PDS_DATA_DIRECTORY": str(inst.data_dir),
            "PDS_BLOBSTORE_DISK_LOCATION": str(inst.data_dir / "blobs"),
            "PDS_DEV_MODE": "true",  # http URLs, no SSRF guard for loopback
            "PDS_INVITE_REQUIRED": "false",
            "PDS_CRAWLERS": "",  # no relay to notify
            "PDS_DID_PLC_URL": f"http://localhost:{plc_port}",
            "LOG_ENABLED": os.environ.get("LOG_ENABLED", "true"),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info"),
            "OMNIPOST_BIND_HOST": HOST,
            "OMNIPOST_PLC_PORT": str(plc_port),
            "OMNIPOST_PLC_OPLOG": str(inst.data_dir / "plc-ops.jsonl"),
            "NODE_ENV": "development",
        }
    )
    if exit_with_pid:
        env["OMNIPOST_EXIT_WITH_PID"] = str(exit_with_pid)

    url = f"http://{HOST}:{port}"
    t0 = time.monotonic()
    with open(inst.log_file, "ab") as logfh:
        logfh.write(f"\n==== start {time.strftime('%Y-%m-%d %H:%M:%S')} port {port} plc {plc_port}\n".encode())
        logfh.flush()
        proc = subprocess.Popen(
            [str(node), "start.mjs"],
            cwd=app,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the caller's Ctrl-C does not reach it
        )
    inst.state_file.write_text(
        json.dumps(
            {
                "pid": proc.pid,
                "url": url,
                "port": port,
                "plc_url": f"http://{HOST}:{plc_port}",
                "plc_port": plc_port,
                "home": str(home),
                "log": str(inst.log_file),
            },
            indent=2,
        )
        + "\n"
    )
    deadline = t0 + timeout
    while True:
        health = _healthy(url)
        if health is not None:
            break
        if proc.poll() is not None:
            inst.state_file.unlink(missing_ok=True)
            raise LauncherError(
                f"the PDS exited with code {proc.returncode} during start-up; log {inst.log_file}:\n{_tail(inst.log_file)}"
            )
        if time.monotonic() > deadline:
            stop(home, run_dir)
            raise LauncherError(
                f"not healthy after {timeout:.0f} s; log {inst.log_file}:\n{_tail(inst.log_file)}"
            )
        time.sleep(0.1)
    log(f"healthy in {time.monotonic() - t0:.2f} s: {health} (pid {proc.pid}, log {inst.log_file})")
    return url


def stop(home: Path, run_dir: Path | None = None, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM, then SIGKILL after `timeout`. True if something was stopped."""
    inst = Instance(home, run_dir)
    pid = inst.running_pid()
    if not pid:
        inst.state_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and inst.running_pid() == pid:
        _reap(pid)
        time.sleep(0.05)
    if inst.running_pid() == pid:
        log(f"pid {pid} ignored SIGTERM for {timeout:.0f} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            _reap(pid)
            if inst.running_pid() != pid:
                break
            time.sleep(0.05)
    _reap(pid)
    inst.state_file.unlink(missing_ok=True)
    log(f"stopped pid {pid}")
    return True


def _reap(pid: int) -> None:
    # collects the exit status when this very process started it
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def env_lines(home: Path, run_dir: Path | None = None) -> list[str]:
    inst = Instance(home, run_dir)
    st = inst.state()
    if not st or not inst.running_pid():
        raise LauncherError("not running: start it first")
    sec = inst.secrets()
    values = {
        "LOCAL_PDS_URL": st["url"],
        "LOCAL_PDS_ADMIN_PASSWORD": sec["PDS_ADMIN_PASSWORD"],
        "LOCAL_PDS_JWT_SECRET": sec["PDS_JWT_SECRET"],
        "LOCAL_PDS_HANDLE_DOMAIN": ".test",
        "LOCAL_PLC_URL": st["plc_url"],
    }
    return [f"export {k}={shlex.quote(str(v))}" for k, v in values.items()]


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="launcher.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["install", "start", "stop", "status", "env", "node"])
    p.add_argument("--home", type=Path, default=Path(os.environ.get("OMNIPOST_PDS_HOME") or DEFAULT_HOME),
                   help="install dir (default: .tools/pds in the repo, or $OMNIPOST_PDS_HOME)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="data, secrets, log and pid of this instance (default: the home)")
    p.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_PDS_PORT", DEFAULT_PORT)))
    p.add_argument("--plc-port", type=int, default=int(os.environ.get("LOCAL_PLC_PORT", DEFAULT_PLC_PORT)))
    p.add_argument("--fresh", action="store_true", help="start: wipe the data dir first (no accounts)")
    p.add_argument("--timeout", type=float, default=DEFAULT_READY_TIMEOUT,
                   help="start: seconds to wait for /xrpc/_health (default 90)")
    p.add_argument("--exit-with-pid", type=int, default=None,
                   help="start: the PDS stops itself when this process is gone")
    a = p.parse_args(argv)
    home = a.home.resolve()
    run_dir = a.run_dir.resolve() if a.run_dir else None
    try:
        if a.command == "install":
            node = install(home)
            log(f"ready: {home} (node {_node_version(node)} at {node})")
        elif a.command == "start":
            print(start(home, run_dir, a.port, a.plc_port, a.fresh, a.timeout, a.exit_with_pid), flush=True)
        elif a.command == "stop":
            if not stop(home, run_dir):
                log("not running")
        elif a.command == "status":
            inst = Instance(home, run_dir)
            pid = inst.running_pid()
            if not pid:
                print("stopped")
                return 3
            st = inst.state() or {}
            health = _healthy(st.get("url", ""))
            print(f"running pid {pid} {st.get('url')} {'healthy' if health is not None else 'NOT healthy'}")
            return 0 if health is not None else 1
        elif a.command == "env":
            print("\n".join(env_lines(home, run_dir)))
        elif a.command == "node":
            print(ensure_node(home), flush=True)
    except LauncherError as e:
        log(f"ERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
