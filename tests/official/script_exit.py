"""How every script of this folder ends: its result as the last line of output, then an exit without interpreter
teardown.

Official 0.38 keeps a daemon thread running an event loop over its Rust HTTP client; when the interpreter is torn down
under it, the process now and then dies by SIGABRT with nothing on stderr (seen in CI after a script had printed its
result). That is the SDK's shutdown, not the wire behaviour these scripts are run to observe, so they skip it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn


def report(result: dict[str, Any]) -> NoReturn:
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)
