"""dockyard.runtime: OCI spec generation, runc + conmon, logs, exec, stats."""
