import hashlib
import json

from exosphere_server.engine.fingerprint import unite_fingerprint

FIELDS = {
    "node_name": "Sum",
    "namespace_name": "demo",
    "identifier": "sum",
    "graph_name": "g",
    "run_id": "r1",
    "retry_count": 0,
    "parents": {"split": "s1", "load": "l1"},
    "manual_retry_fanout_id": "",
}


def test_fingerprint_is_sha256_of_canonical_json():
    canonical = (
        '{"graph_name":"g","identifier":"sum","manual_retry_fanout_id":"","namespace_name":"demo",'
        '"node_name":"Sum","parents":{"load":"l1","split":"s1"},"retry_count":0,"run_id":"r1"}'
    )
    assert unite_fingerprint(**FIELDS) == hashlib.sha256(canonical.encode()).hexdigest()


def test_fingerprint_does_not_depend_on_parents_order():
    reordered = {**FIELDS, "parents": {"load": "l1", "split": "s1"}}
    assert unite_fingerprint(**reordered) == unite_fingerprint(**FIELDS)


def test_retries_and_manual_retries_get_new_fingerprints():
    base = unite_fingerprint(**FIELDS)
    assert unite_fingerprint(**{**FIELDS, "retry_count": 1}) != base
    assert unite_fingerprint(**{**FIELDS, "manual_retry_fanout_id": "m"}) != base


def test_non_ascii_values_are_escaped():
    fields = {**FIELDS, "run_id": "ré"}
    payload = json.dumps({**fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert "\\u00e9" in payload
    assert unite_fingerprint(**fields) == hashlib.sha256(payload.encode()).hexdigest()
