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
