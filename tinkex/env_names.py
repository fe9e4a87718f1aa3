"""The environment variables tinkex reads, each name spelled once.

``TINKER_*`` are the official SDK's (same meaning); ``TINKEX_*`` are tinkex's own. The manifest spells the ones its
layers read (base URL, API key, Cloudflare Access headers, logging, HTTP backend); a test checks it spells them as
here.
"""

from __future__ import annotations

__all__ = [
    "API_KEY",
    "BASE_URL",
    "CLI_TIMEOUT",
    "CLOUDFLARE_ACCESS_CLIENT_ID",
    "CLOUDFLARE_ACCESS_CLIENT_SECRET",
    "CONSOLE_URL",
    "CREDENTIAL_CMD",
    "HTTP_BACKEND",
    "LOG",
    "PROJECT_ID",
    "TAGS",
    "TELEMETRY",
    "TOKENIZER",
    "TOKENIZER_FILE",
    "TOKENIZER_FILES",
    "WIRE_DIALECT",
]

# the official SDK's
BASE_URL = "TINKER_BASE_URL"
API_KEY = "TINKER_API_KEY"
CREDENTIAL_CMD = "TINKER_CREDENTIAL_CMD"
"""A command printing a credential (a JWT or key), run when the server asks for one."""
PROJECT_ID = "TINKER_PROJECT_ID"
TAGS = "TINKER_TAGS"
"""Comma-separated session tags."""
TELEMETRY = "TINKER_TELEMETRY"
"""On unless ``0/false/no/off``."""
CONSOLE_URL = "TINKER_CONSOLE_URL"
LOG = "TINKER_LOG"
CLOUDFLARE_ACCESS_CLIENT_ID = "CLOUDFLARE_ACCESS_CLIENT_ID"
CLOUDFLARE_ACCESS_CLIENT_SECRET = "CLOUDFLARE_ACCESS_CLIENT_SECRET"

# tinkex's own
WIRE_DIALECT = "TINKEX_WIRE_DIALECT"
"""``0.16``, ``0.38`` or ``auto``."""
HTTP_BACKEND = "TINKEX_HTTP_BACKEND"
"""The base transport: ``httpx``, ``aiohttp`` or ``pyqwest``."""
CLI_TIMEOUT = "TINKEX_CLI_TIMEOUT"
TOKENIZER = "TINKEX_TOKENIZER"
"""Forces one tiktoken encoding for every model."""
TOKENIZER_FILE = "TINKEX_TOKENIZER_FILE"
TOKENIZER_FILES = "TINKEX_TOKENIZER_FILES"
"""JSON: model name or prefix -> tiktoken ranks file."""
