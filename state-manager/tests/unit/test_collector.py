"""The server's garbage collector settings (issue 15: the 10,000-way fan-out ran 2 full collections of
about 100 ms each, and 250-300 ms of collections in all). Checked in a fresh interpreter: the settings
are process-wide, and this test process must keep the interpreter's own."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json, weakref
from exosphere_server.app import create_app  # what a server has imported before it serves
from exosphere_server.collector import tune_collector

before = gc.get_threshold()
tune_collector()

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a reference cycle: freed only by a collection
gone = []
weakref.finalize(a, gone.append, True)
del a, b
gc.collect()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(), "gone": gone}))
"""


def test_the_collector_runs_less_often_walks_no_startup_object_and_still_frees_cycles() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(done.stdout)
    assert found["before"] == [700, 10, 10]  # the interpreter's defaults, which the server replaces
    assert found["after"] == [50_000, 10, 10]
    assert found["frozen"] > 10_000  # the modules and classes imported at startup: never walked again
    assert found["gone"] == [True]  # garbage in cycles is still collected
