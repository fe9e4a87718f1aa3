"""Async methods use a client bound to the caller's loop; a loop that ends before ``close()`` closes its own."""

from __future__ import annotations

import asyncio

from sdk_helpers import BASE_MODEL, server_client

from tinkex import types
from tinkex.testing import LocalServer


def test_a_finished_asyncio_run_closes_the_connections_of_its_loop() -> None:
    with LocalServer(long_poll_timeout=0.2) as server:
        client = server_client(server)
        try:

            async def train_once() -> object:
                training = await client.create_lora_training_client_async(BASE_MODEL)
                future = await training.optim_step_async(types.AdamParams())
                http = client.holder.clients().http
                await future
                return http

            first_http = asyncio.run(train_once())
            assert first_http.http.is_closed  # asyncio.run's end cancelled the closer task, which closed it
            assert list(client.holder._per_loop) == [client.holder.runtime.loop]  # only the background loop remains

            second_http = asyncio.run(train_once())  # a new loop gets a fresh client
            assert second_http is not first_http and second_http.http.is_closed
        finally:
            client.close()
