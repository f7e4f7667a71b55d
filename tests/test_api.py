"""The public Python API (``import importer``) is a contract: these tests say what it promises,
each over the sandbox on loopback, asserting on what the sandbox holds."""

from __future__ import annotations

import asyncio
import inspect as inspection
from pathlib import Path

import pandas as pd
import pytest

import importer

DUE = "2026-12-01 10:00"


def sheet(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("name,endDatetime\n" + "".join(f"{n},{d}\n" for n, d in rows), "utf-8")
    return path


def names(server) -> list[str]:
    return sorted(t["name"] for t in server.tasks())


def test_the_public_surface_is_curated_and_documented():
    assert set(importer.__all__) >= {
        "run", "run_async", "validate", "validate_async", "undo", "undo_async", "inspect",
        "RunOptions", "RunSummary", "ProgressEvent", "RowResult", "Table", "Error", "RunFailed",
        "Credentials", "IvvyClient",
    }  # fmt: skip
    for name in importer.__all__:
        assert getattr(importer, name).__doc__, name
    assert "importer.run(" in importer.__doc__ and "raise_for_failures" in importer.__doc__
    assert Path(importer.__file__).name == "__init__.py"  # a regular package, not a namespace
    # Every exception the library raises on purpose shares one base.
    for error in (importer.ImporterError, importer.SourceError, importer.UsageError,
                  importer.IvvyError, importer.ApiError, importer.RunFailed):  # fmt: skip
        assert issubclass(error, importer.Error)


def test_run_imports_a_file_and_a_second_run_creates_nothing_again(sandbox, tmp_path):
    source = sheet(tmp_path / "t.csv", [("One", DUE), ("Two", DUE)])
    results = tmp_path / "out.results.csv"
    summary = importer.run(
        source, credentials=sandbox.credentials, options=importer.RunOptions(results=results)
    )
    assert summary.counts == {"created": 2} and not summary.needs_attention
    assert summary.raise_for_failures() is summary
    assert names(sandbox) == ["One", "Two"] and results.exists()
    with pytest.raises(importer.UsageError, match="already imported"):
        importer.run(source, credentials=sandbox.credentials)
    again = importer.run(
        source, credentials=sandbox.credentials, options=importer.RunOptions(new_run=True)
    )
    assert again.counts == {"unchanged": 2} and names(sandbox) == ["One", "Two"]


def test_results_are_written_only_where_asked_and_rows_streams_them(sandbox, tmp_path):
    source = sheet(tmp_path / "t.csv", [("One", DUE), ("Bad", "31/02/2026"), ("Three", DUE)])
    summary = importer.run(source, credentials=sandbox.credentials)
    assert summary.results is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "xdg-data"]  # nothing beside
    rows = list(summary.rows())
    assert [r.number for r in rows] == [2, 3, 4]
    assert [r.cells["name"] for r in rows] == ["One", "Bad", "Three"]
    assert [r.outcome.result for r in rows] == ["created", "invalid", "created"]
    assert rows[0].outcome.task_id in {t["id"] for t in sandbox.tasks()}
    assert rows[1].outcome.field == "endDatetime" and rows[1].outcome.error_code
    assert summary.needs_attention
    with pytest.raises(importer.RunFailed, match="1 invalid") as failed:
        summary.raise_for_failures()
    assert failed.value.summary is summary
    # Within a reject limit, the run counts as done: a scheduler's task does not fail.
    limited = importer.validate(source, offline=True, options=importer.RunOptions(max_rejects=1))
    assert not limited.needs_attention and limited.raise_for_failures() is limited


def test_a_table_or_a_dataframe_is_a_source_and_the_same_one_is_the_same_source(sandbox):
    table = importer.Table(["name", "endDatetime"], [("One", DUE), ("Two", DUE)], name="crm")
    first = importer.run(table, credentials=sandbox.credentials)
    assert first.counts == {"created": 2}
    frame = pd.DataFrame({"name": ["Three", None], "endDatetime": [pd.Timestamp(DUE), None]})
    second = importer.run(frame, credentials=sandbox.credentials)
    assert second.counts == {"created": 1}  # the blank row is skipped
    assert names(sandbox) == ["One", "Three", "Two"]
    # The same table again: the journal knows its rows; nothing is created twice.
    with pytest.raises(importer.UsageError, match="already imported"):
        importer.run(table, credentials=sandbox.credentials)
    again = importer.run(table, credentials=sandbox.credentials,
                         options=importer.RunOptions(new_run=True))  # fmt: skip
    assert again.counts == {"unchanged": 2} and len(sandbox.tasks()) == 3


