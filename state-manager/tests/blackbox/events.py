"""Reading a run's server-sent events (`GET .../run/{run_id}/events`) in tests: each event as it comes."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    id: int | None
    data: dict[str, Any]


def parse(lines: Iterator[str]) -> Iterator[Event | str]:
    """Events, and `retry:` / comment lines as text, in the order they came."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith((":", "retry:")):
            yield line
        elif line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields:
            yield Event(fields["event"], int(fields["id"]) if "id" in fields else None, json.loads(fields["data"]))
            fields = {}


class Stream:
    """An open event stream read by a thread: the test waits for each event as it comes."""

    def __init__(self, api: httpx.Client, run_id: str, last_event_id: str | None = None) -> None:
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self._context = api.stream("GET", f"/run/{run_id}/events", headers=headers, timeout=60)
        self.response = self._context.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.items: queue.Queue[Event | str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for item in parse(self.response.iter_lines()):
                self.items.put(item)
        except httpx.HTTPError:
            pass
        self.items.put(None)  # the server ended the stream

    def next_event(self) -> Event:
        while True:
            item = self.items.get(timeout=60)
            assert item is not None, "the stream ended"
            if isinstance(item, Event):
                return item

    def until(self, done: Callable[[Event], bool]) -> list[Event]:
        seen = [self.next_event()]
        while not done(seen[-1]):
            seen.append(self.next_event())
        return seen

    def ended(self) -> bool:
        """Whether the server closed the stream after what was read (waits for the end, not a time)."""
        while (item := self.items.get(timeout=60)) is not None:
            assert not isinstance(item, Event), f"unexpected event {item}"
        return True

    def close(self) -> None:
        self._context.__exit__(None, None, None)


@contextmanager
def stream(api: httpx.Client, run_id: str, last_event_id: str | None = None) -> Iterator[Stream]:
    opened = Stream(api, run_id, last_event_id)
    try:
        yield opened
    finally:
        opened.close()


def counts(event: Event, identifier: str) -> dict[str, int]:
    found: dict[str, int] = next((n["counts"] for n in event.data["nodes"] if n["identifier"] == identifier), {})
    return found
