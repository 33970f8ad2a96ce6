"""Exosphere state manager: stores graphs, runs and states and hands work to runtimes.

Layers, imports pointing down only (see `state-manager/ARCHITECTURE.md`, held by import-linter):
`dashboard` → `api` | `scheduler` → `engine` → `storage`. Only the engine opens storage transactions.
"""

__version__ = "0.1.0"
