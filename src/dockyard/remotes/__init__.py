"""Registry client: credentials (``~/.docker/config.json``), the auth challenge flow, an aiohttp
transport that knows about insecure registries and certs.d CAs, and pull/push as streams of events."""
