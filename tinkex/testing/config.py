"""Settings of the local Tinker-compatible server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from tinkex.types import ClientConfigResponse, ClientDynamicConfigResponse

__all__ = ["DEFAULT_BASE_MODELS", "ServerConfig"]

DEFAULT_BASE_MODELS: tuple[str, ...] = (
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-30B-A3B",
    "meta-llama/Llama-3.1-8B",
)


@dataclass(frozen=True)
class ServerConfig:
    """Everything that shapes the server's behaviour; faults are added separately (``LocalServer(faults=...)``).

    ``future_latency`` is how long after submission a future's result becomes ready; ``latency_by_endpoint``
    overrides it per endpoint name (``"asample"``, ``"forward_backward"`` ...). ``long_poll_timeout`` bounds how
    long one ``retrieve_future`` poll is held open while the result is not ready. ``future_ttl`` (seconds after
    the result is ready, ``None`` = never) expires futures, which then answer 410.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = field(default=None, repr=False)
    """Exact key ``X-API-Key`` must carry; ``None`` accepts any key that starts with ``tml-``."""
    future_latency: float = 0.0
    latency_by_endpoint: Mapping[str, float] = field(default_factory=dict)
    long_poll_timeout: float = 1.0
    future_ttl: float | None = None
    metadata_only_threshold: int | None = None
    """Results larger than this many bytes are announced with ``complete_metadata`` when the poll allows it."""
    sample_inflight_limit: int | None = None
    """Above this many unfinished samples, ``asample`` with the backpressure header answers 429."""
    state_dir: Path | None = None
    """Persist training runs and checkpoints here (JSON); ``None`` keeps them in memory only."""
    seed: int = 0
    """Seeds fault rates and default sampling seeds, so a run is reproducible."""
    base_models: Sequence[str] = DEFAULT_BASE_MODELS
    certfile: Path | None = None
    keyfile: Path | None = None
    """With both ``certfile`` and ``keyfile`` the server speaks TLS and offers h2 and http/1.1 via ALPN."""
    graceful_timeout: float = 1.0
    """On stop, how long in-flight requests may finish before their connections are cut."""
    vocab_size: int | None = None
    """Token ids the model accepts; ``None``: the offline byte-level encoding's (``tinkex-bytes``, 283 ids). Set
    it larger to train and sample with another tokenizer's ids (the server then knows no end-of-sequence token)."""
    client_config: ClientConfigResponse = field(default_factory=ClientConfigResponse)
    """What ``client/config`` answers (the official defaults; e.g. ``proto_compress_fwdbwd=True`` asks 0.38
    clients for zstd ``forward_backward`` bodies, which this server reads either way). ``parallel_fwdbwd_chunks``
    (on by default) lets clients submit a batch's chunks at once; ``ClientConfigResponse(parallel_fwdbwd_chunks=False)``
    makes them send one after another (with ``strict_sequence`` it is always off). The sampling flags work here
    too: ``sample_use_retrieve_futures=True`` has clients poll ``retrieve_futures`` for their samples (served by
    :mod:`tinkex.testing.retrieve_futures`), ``sample_join_sampling_session=True`` has copies of a sampling client
    ask ``join_sampling_session`` for their clone number."""
    dynamic_config: ClientDynamicConfigResponse = field(
        default_factory=lambda: ClientDynamicConfigResponse(sample_cancel_enabled=True)
    )
    """What ``client/dynamic_config`` answers until changed (``tinkex.testing.dialect.change_dynamic_config``).
    ``sample_cancel_enabled`` is on: this server implements ``cancel_future``."""
    jwt_lifetime: float = 3600.0
    """Seconds between a JWT's ``iat`` and ``exp`` when ``client_config.pjwt_auth_enabled`` switches JWTs on (see
    :mod:`tinkex.testing.jwt_tokens`); short lifetimes make renewal testable."""
    deprecation_note: str | None = None
    """Sent on every response as ``x-deprecation-note`` (with ``x-deprecation-level: deprecation_level``)."""
    deprecation_level: str = "warning"
    json_training_bodies: bool = True
    """False: ``forward_backward`` and ``forward`` refuse JSON bodies with 415 and take protobuf only, as servers
    built for today's official SDK do (see :mod:`tinkex.testing.dialect`)."""
    strict_sequence: bool = False
    """True: a model's training requests must arrive with consecutive seq_ids (1, 2, 3 …), else 409 naming the
    expected and the received one, as some third-party servers answer (see :mod:`tinkex.testing.sequence_rules`).
    Such a server cannot take a batch's chunks at once (they travel on several connections, in no set order), so it
    answers ``parallel_fwdbwd_chunks=False`` in ``client/config``, whatever ``client_config`` says."""

    def __post_init__(self) -> None:
        if isinstance(self.state_dir, str):  # a path given as text (``LocalServer(state_dir="./state")``)
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if self.strict_sequence and self.client_config.parallel_fwdbwd_chunks:
            # The flag is how a server tells clients (official 0.38 ones too) to send chunks one after another.
            serial = msgspec.structs.replace(self.client_config, parallel_fwdbwd_chunks=False)
            object.__setattr__(self, "client_config", serial)

    def latency_for(self, endpoint: str) -> float:
        return self.latency_by_endpoint.get(endpoint, self.future_latency)

    @property
    def tls(self) -> bool:
        return self.certfile is not None and self.keyfile is not None
