"""Run code written for the official ``tinker`` SDK on tinkex, unmodified.

``tinkex.compat.install()`` serves ``import tinker`` and ``import tinker.<module>`` from tinkex through an import
hook (nothing is installed on disk). ``tinkex exec -- python train.py ...`` runs a program with the hook installed
from its first line, in it and in the Python subprocesses it starts. While the hook is installed, ``tinker`` is
tinkex even if the official package is installed too.
"""

from .hook import CompatError, TinkerModule, install, is_installed, uninstall
from .modules import SERVED_TINKER_VERSION, served_paths

__all__ = [
    "SERVED_TINKER_VERSION",
    "CompatError",
    "TinkerModule",
    "install",
    "is_installed",
    "served_paths",
    "uninstall",
]
