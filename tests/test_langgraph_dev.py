"""The deployable graphs under ``langgraph dev``: a real API server on 127.0.0.1, a thread run over HTTP.

``graphs/langgraph.json`` is what a user deploys; this starts it as ``langgraph dev`` does
for them (in-memory runtime, no browser, no reload, no analytics or tracing), runs the
``toolprm_agent`` graph on a thread with per-run settings in ``configurable["toolprm"]``,
and checks the whole loop: the search's call, the tool's result, the text answer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.smollm2]

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("langgraph-dev") / "server.log"
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = Path(sys.executable).with_name("langgraph")
    cmd = [str(cli) if cli.exists() else "langgraph", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
           "--port", str(port), "--config", "langgraph.json"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=GRAPHS, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer /ok in 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_a_thread_runs_the_toolprm_agent_over_http(server):
    with httpx.Client(base_url=server, timeout=600) as client:
        thread = client.post("/threads", json={}).json()["thread_id"]
        r = client.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "toolprm_agent",
            "input": {"messages": [{"role": "user", "content": "What's the weather in Paris?"}]},
            "config": {"configurable": {"toolprm": {"strategy": "greedy"}}},
        })
        assert r.status_code == 200, r.text
        messages = r.json()["messages"]
        kinds = [m["type"] for m in messages]
        assert kinds == ["human", "ai", "tool", "ai"], kinds
        call = messages[1]["tool_calls"][0]
        assert call["name"] == "get_weather" and call["args"]["city"] == "Paris"
        assert "Paris" in messages[2]["content"] and "°" in messages[2]["content"]  # the demo world's tool ran
        assert messages[3]["content"].strip() and not messages[3]["tool_calls"]  # ended with a text answer
        # the thread kept its state on the server
        state = client.get(f"/threads/{thread}/state").json()
        assert len(state["values"]["messages"]) == 4
