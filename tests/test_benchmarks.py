"""Every speed benchmark runs once, on the tests' tiny model and two tiny chains, so none rots; and the run each
result records (benchmarks/common.py).

A benchmark's numbers are not checked here (they are timings of a random model): only that its `main(argv)` runs
to the end and writes its result where `--out` says, with the keys a reader of the result looks for and the run
it came from ("run": date, machine, torch, device, commit, command).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks run as modules from the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

SAMPLE = str(ROOT / "data" / "gsm8k" / "train-sample.jsonl")
CHAINS = [
    {"id": "tiny-1", "question": "Natalia sold 48 clips in April.", "reasoning": "She sold 48/2 = 24 clips in May.",
     "answer": "The answer is 72."},
    {"id": "tiny-2", "question": "Weng earns $12 an hour.", "reasoning": "Weng earns 12/60 = $0.2 per minute. So 10.",
     "answer": "The answer is 10."},
]


@pytest.fixture(scope="module")
def chains(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("chains") / "chains.jsonl"
    path.write_text("".join(json.dumps(chain) + "\n" for chain in CHAINS))
    return str(path)


@pytest.fixture(scope="module")
def exact_traces(tmp_path_factory, tiny_dir, chains) -> str:
    """Exact greedy traces of the tiny chains (what naive_rate reads)."""
    from chainprune.pipelines.prune import PruneConfig, run_prune

    out = tmp_path_factory.mktemp("traces") / "packed.jsonl"
    run_prune(Path(chains), out, PruneConfig(model=tiny_dir, keep=[0.5], dtype="float32", device="cpu"), overwrite=True)
    return str(out)


# Per speed benchmark (a module of benchmarks/speed/): its arguments on the tiny model (writing into `tmp`), and
# the keys its result must hold besides "run".
SMOKE = {
    "bench_engines": (lambda m, c, t, tmp: ["--model", m, "--chains", c, "--steps", "1"],
                      ["benchmark", "examples", "summary"]),
    "bench_modes": (lambda m, c, t, tmp: ["--model", m, "--gsm8k", SAMPLE, "--examples", "1", "--max-reasoning", "12",
                                          "--reference", "packed", "--modes", "packed,screen=2,lookahead=3,margin=5",
                                          "--naive-sample", "4", "--work-dir", str(tmp / "work")],
                    ["benchmark", "examples", "modes"]),
    "bench_units": (lambda m, c, t, tmp: [c, "--model", m, "--reader", m, "--units", "token", "word", "--keep", "0.5",
                                          "--work-dir", str(tmp / "work")],
                    ["benchmark", "units"]),
    "bench_attention": (lambda m, c, t, tmp: [c, "--model", m, "--repeats", "1", "--lookahead", "2"],
                        ["benchmark", "rows", "largest_difference_nats"]),
    "bench_next_forward": (lambda m, c, t, tmp: [c, "--model", m, "--examples", "1", "--repeats", "1", "--screen", "2",
                                                 "--lookahead", "2"],
                           ["benchmark", "rows", "same_deletions"]),
    "bench_resume": (lambda m, c, t, tmp: [c, "--model", m, "--examples", "1"], ["benchmark", "rows", "agreement"]),
    "bench_generation": (lambda m, c, t, tmp: ["--model", m, "--gsm8k", SAMPLE, "--questions", "2", "--samples", "2",
                                               "--max-new-tokens", "4"],
                         ["benchmark", "rows", "prompt_width"]),
    "bench_gpu": (lambda m, c, t, tmp: ["--shapes", "tiny", "--device", "cpu", "--dtype", "float32", "--prompt", "6",
                                        "--reasoning", "8", "--answer", "3", "--modes", "packed", "naive",
                                        "screen=2,lookahead=2", "--passes", "2"],
                  ["benchmark", "rows", "matmul_tflops"]),
    "bench_ray": (lambda m, c, t, tmp: ["--model", m, "--gsm8k", SAMPLE, "--chains", "3", "--workers", "1",
                                        "--check", "2", "--work-dir", str(tmp / "work")],
                  ["benchmark", "done", "snapshots"]),
    "naive_rate": (lambda m, c, t, tmp: [t, "--model", m, "--every", "2"], ["benchmark", "naive_rate", "chains"]),
}


def test_every_speed_benchmark_has_a_smoke_test():
    scripts = {p.stem for p in (ROOT / "benchmarks" / "speed").glob("*.py") if p.stem != "__init__"}
    assert scripts == set(SMOKE)


@pytest.fixture
def torch_threads():
    """Restores torch's thread count, which a benchmark may set (bench_generation: OMP_NUM_THREADS or 1)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_benchmark(name: str, argv: list[str], out: Path) -> dict:
    importlib.import_module(f"benchmarks.speed.{name}").main([*argv, "--out", str(out)])
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_speed_benchmark_runs(name, tiny_dir, chains, request, tmp_path, torch_threads):
    if name == "bench_ray":
        pytest.importorskip("ray")
    traces = request.getfixturevalue("exact_traces") if name == "naive_rate" else None
    make_argv, keys = SMOKE[name]
    out = tmp_path / f"{name}.json"
    result = run_benchmark(name, make_argv(tiny_dir, chains, traces, tmp_path), out)
    assert set(keys) <= set(result), f"{name}: {sorted(result)}"
    run = result["run"]
    assert {"date", "machine", "torch", "transformers", "device", "commit", "command"} <= set(run)
    assert run["command"].startswith(f"python -m benchmarks.speed.{name} ") and str(out) in run["command"]
    assert {"platform", "cpu", "cores", "torch_threads"} <= set(run["machine"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_gpu_on_cuda(tmp_path):
    argv = SMOKE["bench_gpu"][0](None, None, None, tmp_path)
    argv[argv.index("--device") + 1] = "cuda"
    result = run_benchmark("bench_gpu", argv, tmp_path / "gpu.json")
    assert result["run"]["device"] == torch.cuda.get_device_name()
    assert all(row["peak_gpu_gb"] is not None for row in result["rows"])


def test_write_result_records_the_run(tmp_path):
    path = common.write_result(tmp_path / "a" / "b.json", {"x": 1}, command="python -m benchmarks.speed.y --z")
    result = json.loads(path.read_text())
    assert result["x"] == 1 and result["run"]["command"] == "python -m benchmarks.speed.y --z"
    commit = result["run"]["commit"]
    assert commit == "unknown" or commit.removesuffix("+dirty").isalnum()


def test_command_names_the_module():
    script = ROOT / "benchmarks" / "speed" / "bench_engines.py"
    assert common.command(str(script), ["--out", "a b.json"]) == "python -m benchmarks.speed.bench_engines --out 'a b.json'"


def test_git_commit_outside_git(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "ROOT", tmp_path)
    assert common.git_commit() == "unknown"


def test_solution_chains_from_the_shipped_sample():
    records = common.gsm8k_records(Path(SAMPLE))
    chain = common.solution_chain(records[0], 0)
    assert chain["id"] == "gsm8k-train-0" and "<<" not in chain["reasoning"]
    assert chain["answer"] == f"The answer is {records[0]['answer'].rsplit('####', 1)[1].strip()}."
