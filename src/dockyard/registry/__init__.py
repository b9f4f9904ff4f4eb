"""dockyard.registry: a private OCI registry server (Distribution spec v1.1)."""
