"""dockyard.snapshots."""
