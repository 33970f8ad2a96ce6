"""api layer of the state manager."""
