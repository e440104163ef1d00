"""The CLI's choices come from `chainprune.choices` (no torch), so `--help` is fast: the engine and ranker
registries there point at objects of their kind, every engine defined is registered, the other layers take their
names from there, importing the CLI loads neither torch nor transformers, the package's public names resolve on
first use, and every command's help is written paragraphs."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest
import typer.main

import chainprune
from chainprune import choices
from chainprune.cli import app
from chainprune.cli.common import written


def test_each_registry_line_points_at_an_object_of_its_kind():
    from chainprune import ranking, scoring
    from chainprune.ranking.base import RANKER_MODELS

    for name, where in choices.ENGINES.items():
        engine = choices.load(where)
        assert isinstance(engine, scoring.Engine) and engine.name == name, where
        assert scoring.ENGINES[name] is engine
    for name, where in choices.RANKERS.items():
        ranker = choices.load(where)
        assert callable(ranker) and ranker.needs in RANKER_MODELS, where
        assert ranking.RANKERS[name] is ranker and ranking.RANKER_NEEDS[name] == ranker.needs
    assert ranking.get_ranker("h2o") is ranking.RANKERS["h2o"]


def test_every_engine_defined_is_registered():
    from chainprune import scoring

    defined = set()
    for info in pkgutil.walk_packages(scoring.__path__, "chainprune.scoring."):
        module = importlib.import_module(info.name)
        defined |= {id(value) for value in vars(module).values() if isinstance(value, scoring.Engine)}
    assert defined == {id(engine) for engine in scoring.ENGINES.values()}


def test_other_layers_take_their_names_from_choices():
    from chainprune import generation, models, ranking, scoring
    from chainprune.models import gguf

    assert tuple(generation.BACKENDS) == choices.BACKENDS
    assert tuple(models.DTYPES) == choices.DTYPES
    assert tuple(models.DEVICES) == choices.DEVICES
    assert tuple(gguf.STORE_DTYPES) == choices.STORE_DTYPES
    assert scoring.DEFAULT_MAX_BATCH_TOKENS == choices.DEFAULT_MAX_BATCH_TOKENS
    assert ranking.DEFAULT_CLASSIFIER == choices.DEFAULT_CLASSIFIER


def test_importing_the_cli_loads_no_ml_stack():
    code = ("import sys, chainprune, chainprune.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_public_names_resolve_lazily():
    assert set(chainprune.__all__) == set(chainprune._PUBLIC)
    for name in chainprune.__all__:
        assert getattr(chainprune, name) is not None
    assert chainprune.DEFAULT_MODEL == "smollm2-135m"
    with pytest.raises(AttributeError):
        chainprune.no_such_name  # noqa: B018


def commands(group=None):
    group = group or typer.main.get_command(app)
    for command in group.commands.values():
        yield from commands(command) if hasattr(command, "commands") else [command]


def test_help_texts_are_paragraphs_not_source_lines():
    assert written("""First line
        goes on.

        Second paragraph
        too.""") == "First line goes on.\n\nSecond paragraph too."
    helps = [c.help for c in commands()]
    assert len(helps) >= 20
    for text in helps:
        assert "\n" not in text.replace("\n\n", ""), text
