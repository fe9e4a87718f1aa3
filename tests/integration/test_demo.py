"""The main job end to end: the demo teaches the tiny model a text, and its samples show it learned."""

from __future__ import annotations

import re

import pytest

from tinkex.cli import main
from tinkex.demo import TEXT


@pytest.mark.parametrize("extra", [[], ["--http2", "--fault-rate", "0.08"]], ids=["http1", "h2c-with-faults"])
def test_demo_learns_the_text_and_prints_a_trace_summary(
    extra: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)
    assert main(["demo", "--steps", "25", "--no-progress", *extra]) == 0
    out = capsys.readouterr().out

    step_losses = [float(loss) for loss in re.findall(r"^step \d+: loss ([\d.]+)$", out, re.MULTILINE)]
    assert len(step_losses) == 25 and step_losses[-1] < 0.1 * step_losses[0]
    assert all(later < earlier for earlier, later in zip(step_losses, step_losses[1:]))  # one text: every step helps
    first, last = map(float, re.search(r"loss: ([\d.]+) -> ([\d.]+) over 25 steps", out).groups())
    assert (first, last) == (step_losses[0], step_losses[-1])

    before = re.search(r"^before: 'the quick' -> '(.*)' \((length|stop)\)$", out, re.MULTILINE)
    after = re.search(r"^after:  'the quick' -> '(.*)' \((length|stop)\)$", out, re.MULTILINE)
    assert before and after
    assert "the quick" + after.group(1) == TEXT and after.group(2) == "stop"  # the continuation became the text
    assert "the quick" + before.group(1) != TEXT
    assert "learned the text: yes" in out
    samples = re.findall(r"^sample: 'the quick' -> '.*' \((length|stop)\)$", out, re.MULTILINE)
    assert len(samples) == 2

    summary = out.split("trace summary")[1]
    for endpoint in ("create_session", "create_model", "forward_backward", "optim_step", "retrieve_future", "asample"):
        assert re.search(rf"^{endpoint}\s+\d+", summary, re.MULTILINE), endpoint
    assert "p99 ms" in summary


def test_demo_teaches_another_text(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)
    text = "to be or not to be, that is the question"
    assert main(["demo", "--text", text, "--steps", "40", "--no-progress", "--samples", "1"]) == 0
    out = capsys.readouterr().out
    after = re.search(r"^after:  'to be' -> '(.*)' \(stop\)$", out, re.MULTILINE)
    assert after and "to be" + after.group(1) == text
