"""The futures of a client that the 0.38 creation methods return, usable as the client itself (0.16 code).

Since 0.38 ``create_lora_training_client``, ``create_training_client_from_state*``, ``create_sampling_client`` and
``save_weights_and_get_sampling_client`` return at once with a future of the client (``.result()`` or ``await``);
0.16 code uses the return value as the client directly. :class:`BackcompatTrainingClientFuture` and
:class:`BackcompatSamplingClientFuture` are both: an :class:`APIFuture` of the client, and a subclass of the
client's class whose every public method waits for the client and calls the same method on it (instance
attributes such as ``model_id`` likewise). Unlike the official SDK, tinkex keeps the 0.16 form working for good,
so using the future as the client raises no deprecation warning. The requests such a use sends (and its futures'
polls) carry the official ``x-sdk-method``: ``BackcompatTrainingClientFuture.forward_backward`` (see
:mod:`tinkex.sdk_method`).
"""

from __future__ import annotations

from .backcompat_client_future import BackcompatClientFuture, forwarding
from .backcompat_sampling_client_future import BackcompatSamplingClientFuture
from .training_client import TrainingClient

__all__ = ["BackcompatClientFuture", "BackcompatSamplingClientFuture", "BackcompatTrainingClientFuture"]


@forwarding(TrainingClient)
class BackcompatTrainingClientFuture(BackcompatClientFuture[TrainingClient], TrainingClient):
    """A future of a :class:`TrainingClient` (``.result()`` / ``await``) that also works as the client."""
