"""dockyard.containers: the container model and its records."""
