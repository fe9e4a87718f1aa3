"""tinkex: a fast, observable client for the Tinker training and sampling API.

Training code written for the official SDK ports by changing the import: ``tinkex.Client`` is its
``ServiceClient`` (also exported under that name), and the clients, futures, types and errors keep their names.
"""

from pristine_transport.deadlines import deadlines
from pristine_transport.policy import Deadlines, RetryBudget

from . import auth, types
from .admin_client import AdminClient
from .api_future import APIFuture
from .client import Client, ServiceClient
from .client_futures import BackcompatSamplingClientFuture, BackcompatTrainingClientFuture
from .config import TINKEX_VERSION as __version__
from .custom_loss_handle import LossHandle, PerDatumLossFn
from .errors import *  # noqa: F403
from .errors import __all__ as _error_names
from .request_options import RequestOptions, Timeout
from .rest_client import RestClient
from .sampling_client import RetryConfig, SamplingClient
from .sdk_method import track_sdk_methods
from .training_client import TrainingClient
from .types import *  # noqa: F403
from .types import __all__ as _type_names


def _track_public_clients() -> None:
    """Requests of a public call carry ``x-sdk-method``, named after the official class, as the official SDK's do."""
    for client_class, official_name in (
        (Client, "ServiceClient"),
        (TrainingClient, "TrainingClient"),
        (SamplingClient, "SamplingClient"),
        (RestClient, "RestClient"),
        (AdminClient, "AdminClient"),
        # Their forwarders, named after themselves: the client's method they call keeps the outer name.
        (BackcompatTrainingClientFuture, "BackcompatTrainingClientFuture"),
        (BackcompatSamplingClientFuture, "BackcompatSamplingClientFuture"),
    ):
        track_sdk_methods(official_name)(client_class)


_track_public_clients()

__title__ = "tinkex"


def __getattr__(name: str) -> object:
    # tiktoken (and its regex engine) load only when a tokenizer is first asked for.
    if name == "get_tokenizer":
        from .tokenizer import get_tokenizer

        return get_tokenizer
    raise AttributeError(f"module 'tinkex' has no attribute {name!r}")


__all__ = [
    "APIFuture",
    "Deadlines",
    "RetryBudget",
    "deadlines",
    "AdminClient",
    "BackcompatSamplingClientFuture",
    "BackcompatTrainingClientFuture",
    "Client",
    "LossHandle",
    "PerDatumLossFn",
    "RequestOptions",
    "RestClient",
    "RetryConfig",
    "SamplingClient",
    "ServiceClient",
    "Timeout",
    "TrainingClient",
    "__title__",
    "__version__",
    "auth",
    "get_tokenizer",  # noqa: F405 - resolved lazily by __getattr__
    "types",
    *_error_names,
    *_type_names,
]
