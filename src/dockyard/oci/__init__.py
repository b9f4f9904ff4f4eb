"""dockyard.oci."""
