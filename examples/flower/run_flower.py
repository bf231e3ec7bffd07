#!/usr/bin/env python3
"""Runs the app with Flower's simulation engine and/or on a loopback deployment (a real SuperLink
and SuperNodes on 127.0.0.1), starting and stopping every process it needs by its own pid, each
step bounded in time.

    python run_flower.py simulation [--rounds 3] [--run-config 'compress=false'] [--results r.json]
    python run_flower.py deployment [--rounds 3] [--nodes 2] [...]

Each child runs in its own process group (``start_new_session``) so that stopping it also stops
what it spawned (the ServerApp / ClientApp subprocesses); nothing else is signalled. Flower state
(FLWR_HOME, with the connection config) lives in a temporary directory. Runtime dependency
installation is disabled: run this from an environment that has nnc, flwr, numpy and scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
TIMED_OUT = 124
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(root: int) -> list[int]:
    """Pids of every live process below `root` (Flower detaches some of its helpers into new
    sessions, so a process group does not cover them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_pids(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


class Processes:
    """Children started here, stopped by pid (their own process group) on exit."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir, self.env, self.children = log_dir, env, []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        print(f"started {name} (pid {proc.pid}): {' '.join(cmd)}", flush=True)
        self.children.append((name, proc, log))
        return proc

    def dump_stacks(self) -> None:
        """SIGABRT to every Python process below the children: with PYTHONFAULTHANDLER set they
        print their threads' stacks (into the logs) before dying; used on a timeout."""
        for _, proc, _ in self.children:
            pids = [proc.pid] + descendants(proc.pid)
            pythons = []
            for pid in pids:
                try:
                    exe = os.readlink(f"/proc/{pid}/exe")
                except OSError:
                    continue
                if "python" in os.path.basename(exe):
                    pythons.append(pid)
            signal_pids(pythons, signal.SIGABRT)
        time.sleep(2)

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM to each child (SuperNodes first, so they leave while the SuperLink is up),
        SIGKILL to it and to every process it had started if they outlive `grace`."""
        below = {proc.pid: descendants(proc.pid) for _, proc, _ in self.children}
        for name, proc, log in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            leftovers = [p for p in below[proc.pid] + descendants(proc.pid) if Path(f"/proc/{p}").exists()]
            if leftovers:
                signal_pids(leftovers, signal.SIGTERM)
                time.sleep(2)
                signal_pids([p for p in leftovers if Path(f"/proc/{p}").exists()], signal.SIGKILL)
            log.close()
            print(f"stopped {name} (pid {proc.pid}, exit {proc.returncode})", flush=True)
        self.children.clear()

    def tail(self, lines: int = 40) -> None:
        for name, _, _ in self.children:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
            print(f"--- {name}.log (last {lines} lines) ---")
            print("\n".join(text[-lines:]))


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SuperLink exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"SuperLink not healthy on 127.0.0.1:{port} after {timeout:.0f} s")


def flwr_home(tmp: Path, connection: str, port: int) -> Path:
    home = tmp / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{connection}"\n\n'
        f'[superlink.{connection}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    return home


def run_config_args(args) -> list[str]:
    items = [f"num-server-rounds={args.rounds}", f"min-nodes={args.nodes}"]
    if args.results:
        items.append(f'results-file="{Path(args.results).resolve()}"')
    items += args.run_config
    return ["--run-config", " ".join(items)]


def run(mode: str, args) -> int:
    tmp = Path(tempfile.mkdtemp(prefix=f"nnc-flower-{mode}-"))
    port = free_port()
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home(tmp, mode, port)),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # Flower starts its helpers by name
        # Ray (simulation engine) on the loopback address rather than the host's own address.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        # A hung run is stopped with SIGABRT first, so every Python process prints its stacks.
        PYTHONFAULTHANDLER="1",
    )
    procs = Processes(tmp, env)
    started = time.monotonic()
    try:
        link_cmd = [
            tool("flower-superlink"),
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-runtime-dependency-installation",
        ]
        if mode == "simulation":
            link_cmd.append("--simulation")
        link = procs.start("superlink", link_cmd)
        wait_healthy(port, link, args.startup_timeout)
        if mode == "deployment":
            for i in range(args.nodes):
                procs.start(
                    f"supernode-{i}",
                    [
                        tool("flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{port}",
                        "--port",
                        str(free_port()),
                        "--node-config",
                        f"partition-id={i} num-partitions={args.nodes}",
                    ],
                )
        cmd = [tool("flwr"), "run", str(APP_DIR), mode, "--stream"] + run_config_args(args)
        if mode == "simulation":
            cmd += [
                "--federation-config",
                f"num-supernodes={args.nodes} client-resources-num-cpus=1",
            ]
        print(f"running: {' '.join(cmd)}", flush=True)
        result = subprocess.run(
            cmd, env=env, timeout=args.timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out = result.stdout.decode(errors="replace")
        print(out)
        if result.returncode != 0:
            procs.tail()
            return result.returncode
        if args.results and not Path(args.results).exists():
            print(f"the run wrote no results to {args.results}")
            procs.tail()
            return 1
        print(f"{mode}: finished in {time.monotonic() - started:.1f} s")
        return 0
    except (subprocess.TimeoutExpired, TimeoutError, RuntimeError) as e:
        print(f"{mode}: {e}")
        if isinstance(e, subprocess.TimeoutExpired):
            procs.dump_stacks()
            procs.tail(200)
            return TIMED_OUT
        procs.tail(200)
        return 1
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["simulation", "deployment"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--run-config", action="append", default=[], help="extra key=value items")
    p.add_argument("--results", help="write the per-round results (JSON) here")
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    p.add_argument("--startup-timeout", type=float, default=60)
    p.add_argument("--keep", action="store_true", help="keep FLWR_HOME and the process logs")
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        help="start over this many times after a run that hung (timed out); its stacks are printed",
    )
    args = p.parse_args()
    for attempt in range(args.retries + 1):
        code = run(args.mode, args)
        if code != TIMED_OUT or attempt == args.retries:
            return code
        print(f"{args.mode}: attempt {attempt + 1} hung; starting over", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
