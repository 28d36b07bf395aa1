"""Real servers on free loopback ports for tests: a Chroma server (`chroma run`) and `onegen serve`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

START_SECONDS = 60


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    """`onegen serve` in its own process on a free loopback port, over a database directory.

    `flags` are further `onegen serve` options; the server's output goes to `log`.
    """

    def __init__(self, db: Path, collection: str, *flags: str, log: Path, api_key: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_id = "default"
        self.api_key = api_key
        command = [sys.executable, "-c", "import sys; from onegen_integrations.cli import main; sys.exit(main())"]
        command += ["serve", "--db", str(db), "--collection", collection, "--port", str(self.port), *flags]
        if api_key is not None:
            command += ["--api-key", api_key]
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_until_serving(self.process, f"{self.url}/health", "onegen serve", seconds=180)

    def client(self, **options: object) -> httpx.Client:
        """An HTTP client for this server (with its API key, when it has one)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
