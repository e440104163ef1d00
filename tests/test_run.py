"""The run kernel every pipeline uses: opening an output to append to, resume or overwrite; the errors file."""

import json

import pytest

from chainprune.data.jsonl import RecordError
from chainprune.run import errors_path, open_output, write_errors


def test_open_output_refuses_clears_and_resumes_with_its_sidecars(tmp_path):
    out, side = tmp_path / "out.jsonl", tmp_path / "out.jsonl.side.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"')  # a crash left a partial last line
    side.write_text('{"id": "c"}\n')
    with pytest.raises(ValueError, match="already exists: pass --resume to continue it or --overwrite to replace it"):
        open_output(out, resume=False, overwrite=False)

    output = open_output(out, resume=True, overwrite=False, settings={"x": 1}, result_fields=("x",), sidecars=[side])
    assert output.done == {"a"} and out.read_text() == '{"id": "a"}\n' and len(output.warnings) == 1
    assert output.resume_sidecar(side) == {"c"} and side.exists()
    output.save_settings()
    assert json.loads((tmp_path / "out.jsonl.config.json").read_text()) == {"x": 1}
    with pytest.raises(ValueError, match=r"other settings \(x: 1 -> 2\)"):
        open_output(out, resume=True, overwrite=False, settings={"x": 2}, result_fields=("x",))

    fresh = open_output(out, resume=False, overwrite=True, sidecars=[side])
    assert not out.exists() and not side.exists() and fresh.done == set() and fresh.resume_sidecar(side) == set()


def test_errors_file_only_when_there_are_errors(tmp_path):
    out = tmp_path / "out.jsonl"
    write_errors(out, [RecordError(3, "x", "bad")])
    assert json.loads(errors_path(out).read_text()) == {"line": 3, "id": "x", "error": "bad"}
    write_errors(out, [])
    assert not errors_path(out).exists()


def test_progress_prints_one_line_per_example_where_no_terminal_draws_bars(monkeypatch):
    """A background run's log gets a line per finished example (bars only draw on a terminal)."""
    import io

    from rich.console import Console

    from chainprune.data.jsonl import RecordError
    from chainprune.report import progress
    from chainprune.types import Chain, Trace

    log = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=log, force_terminal=False, width=200))
    reporter = progress.ProgressReporter()
    trace = Trace("c-1", "m", "joint", [1], [5, 6, 7], [2], [2, 0, 1], [-3.0, -2.0, -1.0, 0.0], [], {}, token_forwards=1234)
    reporter.start(3)
    for chain, result, error in [(Chain("c-1", "q", "r", "a"), trace, None),
                                 (Chain("c-2", "q", "r", "a"), None, RecordError(7, "c-2", "no reasoning")),
                                 (Chain("c-3", "q", "r", "a"), None, None)]:
        reporter.example(chain, 3)
        reporter.finished(chain, result, error)
    reporter.stop()
    lines = log.getvalue().splitlines()
    assert any(line.startswith("1/3 c-1: 3 deletions, 1,234 token-forwards, ") for line in lines)
    assert any("error" in line and "no reasoning" in line for line in lines)
    assert not any(line.startswith("2/3") for line in lines)  # a failed example is reported as an error only
    assert any(line.startswith("3/3 c-3, ") for line in lines)


def test_progress_says_how_far_a_long_example_is_where_no_terminal_draws_bars(monkeypatch):
    """In a background run's log, an example running longer than the heartbeat gets a line every heartbeat."""
    import io

    from rich.console import Console

    from chainprune.report import progress
    from chainprune.types import Chain

    log = io.StringIO()
    clock = iter([0.0, 10.0, 400.0, 500.0, 750.0])  # example(); then one reading per step()
    monkeypatch.setattr(progress, "console", Console(file=log, force_terminal=False, width=200))
    reporter = progress.ProgressReporter()
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    reporter.start(1)
    reporter.example(Chain("long[1]", "q", "r", "a"), 4)
    for done in (1, 2, 3, 4):  # at 10 s: too soon; 400 s: said; 500 s: too soon after it; 750 s: said
        reporter.step(done, 8)
    reporter.progress.stop()
    lines = [line for line in log.getvalue().splitlines() if line.startswith("  long[1]: ")]
    assert lines == ["  long[1]: 2/8 deletions, 400 s", "  long[1]: 4/8 deletions, 750 s"]


def test_progress_lines_of_a_ray_run_and_errors_printed_as_written(monkeypatch):
    """The distributed prune's log gets the same line per finished example, timed from the run's start; an
    error's text is printed as written (brackets are not taken for markup)."""
    import io

    from rich.console import Console

    from chainprune.data.jsonl import RecordError
    from chainprune.report import cluster_progress, progress
    from chainprune.types import Chain, Trace

    log = io.StringIO()
    quiet = Console(file=log, force_terminal=False, width=200)
    monkeypatch.setattr(cluster_progress, "console", quiet)
    monkeypatch.setattr(progress, "console", quiet)
    trace = Trace("c-1", "m", "joint", [1], [5, 6], [2], [1, 0], [-2.0, -1.0, 0.0], [], {}, token_forwards=56)
    cluster = cluster_progress.ClusterProgress()
    cluster.start(2, workers=1)
    cluster.finished(Chain("c-1", "q", "r", "a"), trace, None)
    cluster.stop()
    single = progress.ProgressReporter()
    single.start(1)
    single.example(Chain("c-2", "q", "r", "a"), 1)
    single.finished(Chain("c-2", "q", "r", "a"), None, RecordError(3, "c-2", "field [reasoning] is missing"))
    single.stop()
    lines = log.getvalue().splitlines()
    assert any(line.startswith("1/2 c-1: 2 deletions, 56 token-forwards, ") and line.endswith(" s into the run") for line in lines)
    assert any("field [reasoning] is missing" in line for line in lines)
