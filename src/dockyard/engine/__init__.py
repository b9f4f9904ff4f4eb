"""dockyard.engine."""
