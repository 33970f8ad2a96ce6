"""Python's cycle collector, set for a server that holds thousands of records per request.

With the interpreter's defaults (a young collection every 700 new container objects, a full one when
the survivors grow by a quarter), a 10,000-way fan-out on SQLite ran about 550 young and 2 full
collections: 250-300 ms of the server's CPU, an eighth of all it spent on the fan-out (five or six full
collections on PostgreSQL). Each full collection walked every object the process keeps, most of them
loaded at start (modules, routes and their schemas, the tables' metadata: about 170,000), and held the
event loop, `/health` included, for 75-760 ms on a busy two-core machine. The records a transaction
keeps alive are no garbage either, yet every collection walked them again. With the settings below:
about 30 ms of collections in the fan-out, and no full one (docs/benchmarks.md, "The fan-out of 10,000
without the waits" and "`/health` on PostgreSQL during the fan-out").

Only garbage in reference cycles waits for a collection: everything else is freed by its reference
count the moment it is dropped, as before. A larger young generation delays just that garbage, by at
most `YOUNG_OBJECTS` new objects.
"""

from __future__ import annotations

import gc

YOUNG_OBJECTS = 50_000  # new container objects between two young collections (the default is 700)
OLDER_EVERY = 10  # young collections per middle one, and middle ones per full one (the defaults)


def tune_collector() -> int:
    """Never walk what the started server has loaded again, and collect less often; returns how many
    objects were frozen.

    Call it once the server has started (storage, scheduler and routes loaded): `gc.freeze` moves every
    object alive then to a generation no collection visits, as CPython's documentation advises for
    long-lived processes; they live as long as the process anyway. Garbage is collected first, so that
    nothing unreachable is kept for good.

    Example::

        await server.startup()   # uvicorn's: the app is built and its lifespan has run
        frozen = tune_collector()
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, OLDER_EVERY, OLDER_EVERY)
    return gc.get_freeze_count()
