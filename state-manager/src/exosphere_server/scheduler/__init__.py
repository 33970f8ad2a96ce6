"""scheduler layer of the state manager."""
