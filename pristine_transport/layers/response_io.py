"""Reading a response body inside a layer without leaking its connection."""

from __future__ import annotations

import anyio
import httpx

__all__ = ["read_or_close"]


async def read_or_close(response: httpx.Response) -> None:
    """Read the whole body; if reading fails or is cancelled, close the response (shielded) and re-raise."""
    try:
        await response.aread()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await response.aclose()
        raise
