"""Client CPU and memory of the official ``tinker`` SDK on the same workloads as ``bench_client_cpu.py``
(``_workloads.py``, with the ``tinker`` adapter below).

Run with the official SDK's own venv (outside the repo), never the repo's:

    python3 -m venv /tmp/official-venv && /tmp/official-venv/bin/pip install tinker==0.16.1
    /tmp/official-venv/bin/python bench/official_sdk_cpu.py --workload train_sync [--base-url URL]

One workload per process, its numbers printed as one JSON line. Without ``--base-url`` it starts the local server
(``python -m tinkex.testing`` with the repo's venv python) in a subprocess. ``python bench/bench_client_cpu.py
--official-python /tmp/official-venv/bin/python`` runs every workload of both SDKs three times and prints a table.

The official SDK reads ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` / ``TINKER_TELEMETRY`` from the environment; this
script sets them. Prompts and datums are built from ints, so no tokenizer is loaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinker  # noqa: E402
from _local_server import API_KEY, worker_main  # noqa: E402  (the bench dir is put on the path just above)
from _workloads import Sdk, workloads  # noqa: E402
from tinker import types  # noqa: E402


def _service_client(base_url: str) -> tinker.ServiceClient:
    os.environ.update({"TINKER_BASE_URL": base_url, "TINKER_API_KEY": API_KEY, "TINKER_TELEMETRY": "0"})
    os.environ.pop("TINKER_SUBPROCESS_SAMPLING", None)  # sampling must run in this process to be measured
    return tinker.ServiceClient()


TINKER = Sdk(types=types, service_client=_service_client, info={"sdk": "tinker", "version": tinker.__version__})

if __name__ == "__main__":
    sys.exit(worker_main(workloads(TINKER)))
