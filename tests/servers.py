"""Real servers on free loopback ports for tests: a Chroma server (`chroma run`) and `onegen serve`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.server_load import free_port, onegen_server

START_SECONDS = 60


def wait_until_serving(process: subprocess.Popen[bytes], url: str, name: str, seconds: float = START_SECONDS) -> None:
    """Return once `url` answers 200; fail the test (killing `process`) if it exits or never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=0.5).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{name} did not answer {url} within {seconds:g} s")


class ChromaServer:
    """`chroma run` over one database directory; `start` returns once it answers its heartbeat."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.host = "127.0.0.1"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        self.process = subprocess.Popen(
            [chroma, "run", "--path", str(self.path), "--host", self.host, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_serving(self.process, f"http://{self.host}:{self.port}/api/v2/heartbeat", "chroma run")

    def kill(self) -> None:
        """Stop the server the hard way, as a crash or a lost machine would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


class OneGenServer:
    """`onegen serve` in its own process on a free loopback port, over a database directory
    (`benchmarks.server_load.onegen_server`, the load test's launcher).

    `flags` are further `onegen serve` options; the server's output goes to `log`.
    """

    def __init__(self, db: Path, collection: str, *flags: str, log: Path, api_key: str | None = None) -> None:
        self.model_id = "default"
        self.api_key = api_key
        self._server = onegen_server(db, collection, log, *flags, *(("--api-key", api_key) if api_key else ()))
        self.url = self._server.url

    def client(self, **options: object) -> httpx.Client:
        """An HTTP client for this server (with its API key, when it has one)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **options)

    def stop(self) -> None:
        self._server.stop()
