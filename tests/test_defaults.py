"""The newcomer's defaults: the fastest exact engine everywhere, the experiment's pruner settings are `prune`'s,
resume compares the dtype a run resolves to, and the approximate modes are reachable from `import chainprune`."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch
import typer.main

from chainprune.cli import app
from chainprune.pipelines.demo import run_demo
from chainprune.pipelines.experiment import PrunerSpec, parse_config
from chainprune.pipelines.prune import PruneConfig, run_prune
from chainprune.pruning import prune_chain

CHAINS = [
    {"id": "a", "question": "How many clips?", "reasoning": "Natalia sold 48/2 = 24 clips.", "answer": "The answer is 24."},
    {"id": "b", "question": "Pay?", "reasoning": "Weng earns 12/60 = $0.2 per minute.", "answer": "The answer is 10."},
]


def option_default(command: str, name: str):
    click_command = typer.main.get_command(app).commands[command]
    return next(p for p in click_command.params if p.name == name).default


def test_every_entry_point_defaults_to_the_packed_engine():
    assert PruneConfig().engine == "packed" and PrunerSpec().config.engine == "packed"
    assert inspect.signature(prune_chain).parameters["engine"].default == "packed"
    assert inspect.signature(run_demo).parameters["engine"].default == "packed"
    assert option_default("prune", "engine") == "packed" and option_default("demo", "engine") == "packed"


def test_the_greedy_baseline_defaults_to_the_packed_engine_and_takes_the_run_s_engine():
    from chainprune.choices import DEFAULT_ENGINE, DEFAULT_MAX_BATCH_TOKENS
    from chainprune.pipelines.baselines import BaselineConfig, ranker_options
    from chainprune.ranking import get_ranker

    greedy = get_ranker("greedy")
    assert inspect.signature(greedy).parameters["engine"].default == DEFAULT_ENGINE == "packed"
    assert inspect.signature(greedy).parameters["max_batch_tokens"].default == DEFAULT_MAX_BATCH_TOKENS
    assert option_default("baseline", "engine") == "packed"
    config = BaselineConfig(method="greedy", student_tokenizer="t", engine="naive", max_batch_tokens=512)
    assert ranker_options(greedy, config) == {"engine": "naive", "max_batch_tokens": 512}
    assert ranker_options(get_ranker("uniform"), config) == {}  # rankers that do not score take neither


def test_batch_chains_needs_no_engine_flag_any_more():
    PruneConfig(batch_chains=8).validate()
    with pytest.raises(ValueError, match="needs --engine packed"):
        PruneConfig(engine="prefix", batch_chains=8).validate()


def test_experiment_takes_every_pruner_setting_of_prune():
    """Each PruneConfig field a grid can vary is a pruner setting of the YAML (keep, dtype and device are the
    grid's own), held in the pruner's PruneConfig."""
    per_grid = {"keep", "dtype", "device"}
    prune_fields = {f.name for f in dataclasses.fields(PruneConfig)} - per_grid
    with pytest.raises(ValueError, match="unknown setting 'colour'") as error:
        parse_config({"pruner": {"colour": "red"}})
    assert set(str(error.value).split("known: ")[1].split(", ")) == prune_fields | {"name", "floor"}
    config = parse_config({"pruner": {"batch_chains": 4, "max_batch_tokens": 2048, "save_scores": True}})
    pruner = config.pruners[0].config
    assert (pruner.batch_chains, pruner.max_batch_tokens, pruner.save_scores, pruner.surrogate) == (4, 2048, True, None)


def test_experiment_checks_pruner_settings_before_any_stage(tmp_path):
    with pytest.raises(ValueError, match="pruner smollm2-135m: .*needs --engine packed"):
        parse_config({"pruner": {"engine": "prefix", "batch_chains": 2}})
    with pytest.raises(ValueError, match="surrogate file .* does not exist"):
        parse_config({"pruner": {"screen": 2, "surrogate": str(tmp_path / "none.pt")}})


def test_speed_only_pruner_settings_keep_the_cached_traces():
    """batch_chains and max_batch_tokens change no trace: they stay out of the traces stage's key, as do
    margin, surrogate and save_scores at their defaults (keys without them name the same traces)."""
    from chainprune.pipelines.experiment import traces_key

    before = {"model": "smollm2-135m", "objective": "joint", "engine": "packed", "per_step": 1, "screen": None,
              "refresh": 10, "lookahead": None}
    assert traces_key(PrunerSpec()) == before
    speed_only = PruneConfig(batch_chains=8, max_batch_tokens=1024)
    assert traces_key(PrunerSpec(name="x", floor=0.3, config=speed_only)) == before
    assert traces_key(PrunerSpec(config=PruneConfig(save_scores=True, margin=5.0))) == before | {"save_scores": True, "margin": 5.0}


@pytest.fixture
def loader(tiny_pruner):
    return lambda config: tiny_pruner


def write_chains(path):
    path.write_text("".join(json.dumps(c) + "\n" for c in CHAINS))
    return path


def test_resume_compares_the_resolved_dtype(tmp_path, loader, monkeypatch):
    """`--dtype auto` started on a CPU means float32; resumed where CUDA is seen it would mean bfloat16: refused.
    Saying the same dtype another way (auto on a CPU, then float32) is not a change."""
    source, out = write_chains(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    run_prune(source, out, PruneConfig(dtype="auto", device="auto", keep=[0.5]), loader=loader)
    saved = json.loads(out.with_name("out.jsonl.config.json").read_text())
    assert saved["dtype"] == "auto" and saved["resolved_dtype"] == ("bfloat16" if torch.cuda.is_available() else "float32")
    if not torch.cuda.is_available():
        summary = run_prune(source, out, PruneConfig(dtype="float32", device="cpu", keep=[0.5]), resume=True, loader=loader)
        assert summary.skipped == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: not saved["resolved_dtype"] == "bfloat16")
    with pytest.raises(ValueError, match="resolved_dtype"):
        run_prune(source, out, PruneConfig(dtype="auto", device="auto", keep=[0.5]), resume=True, loader=loader)


def test_approximate_modes_are_exported():
    import chainprune

    assert chainprune.Approximation is not None and "Approximation" in chainprune.__all__
    approx = chainprune.Approximation(screen=2, lookahead=3, margin=5)
    assert inspect.signature(chainprune.prune_chain).parameters["approximation"].annotation in ("Approximation", chainprune.Approximation)
    assert approx.screen == 2


@pytest.mark.parametrize("command, settings", [
    ("prune", "chainprune.pipelines.prune:PruneConfig"),
    ("teacher", "chainprune.pipelines.teacher:TeacherConfig"),
    ("distill", "chainprune.pipelines.distill:DistillConfig"),
    ("distill", "chainprune.training:SFTSettings"),
    ("baseline", "chainprune.pipelines.baselines:BaselineConfig"),
])
def test_a_command_builds_its_settings_from_its_options_and_their_defaults_are_the_settings(command, settings):
    """Each settings field a command offers reaches the settings by name (`config_from`), and the option's
    default is the field's: a default is written once, on the dataclass, or agrees with it."""
    from chainprune import choices
    from chainprune.cli.common import config_from

    cls = choices.load(settings)
    click_command = typer.main.get_command(app).commands[command]
    defaults = {p.name: p.default for p in click_command.params}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    offered = sorted(set(defaults) & set(fields))
    assert offered, "the command offers none of the settings' fields"
    no_default = {"keep"}  # the commands give None for "the settings' default", [0.5]
    for name in offered:
        field = fields[name]
        if name in no_default or field.default is dataclasses.MISSING:
            continue
        default = defaults[name]
        assert default == field.default or (default is None and field.default is None), (command, name, default, field.default)
    built = config_from(cls, {name: defaults[name] for name in offered}, **{n: ["x"] for n in offered if n == "keep"})
    assert all(getattr(built, name) == (["x"] if name == "keep" else defaults[name]) for name in offered)
