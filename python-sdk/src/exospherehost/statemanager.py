"""`exospherehost.statemanager`, the original SDK's module path for `StateManager` (an alias).

Example::

    from exospherehost.statemanager import StateManager
"""

from exospherehost.state_manager import StateManager

__all__ = ["StateManager"]
