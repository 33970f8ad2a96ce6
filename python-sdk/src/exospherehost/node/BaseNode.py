"""`exospherehost.node.BaseNode`, the original SDK's module path for the node base class (an alias).

Example::

    from exospherehost.node.BaseNode import BaseNode
"""

from exospherehost.node import BaseNode

__all__ = ["BaseNode"]
