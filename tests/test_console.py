"""core.console: converters' output goes to the log, ours to the terminal, and nothing breaks afterwards."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from core.console import Console


def test_captured_output_goes_to_the_log_and_ours_to_the_terminal(tmp_path: Path, capfd) -> None:
    log = tmp_path / "out" / "export.log"
    with Console(log) as console:
        with console.captured():
            print("python print")
            os.write(1, b"C++ stdout\n")
            os.write(2, b"C++ stderr\n")
        console.say("our line")
    text = log.read_text()
    assert "python print" in text and "C++ stdout" in text and "C++ stderr" in text
    seen = capfd.readouterr()
    assert "our line" in seen.err and "python print" not in seen.out + seen.err


def test_a_logging_handler_made_inside_the_block_keeps_working(tmp_path: Path, capfd) -> None:
    """A library that calls logging.basicConfig inside the block binds the log's stream; later records must
    neither fail ("--- Logging error ---") nor vanish."""
    logger = logging.getLogger("test_console_library")
    logger.propagate = False
    log = tmp_path / "export.log"
    try:
        with Console(log) as console:
            with console.captured():
                logger.addHandler(logging.StreamHandler())  # binds sys.stderr as it is now
                logger.warning("inside")
            with console.captured():
                logger.warning("second block")
            logger.warning("between blocks")
        logger.warning("after the console closed")
    finally:
        logger.handlers.clear()
    text = log.read_text()
    assert "inside" in text and "second block" in text and "between blocks" in text
    err = capfd.readouterr().err
    assert "Logging error" not in err and "after the console closed" in err


def test_verbose_redirects_nothing(tmp_path: Path, capfd) -> None:
    log = tmp_path / "export.log"
    with Console(log, verbose=True) as console, console.captured():
        print("converter says")
    assert "converter says" in capfd.readouterr().out and not log.exists()
