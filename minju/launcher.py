"""`minju up` as a child process on free local ports, for the long runs (`python -m fuzz`,
`python -m bench`): it serves the whole system as a user starts it, and is stopped with SIGINT
as a user stops it. Not used by the service itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from minju.stack import free_port

STARTUP_TIMEOUT = 180.0
EXIT_TIMEOUT = 60.0
#: What `minju up` would otherwise take from the caller's environment instead of starting.
_INHERITED = ("DATABASE_URL", "TEMPORAL_ADDRESS", "MINJU_JWT_SECRET", "MINJU_CLOCK")


@dataclass(frozen=True)
class Launched:
    url: str
    #: The temporary directory: `data/` (the data dir) and `up.log`.
    base: Path
    log_path: Path
    #: The `minju up` process (to profile it: `py-spy record --pid`).
    pid: int


@contextmanager
def minju_up(
    *, clock: str = "simulated", env: Mapping[str, str] | None = None, prefix: str = "minju-"
) -> Iterator[Launched]:
    """`minju up --clock <clock>` in a temporary directory; `env` adds variables (e.g. the
    DATABASE_URL and TEMPORAL_ADDRESS of servers the caller started). The directory is removed
    after a clean exit and kept (and named) otherwise."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    port, temporal_port = free_port(), free_port()
    log_path = base / "up.log"
    child_env = {k: v for k, v in os.environ.items() if k not in _INHERITED}
    child_env.update(env or {})
    minju = Path(sys.executable).parent / "minju"
    argv = [str(minju), "up", "--clock", clock, "--port", str(port)]
    argv += ["--temporal-port", str(temporal_port), "--ui-port", str(free_port())]
    argv += ["--data-dir", str(base / "data")]
    name = Path(sys.argv[0]).parent.name or "minju"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log_path)
            print(f"{name}: minju up is serving {url} (log: {log_path})", flush=True)
            yield Launched(url=url, base=base, log_path=log_path, pid=process.pid)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    if process.returncode == 0:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"{name}: minju up exited with {process.returncode}; kept {base}", flush=True)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"minju up exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise SystemExit(f"/healthz not 200 within {STARTUP_TIMEOUT:.0f}s ({last})")
