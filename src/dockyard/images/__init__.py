"""dockyard.images."""
