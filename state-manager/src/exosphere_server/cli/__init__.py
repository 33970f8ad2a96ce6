"""`exosphere server`, which the server package adds to the SDK's `exosphere` command line.

The command line itself lives in the SDK (`exospherehost.cli`) and talks to the server only through
`exospherehost.StateManager`. `server.py` reaches it through the entry point
`exospherehost.cli_plugins: server` in pyproject.toml. `main` stays importable from here for
`python -m exosphere_server` and for scripts written against the old module.

Example::

    python -m exosphere_server server --port 8000   # the same as `exosphere server --port 8000`
"""

from exospherehost.cli import main

__all__ = ["main"]
