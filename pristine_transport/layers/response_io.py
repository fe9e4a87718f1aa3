"""Reading a response body inside a layer without leaking its connection."""

from __future__ import annotations

import anyio
import httpx

__all__ = ["discard", "read_or_close"]


async def read_or_close(response: httpx.Response) -> None:
    """Read the whole body; if reading fails or is cancelled, close the response (shielded) and re-raise."""
    try:
        await response.aread()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await response.aclose()
        raise


async def discard(response: httpx.Response) -> None:
    """Read and close a response that will not be returned, so its connection goes back to the pool (closing an
    unread response would drop the connection instead)."""
    try:
        await response.aread()
    except httpx.HTTPError:
        pass  # the body is thrown away anyway; a broken one must not stop the caller
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
