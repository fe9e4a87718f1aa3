import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pristine_transport.logs import LOG_FORMAT, SecretMaskingFilter, configure_logging, get_logger
from pristine_transport.manifest import LoggingSpec
from pristine_transport.redaction import Redactor

SPEC = LoggingSpec(logger="demo_sdk", env="DEMO_LOG")
SECRET = "tml-0123456789abcdef0123456789"
TOUCHED = ("demo_sdk", "pristine_transport", "httpx", "httpcore")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in TOUCHED}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler in logging.getLogger().handlers:
        for installed in [f for f in handler.filters if isinstance(f, SecretMaskingFilter)]:
            handler.removeFilter(installed)


def test_loggers_form_one_hierarchy() -> None:
    assert get_logger().name == "pristine_transport"
    assert get_logger("retry").parent is get_logger()


@pytest.mark.parametrize(("value", "level"), [("info", logging.INFO), (" INFO ", logging.INFO), ("debug", logging.DEBUG)])
def test_the_env_toggle_sets_the_sdk_and_transport_loggers(value: str, level: int) -> None:
    assert configure_logging(SPEC, env={"DEMO_LOG": value}) == level
    assert logging.getLogger("demo_sdk").level == level
    assert logging.getLogger("pristine_transport").level == level
    library_level = logging.DEBUG if level == logging.DEBUG else logging.WARNING
    assert logging.getLogger("httpx").level == logging.getLogger("httpcore").level == library_level


@pytest.mark.parametrize("env", [{}, {"DEMO_LOG": ""}, {"DEMO_LOG": "verbose"}])
def test_without_a_valid_toggle_only_the_http_libraries_are_quieted(env: dict[str, str]) -> None:
    logging.getLogger("demo_sdk").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.INFO)
    assert configure_logging(SPEC, env=env) is None
    assert logging.getLogger("demo_sdk").level == logging.ERROR
    assert logging.getLogger("httpx").level == logging.WARNING


def test_no_spec_leaves_levels_alone() -> None:
    logging.getLogger("httpx").setLevel(logging.INFO)
    assert configure_logging(None, env={"DEMO_LOG": "debug"}) is None
    assert logging.getLogger("httpx").level == logging.INFO


def test_records_are_masked_in_message_args_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    redactor = Redactor(secret_values=[SECRET])
    configure_logging(SPEC, env={"DEMO_LOG": "debug"}, redactor=redactor)
    log = logging.getLogger("demo_sdk.client")
    log.info("sending with key %s", SECRET)
    log.debug(f"inline {SECRET}")
    try:
        raise RuntimeError(f"server echoed {SECRET}")
    except RuntimeError:
        log.exception("failed")
    # Only this test's logger is counted: a client another test left behind may still log its retries here.
    ours = [r for r in caplog.records if r.name.startswith("demo_sdk")]
    assert len(ours) == 3
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in ours)
    assert ours[0].getMessage() == f"sending with key {redactor.mask(SECRET)}"
    assert "RuntimeError: server echoed tml-" in caplog.text


def test_configuring_twice_installs_one_filter_serving_both_redactors(caplog: pytest.LogCaptureFixture) -> None:
    other_secret = "cf-secret-ffffffffffffffff"
    first, second = Redactor(secret_values=[SECRET]), Redactor(secret_values=[other_secret])
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    for redactor in (first, first, second):
        configure_logging(SPEC, env={"DEMO_LOG": "info"}, redactor=redactor)
    assert root.handlers == handlers_before
    assert [type(f) for f in caplog.handler.filters].count(SecretMaskingFilter) == 1
    logging.getLogger("demo_sdk").info("%s and %s", SECRET, other_secret)
    assert SECRET not in caplog.text and other_secret not in caplog.text


def test_the_toggle_turns_on_basic_config_with_the_sdk_format(tmp_path: Path) -> None:
    script = (
        "import logging\n"
        "from pristine_transport.logs import configure_logging\n"
        "from pristine_transport.manifest import LoggingSpec\n"
        "from pristine_transport.redaction import Redactor\n"
        f"redactor = Redactor(secret_values=[{SECRET!r}])\n"  # a client holds its redactor; masking lives as long
        "configure_logging(LoggingSpec(logger='demo_sdk', env='DEMO_LOG'), redactor=redactor)\n"
        f"logging.getLogger('demo_sdk.part').info('hello %s', {SECRET!r})\n"
        "logging.getLogger('demo_sdk.part').debug('not shown at info')\n"
    )
    env = {**os.environ, "DEMO_LOG": "info"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30, cwd=Path(__file__).parents[2]
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("[") and " - demo_sdk.part:7 - INFO] hello tml-" in lines[0]
    assert SECRET not in result.stderr
    assert LOG_FORMAT.startswith("[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s]")


def test_a_handler_the_application_adds_later_still_sees_masked_records(restore_logging: None) -> None:
    secret = "tml-added-later-secret-0123456789"
    sdk_logger = logging.getLogger("svcsdk.flows")  # an SDK logger that exists before configuration
    redactor = Redactor(secret_values=[secret])  # held, as a client holds its own
    configure_logging(LoggingSpec(logger="svcsdk"), env={}, redactor=redactor)

    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    capture = Capture(level=logging.DEBUG)
    for logger in (sdk_logger, get_logger("retry")):
        logger.addHandler(capture)
        logger.setLevel(logging.INFO)
    try:
        sdk_logger.info("failed with key %s", secret)
        get_logger("retry").info("url had %s in it", secret)
    finally:
        for logger in (sdk_logger, get_logger("retry")):
            logger.removeHandler(capture)
    assert len(seen) == 2 and all(secret not in line for line in seen)


def test_a_dropped_redactor_is_released_and_a_held_one_keeps_masking(restore_logging: None) -> None:
    import gc

    from pristine_transport.logs import masking_filter

    gc.collect()
    before = masking_filter().redactor_count
    held = Redactor(secret_values=["tml-held-secret-0123456789abcdef"])
    for index in range(200):
        configure_logging(None, env={}, redactor=Redactor(secret_values=[f"tml-dropped-{index:04d}-0123456789"]))
    configure_logging(None, env={}, redactor=held)
    gc.collect()
    assert masking_filter().redactor_count == before + 1
    held_secret = ("tml-held-secret-0123456789abcdef",)
    record = logging.LogRecord("pristine_transport.x", logging.INFO, __file__, 1, "%s", held_secret, None)
    masking_filter().filter(record)
    assert "tml-held-secret-0123456789abcdef" not in record.getMessage()


def test_http_library_records_are_masked_when_the_application_turns_them_on_later(restore_logging: None) -> None:
    secret = "tml-library-secret-0123456789abcdef"
    redactor = Redactor(secret_values=[secret])
    configure_logging(None, env={}, redactor=redactor)
    # Afterwards, as an application would: a new handler, DEBUG, on loggers that may not exist yet.
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    capture = Capture(level=logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("hpack.hpack", "h2.connection", "aiohttp.client", "httpcore.http2")]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    try:
        for logger in loggers:
            logger.debug("Encoding %s", (b"x-api-key", secret.encode()))
    finally:
        for logger in loggers:
            logger.removeHandler(capture)
            logger.setLevel(logging.NOTSET)
    assert len(seen) == 4 and all(secret not in line and "tml-…cdef" in line for line in seen)
