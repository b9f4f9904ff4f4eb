"""dockyard.content."""
