"""A synchronous handle on aiohttp's test client over ``make_app(engine)``, for Engine API tests.

The application runs on an event loop of its own in a background thread (as the real server does,
the engine's blocking calls go to worker threads), so a test calls ``api.get("/volumes")`` plainly
and may run other blocking work — the docker CLI, a registry process — while the app serves.

    with ApiClient(Engine(tmp_root)) as api:
        r = api.post("/volumes/create", json={"Name": "v"})
        assert r.status == 201 and r.json()["Name"] == "v"
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dockyard.api.app import make_app


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def messages(self) -> list[dict[str, Any]]:
        """The objects of a JSON message stream (one per line)."""
        return [jsonlib.loads(line) for line in self.body.splitlines() if line.strip()]


class ApiClient:
    def __init__(self, engine: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-test-loop", daemon=True)
        self.thread.start()

        async def start() -> TestClient:
            client = TestClient(TestServer(make_app(engine)))
            await client.start_server()
            return client

        self.client = self._run(start())

    def _run(self, coro: Any, timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def request(self, method: str, path: str, *, json: Any = None, data: Any = None,
                params: Any = None, headers: dict[str, str] | None = None, timeout: float = 600) -> Reply:
        async def go() -> Reply:
            kw: dict[str, Any] = {"params": params, "headers": headers}
            if json is not None:
                kw["json"] = json
            if data is not None:
                kw["data"] = data
            async with self.client.request(method, path, **kw) as resp:
                return Reply(resp.status, dict(resp.headers), await resp.read())

        return self._run(go(), timeout)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        try:
            self._run(self.client.close(), 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
