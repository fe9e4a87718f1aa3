"""``BackcompatSamplingClientFuture``: the future of a :class:`SamplingClient` that also works as the client.

Its own module, apart from :mod:`tinkex.client_futures` (which re-exports it), because ``TrainingClient`` returns it:
it needs ``SamplingClient`` only, while the training client's future needs ``TrainingClient``.
"""

from __future__ import annotations

from .backcompat_client_future import BackcompatClientFuture, forwarding
from .sampling_client import SamplingClient

__all__ = ["BackcompatSamplingClientFuture"]


@forwarding(SamplingClient)
class BackcompatSamplingClientFuture(BackcompatClientFuture[SamplingClient], SamplingClient):
    """A future of a :class:`SamplingClient` (``.result()`` / ``await``) that also works as the client
    (and pickles as the client)."""
