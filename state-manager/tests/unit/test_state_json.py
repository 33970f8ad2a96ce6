"""The JSON of state rows: decoded as `json.loads` decodes it, encoded as SQLAlchemy's JSON type binds it,
each shared object once (`storage.base.decode_json`, `storage.base.JsonTexts`)."""

from __future__ import annotations

import json

import pytest
from exosphere_server.storage.base import JsonTexts, decode_json

TEXTS = [
    "{}",
    "null",
    "[]",
    '{"a": "1"}',
    '{"plan": {"x": "root", "\\u00fc": "na\\u00efve \\u2603"}}',
    '[{"name": "llm", "key": "", "tokens": 3, "concurrency": 2}]',
    '"text"',
    "1.5",
    "true",
    ' {"spaced": "out"} ',  # text the scanner does not consume whole goes to json.loads
    '{"a": "1"}\n',
]


@pytest.mark.parametrize("text", TEXTS)
def test_decoding_gives_what_json_loads_gives(text: str) -> None:
    assert decode_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{bad", '{"a": 1} trailing', "nul"])
def test_text_that_is_no_json_is_refused_as_json_loads_refuses_it(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        decode_json(text)


def test_empty_objects_decode_to_new_dicts_each_time() -> None:
    first, second = decode_json("{}"), decode_json("{}")
    first["changed"] = "1"
    assert second == {}


def test_encoding_is_json_dumps_and_null_follows_the_column() -> None:
    texts = JsonTexts()
    for value in ({"a": "1"}, [{"k": 1}], {}, {"nested": {"ü": "☃"}}):
        assert texts.text(value, none_as_null=False) == json.dumps(value)
    assert texts.text(None, none_as_null=False) == "null"  # a JSON null, as sa.JSON stores None
    assert texts.text(None, none_as_null=True) is None  # SQL NULL, for sa.JSON(none_as_null=True)


def test_one_object_is_encoded_once_per_batch() -> None:
    texts = JsonTexts()
    shared = {"x": "1"}
    assert texts.text(shared, none_as_null=False) == '{"x": "1"}'
    shared["x"] = "changed"  # rows share the object, never change it: the first text stands
    assert texts.text(shared, none_as_null=False) == '{"x": "1"}'
    assert texts.text({"x": "changed"}, none_as_null=False) == '{"x": "changed"}'  # another object, encoded
