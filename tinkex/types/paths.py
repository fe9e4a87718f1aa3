"""``tinker://`` checkpoint paths (`docs/wire.md` §1.6)."""

from __future__ import annotations

from typing import Literal

from ._base import ResponseStruct

__all__ = ["TINKER_PATH_PREFIX", "CheckpointType", "ParsedCheckpointTinkerPath"]

TINKER_PATH_PREFIX = "tinker://"

CheckpointType = Literal["training", "sampler", "external"]
"""``external`` [0.38]: weights exported with ``save_weights_external``."""

_CHECKPOINT_TYPE_BY_KIND: dict[str, CheckpointType] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}


class ParsedCheckpointTinkerPath(ResponseStruct, kw_only=True):
    tinker_path: str
    training_run_id: str
    checkpoint_type: CheckpointType
    checkpoint_id: str
    """Includes the kind segment, e.g. ``weights/ckpt-1``; REST paths embed it unencoded."""

    @classmethod
    def from_tinker_path(cls, tinker_path: str) -> ParsedCheckpointTinkerPath:
        """Parse ``tinker://<run>/<kind>/<name>``, kind ``weights``, ``sampler_weights`` or [0.38]
        ``external_weights``."""
        if not tinker_path.startswith(TINKER_PATH_PREFIX):
            raise ValueError(f"invalid tinker path {tinker_path!r}: must start with {TINKER_PATH_PREFIX!r}")
        segments = tinker_path[len(TINKER_PATH_PREFIX) :].split("/")
        if len(segments) != 3 or not all(segments):
            raise ValueError(
                f"invalid tinker path {tinker_path!r}: expected tinker://<training_run_id>/<kind>/<name> "
                "with exactly 3 non-empty segments"
            )
        run_id, kind, name = segments
        checkpoint_type = _CHECKPOINT_TYPE_BY_KIND.get(kind)
        if checkpoint_type is None:
            raise ValueError(
                f"invalid tinker path {tinker_path!r}: kind {kind!r} is not 'weights' or 'sampler_weights' "
                "(or 0.38's 'external_weights')"
            )
        return cls(
            tinker_path=tinker_path,
            training_run_id=run_id,
            checkpoint_type=checkpoint_type,
            checkpoint_id=f"{kind}/{name}",
        )
