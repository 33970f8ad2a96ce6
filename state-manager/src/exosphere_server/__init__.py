"""Exosphere state manager: stores graphs, runs and states and hands work to runtimes."""

__version__ = "0.1.0"