def test_on_event_hears_each_row_with_its_number_and_the_counts(sandbox, tmp_path):
    source = sheet(tmp_path / "t.csv", [(f"Task {n}", DUE) for n in range(5)] + [("Bad", "x")])
    events: list[importer.ProgressEvent] = []
    importer.run(source, credentials=sandbox.credentials, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("row") == 6
    assert events[0].total == 6
    rows = [e for e in events if e.kind == "row"]
    assert sorted(e.number for e in rows) == [2, 3, 4, 5, 6, 7]
    assert [e.done for e in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1].failures == 1 and events[-1].failures == 1
    bad = next(e for e in rows if e.number == 7)
    assert bad.outcome is not None and bad.outcome.result == "invalid"


def test_a_client_given_is_used_and_run_async_awaits(sandbox, tmp_path):
    source = sheet(tmp_path / "t.csv", [("One", DUE)])

    async def go() -> importer.RunSummary:
        async with importer.IvvyClient(sandbox.credentials) as client:
            with pytest.raises(importer.UsageError, match="run_async"):
                importer.run(source, client=client)  # inside an event loop
            return await importer.run_async(source, client=client)

    assert asyncio.run(go()).counts == {"created": 1}
    assert names(sandbox) == ["One"]


def test_validate_sends_nothing_and_plans_and_inspect_says_how_the_file_is_read(sandbox, tmp_path):
    source = sheet(tmp_path / "t.csv", [("One", DUE), ("Two", "31/02/2026")])
    checked = importer.validate(source, credentials=sandbox.credentials)
    assert checked.counts == {"valid": 1, "invalid": 1}
    assert checked.plan == {"create": 1, "invalid": 1}
    offline = importer.validate(source, offline=True)
    assert offline.counts == checked.counts
    assert sandbox.tasks() == []
    assert not [r for r in sandbox.get("/_sandbox/requests") if r["action"] == "addOrUpdateTask"]
    seen = importer.inspect(source)
    assert seen.headers == ["name", "endDatetime"] and seen.rows == 2
    assert seen.columns == {"name": "name", "endDatetime": "endDatetime"}
    assert seen.how["name"] and seen.plan == {"create": 1, "invalid": 1}


def test_a_mapping_value_maps_the_columns(sandbox, tmp_path):
    source = tmp_path / "m.csv"
    source.write_text("Task,Finish\nOne,2026-12-01 10:00\n", encoding="utf-8")
    mapping_path = tmp_path / "m.toml"
    mapping_path.write_text('[columns]\nTask = "name"\nFinish = "endDatetime"\n', "utf-8")
    value = importer.load_mapping_file(mapping_path)
    assert isinstance(value, importer.MappingFile)
    summary = importer.run(source, credentials=sandbox.credentials, mapping=value)
    assert summary.counts == {"created": 1} and names(sandbox) == ["One"]


def test_undo_takes_a_run_back(sandbox, tmp_path):
    source = sheet(tmp_path / "t.csv", [("One", DUE), ("Two", DUE)])
    made = importer.run(source, credentials=sandbox.credentials)
    plan = importer.undo(made.run_id, credentials=sandbox.credentials, plan_only=True)
    assert sum(plan.plan.values()) == 2
    assert {t["status"] for t in sandbox.tasks()} == {0}  # nothing sent for the plan
    undone = importer.undo(made.run_id, credentials=sandbox.credentials)
    assert not undone.needs_attention
    assert {t["status"] for t in sandbox.tasks()} == {3}  # cancelled
    assert len(list(undone.rows())) == 2


def test_errors_carry_where_and_never_a_traceback_for_bad_input(tmp_path):
    with pytest.raises(importer.SourceError) as missing:
        importer.validate(tmp_path / "nope.csv", offline=True)
    assert "no such file" in str(missing.value) and isinstance(missing.value, importer.Error)
    with pytest.raises(importer.UsageError, match="DataFrame"):
        importer.validate(object(), offline=True)


def test_the_signatures_are_keyword_only_after_the_source():
    for call in (importer.run, importer.validate, importer.inspect):
        parameters = list(inspection.signature(call).parameters.values())
        assert parameters[0].name == "source"
        assert all(p.kind is p.KEYWORD_ONLY for p in parameters[1:])


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(marker: str) -> str:
    """The README's Python block that begins ``# example: MARKER``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"```python\n# example: {marker}\n") + len("```python\n")
    return text[start : text.index("```", start)]


def fake_schedulers(monkeypatch, ran: list) -> None:
    """Stand-ins for airflow, pendulum and dagster: their decorators run what they decorate."""
    import sys
    import types

    def module(name: str, **members) -> None:
        made = types.ModuleType(name)
        made.__dict__.update(members)
        monkeypatch.setitem(sys.modules, name, made)

    def dag(**_settings):
        return lambda build: build

    def task(function):
        def run_now(*args, **kwargs):
            ran.append(function(*args, **kwargs))

        return run_now

    def asset(function):
        ran.append(function)
        return function

    class MetadataValue:
        @staticmethod
        def json(value):
            return ("json", value)

    class MaterializeResult:
        def __init__(self, metadata):
            self.metadata = metadata

    module("airflow")
    module("airflow.decorators", dag=dag, task=task)
    module("pendulum", datetime=lambda *a, **k: None)
    module("dagster", asset=asset, MetadataValue=MetadataValue,
           MaterializeResult=MaterializeResult)  # fmt: skip


def test_the_readme_scheduler_examples_run(sandbox, tmp_path, monkeypatch):
    from .test_cli_run import env_for

    for name, value in env_for(sandbox).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    export = tmp_path / "exports" / "tasks.csv"
    export.write_text(f"Task ID,name,endDatetime\nA-1,One,{DUE}\nA-2,Two,{DUE}\n", "utf-8")
    ran: list = []
    fake_schedulers(monkeypatch, ran)

    exec(compile(readme_example("airflow"), "README airflow", "exec"), {})
    assert ran[0]["counts"] == {"created": 2}
    assert (tmp_path / "exports" / "tasks.results.csv").exists()

    exec(compile(readme_example("dagster"), "README dagster", "exec"), {})
    materialized = ran[1]()  # Dagster would materialise the asset: here, a second night
    assert materialized.metadata["counts"] == ("json", {"unchanged": 2})
    assert names(sandbox) == ["One", "Two"]

    # A night with a bad row fails the task, as a scheduler should see it.
    export.write_text(f"Task ID,name,endDatetime\nA-1,One,{DUE}\nA-3,Bad,nope\n", "utf-8")
    with pytest.raises(importer.RunFailed, match="1 invalid"):
        ran[1]()


def test_run_options_are_small_frozen_values_each_field_held_once():
    import dataclasses

    options = importer.RunOptions(key="Task ID", concurrency=16, timezone="Australia/Sydney",
                                  sheet="Tasks", state="j.sqlite", results="r.csv")  # fmt: skip
    assert options.send.concurrency == 16 and options.dates.timezone == "Australia/Sydney"
    assert options.source.sheet == "Tasks" and options.journal.state == Path("j.sqlite")
    assert options.results == Path("r.csv") and options.key == "Task ID"
    assert not hasattr(options, "concurrency")  # held once, in its group
    grouped = importer.RunOptions(send=importer.SendOptions(concurrency=16), key="Task ID")
    assert grouped.send == options.send
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError, match="no option 'concurency'"):
        importer.RunOptions(concurency=4)
    changed = options.replace(rate=5.0, new_run=True)
    assert changed.send.rate == 5.0 and changed.send.concurrency == 16
    assert changed.journal.new_run and not options.journal.new_run
    flat = options.flat()
    assert flat["concurrency"] == 16 and flat["key"] == "Task ID" and "send" not in flat
