"""A tiny real language model for LocalServer, in numpy: what the API reports is true of it.

- :mod:`.model`: the frozen base model (embeddings, a context layer, an MLP, an output head; causal), its weights
  made from the base model's name;
- :mod:`.lora`: the trainable adapter, one per training client, of the rank it asked for;
- :mod:`.losses`: the built-in losses with the official formulas and ``loss_fn_config`` keys;
- :mod:`.optim`: Adam / AdamW (other optimizer families are refused by name);
- :mod:`.training`: forward / forward-backward over a batch (true logprobs, losses, accumulated gradients);
- :mod:`.sampling`: temperature, top-k, top-p, stop tokens and strings, seeded samples with true logprobs; the
  prompt's logprobs, top-k and 0.38's targets and alternative draws, and the top-k at each sampled token;
- :mod:`.state`: a run's adapter and optimizer state, as checkpoints and as the server's persisted state;
- :mod:`.vocabulary`: the default vocabulary, tinkex's offline byte-level encoding.
"""

from .errors import ModelInputError, TokenOutOfVocabulary, UnsupportedOptimizer
from .lora import lora_scale
from .losses import CONFIG_KEYS, LOSS_FUNCTIONS
from .model import BaseWeights, base_weights, name_seed
from .optim import AdamSettings, adam_settings
from .sampling import (
    DEFAULT_MAX_TOKENS,
    Sample,
    SamplingSettings,
    prompt_alt_tokens,
    prompt_logprobs,
    prompt_table,
    sample,
    target_prompt_logprobs,
    topk_prompt_logprobs,
    topk_sample_logprobs,
)
from .state import ModelState, snapshot_params
from .training import DatumInput, DatumOutput, check_tokens, run_builtin_loss, run_logprob_loss, score
from .vocabulary import DEFAULT_VOCAB_SIZE, end_of_sequence, text_decoder

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_VOCAB_SIZE",
    "LOSS_FUNCTIONS",
    "AdamSettings",
    "BaseWeights",
    "DatumInput",
    "DatumOutput",
    "ModelInputError",
    "ModelState",
    "Sample",
    "SamplingSettings",
    "TokenOutOfVocabulary",
    "UnsupportedOptimizer",
    "adam_settings",
    "base_weights",
    "check_tokens",
    "end_of_sequence",
    "lora_scale",
    "name_seed",
    "prompt_alt_tokens",
    "prompt_logprobs",
    "prompt_table",
    "run_builtin_loss",
    "run_logprob_loss",
    "sample",
    "score",
    "snapshot_params",
    "target_prompt_logprobs",
    "text_decoder",
    "topk_prompt_logprobs",
    "topk_sample_logprobs",
]
