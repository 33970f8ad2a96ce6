"""`GET /v0/namespace/{ns}/run/{run_id}/events`: a run's progress as server-sent events, resumable by id."""

from __future__ import annotations

import httpx
import pytest
from exosphere_testing import ServerProcess

from .events import counts, stream
from .helpers import claim_all, errored, executed, node, register, trigger, upsert

NODES = {"Split": (("text",), ("part",)), "Work": (("part",), ("done",))}


@pytest.fixture
def fan(api: httpx.Client, namespace: str) -> str:
    register(api, NODES)
    split = node("split", "Split", namespace, {"text": "${{ store.text }}"}, next_nodes=["work"])
    work = node("work", "Work", namespace, {"part": "${{ split.outputs.part }}"})
    upsert(api, "fan", [split, work], store_config={"required_keys": ["text"]}, retry_policy={"backoff_factor": 1})
    return "fan"


def test_a_snapshot_then_every_change_then_finished_and_the_stream_ends(api: httpx.Client, fan: str) -> None:
    run_id = trigger(api, fan, store={"text": "ab"})
    with stream(api, run_id) as events:
        assert events.items.get(timeout=60) == "retry: 1000"
        first = events.next_event()
        assert (first.event, first.data["status"], counts(first, "split")) == ("snapshot", "PENDING", {"CREATED": 1})
        assert first.id == first.data["version"] and first.data["run_id"] == run_id and not first.data["finished"]

        [root] = claim_all(api, "Split", count=1)
        queued = events.until(lambda e: counts(e, "split") == {"QUEUED": 1})
        assert executed(api, root, {"part": "a"}, {"part": "b"}).status_code == 200
        fanned = events.until(lambda e: counts(e, "work") == {"CREATED": 2})
        work = claim_all(api, "Work", count=2)
        assert executed(api, work[0], {"done": "a"}).status_code == 200
        assert errored(api, work[1]).status_code == 200  # a retry: RETRY_CREATED and a new CREATED
        retried = events.until(lambda e: counts(e, "work") == {"SUCCESS": 1, "RETRY_CREATED": 1, "CREATED": 1})
        [again] = claim_all(api, "Work", count=1)
        assert executed(api, again, {"done": "b"}).status_code == 200
        rest = events.until(lambda e: e.data["finished"])
        assert events.ended()

    every = [first, *queued, *fanned, *retried, *rest]
    assert [e.event for e in every] == ["snapshot"] + ["change"] * (len(every) - 2) + ["finished"]
    ids = [e.id for e in every]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(e.id == e.data["version"] for e in every)
    last = rest[-1].data
    # split twice (the fan-out), work a, work b's retry; its first attempt was retried
    assert (last["status"], last["success_count"], last["retried_count"], last["total_count"]) == ("SUCCESS", 4, 1, 5)
    assert api.get(f"/run/{run_id}/progress").json() == last  # every event is the progress of that moment


def test_last_event_id_resumes_after_it_and_a_finished_run_always_sends_its_end(api: httpx.Client, fan: str) -> None:
    run_id = trigger(api, fan, store={"text": "a"})
    with stream(api, run_id) as events:
        seen = events.next_event()
    with stream(api, run_id, last_event_id=str(seen.id)) as resumed:
        [root] = claim_all(api, "Split", count=1)
        newer = resumed.next_event()  # nothing older or equal came first
        assert newer.event == "snapshot" and newer.id is not None and seen.id is not None and newer.id > seen.id
        assert counts(newer, "split") == {"QUEUED": 1}
        executed(api, root, {"part": "x"})
        [work] = claim_all(api, "Work", count=1)
        executed(api, work, {"done": "x"})
        end = resumed.until(lambda e: e.data["finished"])[-1]
    for last_event_id in (str(end.id), "0", str(10**17)):  # the finished event comes whatever the id says
        with stream(api, run_id, last_event_id) as again:
            repeat = again.next_event()
            assert (repeat.event, repeat.id) == ("finished", end.id)
            assert again.ended()


def test_unknown_runs_bad_ids_and_missing_keys_are_refused_before_the_stream(
    api: httpx.Client, server: ServerProcess, fan: str, namespace: str
) -> None:
    run_id = trigger(api, fan, store={"text": "a"})
    missing = api.get("/run/no-such-run/events")
    assert missing.status_code == 404 and "no-such-run" in missing.json()["detail"]
    with httpx.Client(base_url=server.url, headers={"x-api-key": server.api_key}) as other:
        elsewhere = other.get(f"/v0/namespace/{namespace}-other/run/{run_id}/events")
        assert elsewhere.status_code == 404  # a namespace is a wall
    assert httpx.get(f"{server.url}/v0/namespace/{namespace}/run/{run_id}/events").status_code == 401
    wrong_key = {"x-api-key": "wrong"}
    assert httpx.get(f"{server.url}/v0/namespace/{namespace}/run/{run_id}/events", headers=wrong_key).status_code == 401
    for bad in ("abc", "-1", "1.5", "9" * 19):
        refused = api.get(f"/run/{run_id}/events", headers={"Last-Event-ID": bad})
        assert refused.status_code == 422, (bad, refused.text)
    assert api.get("/run/a%00b/events").status_code == 422
