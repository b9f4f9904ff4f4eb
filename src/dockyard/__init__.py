"""dockyard: a Docker-compatible, daemonless container platform in Python."""

__version__ = "0.1.0"
API_VERSION = "1.43"
