"""The main job end to end (short settings): the loss goes down, samples come out, the summary lists endpoints."""

from __future__ import annotations

import re

import pytest

from tinkex.cli import main


@pytest.mark.parametrize("extra", [[], ["--http2", "--fault-rate", "0.08"]], ids=["http1", "h2c-with-faults"])
def test_demo_trains_samples_and_prints_a_trace_summary(
    extra: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)
    assert main(["demo", "--steps", "8", "--no-progress", *extra]) == 0
    out = capsys.readouterr().out

    first, last = map(float, re.search(r"loss: ([\d.]+) -> ([\d.]+) over 8 steps", out).groups())
    assert last < first
    samples = re.findall(r"^sample: '.+' -> '.*' \((length|stop)\)$", out, re.MULTILINE)
    assert len(samples) == 6
    summary = out.split("trace summary")[1]
    for endpoint in ("create_session", "create_model", "forward_backward", "optim_step", "retrieve_future", "asample"):
        assert re.search(rf"^{endpoint}\s+\d+", summary, re.MULTILINE), endpoint
    assert "p99 ms" in summary
