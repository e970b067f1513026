"""Start and stop a local vLLM OpenAI-compatible server the way the server backend expects it.

The server backend (:mod:`toolprm_agents.backends.openai_server`) needs a completions server
with xgrammar structured outputs and no free whitespace in grammars; ToolPRM can be served
beside the policy as a LoRA adapter. :func:`serve_command` writes that command line and
:class:`ApiServer` runs it as a child process (its own process group, so the engine process
vLLM starts goes with it)::

    >>> with ApiServer.start("path/to/model", "server.log", lora={"judge": "ckpt/"}) as server:  # doctest: +SKIP
    ...     policy = load_policy(server.url)
    ...     prm = load_judge(server.url + "#judge", "toolprm")

Used by ``benchmarks/backends.py`` and the vLLM tests; for a long-lived deployment run the
command :func:`serve_command` prints under a process manager instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError
from .base import BackendError

__all__ = ["ApiServer", "ServerStartError", "free_port", "serve_command"]


class ServerStartError(BackendError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_command(
    model: str | os.PathLike,
    *,
    port: int,
    host: str = "127.0.0.1",
    max_model_len: int = 4096,
    max_num_seqs: int = 16,
    lora: Mapping[str, str | os.PathLike] | None = None,
    max_lora_rank: int = 16,
    python: str = sys.executable,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``vllm.entrypoints.openai.api_server`` command line for ``model``.

    ``lora`` maps served names to adapter folders (``{"judge": "checkpoints/toolprm-smollm2"}``),
    so ToolPRM is asked for as ``URL#judge``. CPU-friendly defaults: eager mode, float32,
    prefix caching, a fixed seed.

    >>> serve_command("m", port=8000)[1:5]
    ['-m', 'vllm.entrypoints.openai.api_server', '--model', 'm']
    """
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"port must be an int in 1..65535, got {port!r}")
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--host", host, "--port", str(port), "--enforce-eager", "--dtype", "float32",
        "--max-model-len", str(max_model_len), "--max-num-seqs", str(max_num_seqs), "--seed", "0",
        "--enable-prefix-caching",
        "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
    ]
    if lora:
        bad = [n for n in lora if not n or "=" in n or "#" in n or n != n.strip()]
        if bad:
            raise ConfigError(f"LoRA served names must be non-empty without '=', '#' or spaces: {bad}")
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--lora-modules",
                *(f"{name}={path}" for name, path in lora.items())]
    return cmd + list(extra)


@dataclass
class ApiServer:
    """A running server: ``url`` (``http://host:port/v1``), ``ready_seconds``, ``log``."""

    process: subprocess.Popen
    url: str
    ready_seconds: float
    log: Path

    @classmethod
    def start(
        cls,
        model: str | os.PathLike,
        log: str | os.PathLike,
        *,
        timeout: float = 300.0,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        **command: object,
    ) -> "ApiServer":
        """Run :func:`serve_command` (``command`` are its keywords) and wait until ``/models`` answers.

        Raises :class:`ServerStartError` (with the log's tail) if the server exits or is not
        ready within ``timeout`` seconds; the process is stopped in that case.
        """
        import httpx

        log = Path(log)
        port = free_port(host)
        cmd = serve_command(model, port=port, host=host, **command)  # type: ignore[arg-type]
        with open(log, "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(env) if env is not None else None)
        url, t0 = f"http://{host}:{port}/v1", time.monotonic()
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                raise ServerStartError(f"api_server exited with {proc.returncode}; log {log}:\n{_tail(log)}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    return cls(proc, url, time.monotonic() - t0, log)
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        cls(proc, url, 0.0, log).stop()
        raise ServerStartError(f"api_server not ready in {timeout:.0f} s; log {log}:\n{_tail(log)}")

    def stop(self) -> None:
        """Stop the server and the engine process it started (SIGTERM, then SIGKILL after 30 s)."""
        proc = self.process
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def __enter__(self) -> "ApiServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"
