"""dockyard.metadata."""
