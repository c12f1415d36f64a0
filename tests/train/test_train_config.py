"""SPEC parsing and validation: every mistake named by its dotted key, nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.train.config import ConfigError, ParallelConfig, TrainingConfig, build_job_config
from aiaas.train.spec import apply_overrides, format_override, load_job_config, parse_override

MINIMAL = {
    "name": "t",
    "model": {"factory": "aiaas.train.examples:digits_mlp"},
    "data": {"dataset": "aiaas.train.examples:digits_dataset"},
    "training": {"steps": 4, "global_batch_size": 8},
}


def error_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        build_job_config(raw)
    return str(caught.value)


def test_defaults_fill_everything_but_model_data_and_batch():
    job = build_job_config(MINIMAL)
    assert job.parallel.strategy == "ddp"
    assert job.run_path == "runs/t"
    assert job.micro_batch_size(world_size=2) == 4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("training.stesp", 3), "training.stesp: unknown key (did you mean 'training.steps'?)"),
        (("strategy", "ddp"), "strategy: unknown key (did you mean 'parallel.strategy'?)"),
        (("training.epochs", 2), "training.steps: set exactly one of training.steps and"),
        (("training.global_batch_size", 0), "training.global_batch_size: must be positive, got 0"),
        (("training.steps", True), "training.steps: must be an integer, got True"),
        (("optimizer.lr", "fast"), "optimizer.lr: must be a number, got str 'fast'"),
        (("optimizer.betas", [0.9]), "optimizer.betas: must be two numbers in [0, 1)"),
        (("parallel.nnodes", "2:1"), "parallel.nnodes: '2:1' is not N or MIN:MAX"),
        (("model.factory", "no-colon"), "model.factory: 'no-colon' is not of the form"),
        (("data.dataset", "data.csv"), "data.dataset: 'data.csv' is neither module:factory"),
        (("training", 3), "training: must be a table, got int"),
        (("name", "a b"), "name: 'a b' must be letters"),
    ],
)
def test_invalid_values_are_named_by_their_dotted_key(override: tuple, message: str):
    assert message in error_of(apply_overrides(MINIMAL, [override]))


def test_batch_must_divide_among_workers_and_accumulation_for_every_node_count():
    raw = apply_overrides(
        MINIMAL,
        [("parallel.nproc", 2), ("parallel.nnodes", "1:3"), ("parallel.rdzv_endpoint", "h:1")],
    )
    assert error_of(raw) == (
        "training.global_batch_size: 8 is not divisible by workers x grad_accumulation "
        "= 6 x 1 (with 3 nodes)"
    )


def test_sections_validate_on_construction_too():
    with pytest.raises(ConfigError, match="stop_at_step: 9 is past steps=4"):
        TrainingConfig(global_batch_size=8, steps=4, stop_at_step=9)
    assert ParallelConfig(nnodes="2:4").min_nodes == 2


def test_spec_file_and_overrides_merge_with_flags_winning(tmp_path: Path):
    spec = tmp_path / "exp.toml"
    spec.write_text(
        '[model]\nfactory = "aiaas.train.examples:digits_mlp"\n'
        '[data]\ndataset = "aiaas.train.examples:digits_dataset"\n'
        "[training]\nsteps = 10\nglobal_batch_size = 16\n"
    )
    job = load_job_config(spec, [parse_override("training.steps=3")])
    assert (job.name, job.training.steps, job.training.global_batch_size) == ("exp", 3, 16)


def test_data_file_must_exist_and_hold_x_and_y(tmp_path: Path):
    import numpy as np

    np.savez(tmp_path / "only_x.npz", x=np.zeros((4, 2)))
    only_x = [*_flatten(MINIMAL), ("data.dataset", str(tmp_path / "only_x.npz"))]
    with pytest.raises(ConfigError, match=r"data.dataset: .*only_x.npz lacks array\(s\) y"):
        load_job_config(None, only_x)
    missing = [*_flatten(MINIMAL), ("data.dataset", str(tmp_path / "missing.npz"))]
    with pytest.raises(ConfigError, match=r"missing\.npz does not exist"):
        load_job_config(None, missing)


def _flatten(raw: dict, prefix: str = "") -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for key, value in raw.items():
        if isinstance(value, dict) and key != "kwargs":
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((prefix + key, value))
    return items


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30),
)


@given(value=scalars)
def test_overrides_survive_the_trip_from_launcher_to_worker(value: object):
    assert parse_override(format_override("section.key", value)) == ("section.key", value)
