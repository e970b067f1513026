"""Search events out of a run: LangGraph's custom stream and LangChain callback events.

Each search round goes to LangGraph's custom stream (``stream_mode="custom"``) as
``{"toolprm": {"type": "round", ...}}`` and, as a custom callback event named
``toolprm_round`` (the outcome: ``toolprm_result``), to every callback handler of the run:
``astream_events(version="v2")`` yields them as ``on_custom_event`` and LangSmith records
them on the node's run. Outside a run (a node called directly, no callbacks) the events
go nowhere.

Example:
    ```python
    async for ev in graph.astream_events({"messages": [("user", "Weather in Paris?")]}, version="v2"):
        if ev["event"] == "on_custom_event" and ev["name"] == "toolprm_round":
            print(ev["data"]["round"], [c["text"] for c in ev["data"]["candidates"]])
    ```
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

EVENT_NAMES = {"round": "toolprm_round", "result": "toolprm_result"}


def _stream_writer() -> Callable[[Any], None]:
    """LangGraph's custom-stream writer, or a no-op outside a graph run."""
    try:
        from langgraph.config import get_stream_writer

        return get_stream_writer()
    except Exception:  # not inside a runnable context
        return lambda _chunk: None


def _has_parent_run(config: Any) -> bool:
    if not config or not config.get("callbacks"):
        return False
    from langchain_core.runnables.config import get_callback_manager_for_config

    return get_callback_manager_for_config(config).parent_run_id is not None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SearchEvents:
    """A search's ``on_event`` handler for one run.

    ``config``: the run's config (its callbacks receive the events). ``loop``: the event
    loop of an async run; the search then runs in a worker thread and each event is
    dispatched on that loop (``adispatch_custom_event``) and waited for, so handlers see
    the events in order.
    """

    def __init__(self, config: Any = None, loop: asyncio.AbstractEventLoop | None = None):
        self.writer = _stream_writer()
        self.config = config
        self.loop = loop
        self.callbacks = _has_parent_run(config)

    def __call__(self, event: dict) -> None:
        self.writer({"toolprm": event})
        name = EVENT_NAMES.get(event.get("type", ""))
        if name is None or not self.callbacks:
            return
        if self.loop is not None:
            from langchain_core.callbacks import adispatch_custom_event

            coro = adispatch_custom_event(name, event, config=self.config)
            if _running_loop() is self.loop:  # on the loop itself: waiting would deadlock
                self.loop.create_task(coro)
            else:
                asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        else:
            from langchain_core.callbacks import dispatch_custom_event

            dispatch_custom_event(name, event, config=self.config)


__all__ = ["SearchEvents", "EVENT_NAMES"]
