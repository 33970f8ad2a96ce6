"""Python's cyclic garbage collector, set for a server that holds thousands of records per request.

With the interpreter's defaults (a young collection every 700 new container objects, a full one when
the survivors grow by a quarter), a 10,000-way fan-out on SQLite ran about 550 young and 2 full
collections: 250-300 ms of the server's CPU (about an eighth of all it spent on the fan-out), and each
full collection held the event loop for about 100 ms, walking every object the server had, its
imported modules and app included. Records a transaction keeps alive are no garbage, yet every
collection walked them again. Measured in docs/benchmarks.md ("The fan-out of 10,000 without the
waits"): about 30 ms of collections instead, and no full collection during the fan-out.

Most objects are freed by their reference counts the moment they are dropped; only garbage in cycles
waits for a collection, so a larger young generation delays just that garbage, by at most
`YOUNG_OBJECTS` new objects.
"""

from __future__ import annotations

import gc

YOUNG_OBJECTS = 50_000  # new container objects between two young collections (the default is 700)
OLDER_EVERY = 10  # young collections per middle one, and middle ones per full one (the defaults)


def tune_collector() -> None:
    """Collect less often, and never walk what the server built at startup again.

    Call it once the app is built, before serving: `gc.freeze` moves every object alive then (modules,
    routes, compiled statements) to a generation no collection visits, as CPython's documentation
    advises for long-lived processes; they live as long as the process anyway.

    Example::

        app = create_app(settings)
        tune_collector()
        uvicorn.Server(uvicorn.Config(app)).run()
    """
    gc.collect()  # what startup left as garbage is freed now rather than frozen for good
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, OLDER_EVERY, OLDER_EVERY)
