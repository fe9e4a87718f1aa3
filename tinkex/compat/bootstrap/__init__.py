"""This directory goes on ``PYTHONPATH`` under ``tinkex exec``; its ``sitecustomize`` installs tinkex.compat."""
