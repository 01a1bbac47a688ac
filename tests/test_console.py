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


def test_a_logging_handler_made_inside_a_block_follows_the_running_block(tmp_path: Path, capfd) -> None:
    """A library that calls logging.basicConfig inside a block binds sys.stderr as it is then; its later
    records must neither fail ("--- Logging error ---") nor vanish, and go to the log of the block running
    (a study runs many, each with its own train.log)."""
    logger = logging.getLogger("test_console_library")
    logger.propagate = False
    first, second = tmp_path / "a" / "train.log", tmp_path / "b" / "train.log"
    try:
        with Console(first) as console:
            with console.captured():
                logger.addHandler(logging.StreamHandler())  # binds sys.stderr as it is now
                logger.warning("inside the first")
            logger.warning("between blocks")
            with console.captured(second):
                logger.warning("inside the second")
                with console.captured(first):
                    logger.warning("nested")
                logger.warning("back in the second")
        logger.warning("after the console closed")
    finally:
        logger.handlers.clear()
    assert first.read_text().split() == ["inside", "the", "first", "nested"]
    assert second.read_text().split() == ["inside", "the", "second", "back", "in", "the", "second"]
    err = capfd.readouterr().err
    assert "Logging error" not in err and "between blocks" in err and "after the console closed" in err


def test_verbose_redirects_nothing(tmp_path: Path, capfd) -> None:
    log = tmp_path / "export.log"
    with Console(log, verbose=True) as console, console.captured():
        print("converter says")
    assert "converter says" in capfd.readouterr().out and not log.exists()
