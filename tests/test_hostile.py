"""The hostile corpus (``tests/data/hostile/``, made by its ``make.py``): each file through
``validate --offline`` and through the page's upload. Each is refused with a clear message
(exit 2; a message on the page), the command's peak memory (its ``ru_maxrss``, which counts the
reader's child process too) stays under :data:`PEAK_MB`, and the page still answers after."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .test_serve_http import upload

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"
_spec = importlib.util.spec_from_file_location("hostile_make", HOSTILE / "make.py")
assert _spec is not None and _spec.loader is not None
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)

#: The most memory a refusal may take (the command, with pandas loaded, and the reader's child).
PEAK_MB = 400
#: What each file's refusal says.
SAYS = {
    "far_cell.xlsx": "17,179,869,184 cells, over the limit",
    "far_cell_undeclared.xlsx": "MB of memory, the limit",
    "laughs_in_sheet.xlsx": "declares XML entities",
    "laughs_in_strings.xlsx": "declares XML entities",
    "external_entity.xlsx": "declares XML entities",
    "strings_count_bomb.xlsx": "MB of memory, the limit",
    "path_traversal.xlsx": "outside the workbook",
    "truncated.xlsx": "damaged, truncated",
    "corrupt.xlsx": "is damaged",
    "nul_bytes.csv": "binary data, not text",
    "bad_utf8.csv": "is not valid utf-8",
    "rows_bomb.xlsx": "(a zip bomb)",
    "cell_bomb.xlsx": "(a zip bomb)",
    "long_line.csv": "without a line break, over the limit",
    "wide.csv": "more than the 16,384 columns",
}


def test_every_file_of_the_corpus_says_what_it_should():
    assert set(SAYS) == set(make.FILES)
    kept = {p.name for p in HOSTILE.iterdir() if p.name != "make.py"}
    assert kept == {name for name, (_, large) in make.FILES.items() if not large}


@pytest.fixture(scope="session")
def large(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def validate_offline(path: Path) -> tuple[int, str, float, float]:
    """``task-import validate PATH --offline``: its exit code, its stderr, its seconds and its
    peak memory in MB (its own or its child's, whichever was larger)."""
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "importer.cli", "validate", str(path), "--offline"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    err = process.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, err, time.monotonic() - began, usage.ru_maxrss / 1024


@pytest.mark.parametrize("name", list(make.FILES))
def test_a_hostile_file_is_refused_on_the_command_line_in_bounded_memory(name, large):
    path = make.make(name, large)
    code, err, _, peak = validate_offline(path)
    assert code == 2, err
    assert SAYS[name] in err, err
    assert "Traceback" not in err and "unexpected error" not in err
    assert err.count("\n") <= 3, err  # one message, not a dump
    assert peak < PEAK_MB, (name, peak)


def test_each_hostile_file_is_refused_by_the_page_which_goes_on_answering(served, large):
    address = served("--max-upload-mb", "20")
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        for name in make.FILES:
            path = make.make(name, large)
            if name == "long_line.csv":  # 1 GiB is over any upload limit: a 17 MiB line
                path = large / "long_line_17mb.csv"
                path.write_bytes(b"name,endDatetime\n" + b"x" * (17 << 20))
            answer = upload(client, address, path.read_bytes(), name)
            assert answer.status_code == 400, (name, answer.status_code)
            shown = answer.text.replace("&#39;", "'").replace("&#34;", '"')
            assert SAYS[name] in shown, (name, shown[-2000:])
            assert str(large) not in shown and str(HOSTILE) not in shown
            assert client.get(address).status_code == 200  # and the page goes on
