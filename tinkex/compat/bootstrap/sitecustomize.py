"""Installs tinkex.compat at interpreter start-up for programs run by ``tinkex exec``.

``tinkex exec`` puts this file's directory on ``PYTHONPATH``; Python imports ``sitecustomize`` after the site
directories are set up, before the program's first line. The ``sitecustomize`` this one shadows (if the environment
has one) still runs afterwards.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _refuse(message: str) -> None:
    # A SystemExit here would come with a "Fatal Python error" traceback: print the one line that matters instead.
    sys.stderr.write(f"error: tinkex exec: {message}\n")
    sys.stderr.flush()
    os._exit(2)


try:
    import tinkex.compat
except ImportError as exc:  # a Python without tinkex: say so rather than let `import tinker` fail obscurely later
    _refuse(
        f"{sys.executable} cannot import tinkex ({exc}); activate the environment that has tinkex, "
        "or name its python (tinkex exec -- /path/to/venv/bin/python ...)"
    )
try:
    tinkex.compat.install()
except tinkex.compat.CompatError as exc:
    _refuse(str(exc))

# The shadowed sitecustomize, if any: the first one on sys.path after this directory.
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["sitecustomize"] = _module
    _spec.loader.exec_module(_module)
