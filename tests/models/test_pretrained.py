"""model.pretrained: weights from a state dict, safetensors or an earlier run, loaded
bit for bit, and every mismatch named before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from medfl.data import Preprocessor
from medfl.errors import SpecError
from medfl.models import build_model, initial_model
from medfl.spec import Experiment, parse_experiment
from medfl.training import Federation, InProcessTransport
from medfl.training._start import StartingModel
from tests.helpers import deep_merge, make_sites

MLP = {"type": "mlp", "hidden": [8]}
WIDTH = 6  # age, bp, sex=female, sex=male, smoker=no, smoker=yes


def _random_state(seed: int, spec: dict[str, Any] = MLP) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model(parse_experiment(_doc({})).model.model_copy(update=spec), WIDTH)
    state = model.state_dict()
    return {k: torch.randn_like(v) for k, v in state.items()}


_SITES: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _sites(tmp_path: Path) -> None:
    _SITES["spec"] = make_sites(tmp_path)


def _doc(model: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = _SITES.get("spec") or {
        "name": "toy",
        "sites": [{"name": "a", "data": {"source": "csv", "path": "a.csv"}}],
        "schema": {"target": {"column": "outcome"}, "numeric": ["age"]},
    }
    return deep_merge(base, {"model": {**MLP, **model}, **extra})


def _start(doc: dict[str, Any]) -> tuple[StartingModel, Preprocessor]:
    experiment = parse_experiment(doc)
    setup = Federation(experiment, InProcessTransport(experiment)).setup()
    return setup.start, setup.preprocessor


def _assert_bitwise(start: StartingModel, state: dict[str, torch.Tensor]) -> None:
    assert list(start.parts.names) == list(state)
    for got, (name, want) in zip(start.base, state.items(), strict=True):
        assert got.dtype == want.numpy().dtype, name
        assert got.tobytes() == want.numpy().tobytes(), name


def test_state_dict_file_is_loaded_bit_for_bit(tmp_path: Path) -> None:
    state = _random_state(1)
    torch.save(state, tmp_path / "weights.pt")

    start, _ = _start(_doc({"pretrained": {"path": str(tmp_path / "weights.pt")}}))

    _assert_bitwise(start, state)
    assert start.info.pretrained is not None
    assert start.info.pretrained.kind == "state-dict"
    assert start.info.pretrained.loaded == list(state)


def test_checkpoint_wrapping_its_state_dict_is_unwrapped(tmp_path: Path) -> None:
    state = _random_state(2)
    torch.save({"epoch": 3, "model_state_dict": state}, tmp_path / "ckpt.pth")

    start, _ = _start(_doc({"pretrained": {"path": str(tmp_path / "ckpt.pth")}}))

    _assert_bitwise(start, state)


def test_safetensors_file_is_loaded_bit_for_bit(tmp_path: Path) -> None:
    state = _random_state(3)
    save_file(state, tmp_path / "weights.safetensors")

    start, _ = _start(_doc({"pretrained": {"path": str(tmp_path / "weights.safetensors")}}))

    _assert_bitwise(start, state)
    assert start.info.pretrained and start.info.pretrained.kind == "safetensors"


def test_earlier_run_gives_its_weights_and_its_input_encoding(
    tmp_path: Path, run_fast: Any
) -> None:
    first = run_fast(_doc({}), out="first")
    saved = torch.load(first.run_dir / "model.pt", weights_only=True)

    start, preprocessor = _start(_doc({"pretrained": {"path": str(first.run_dir)}}))

    _assert_bitwise(start, dict(zip(saved["names"], saved["params"], strict=True)))
    assert preprocessor.to_dict() == saved["preprocessing"]
    assert start.info.pretrained and start.info.pretrained.preprocessing == "source"


def test_shape_mismatch_names_the_layer_and_both_shapes(tmp_path: Path) -> None:
    torch.save(_random_state(4, {"hidden": [5]}), tmp_path / "small.pt")

    with pytest.raises(SpecError) as err:
        _start(_doc({"pretrained": {"path": str(tmp_path / "small.pt")}}))

    assert err.value.problems == [
        (
            "model.pretrained.path",
            "layer 'hidden1.weight' is [5, 6] in the file but [8, 6] in this model; layer "
            "'hidden1.bias' is [5] in the file but [8] in this model; layer 'output.weight' "
            "is [1, 5] in the file but [1, 8] in this model",
        )
    ]


def test_output_layer_reinitialised_keeps_the_fresh_weights_and_loads_the_rest(
    tmp_path: Path,
) -> None:
    state = _random_state(5)
    state["output.weight"] = torch.zeros(3, 8)  # a source with three outputs
    state["output.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "three.pt")
    doc = _doc({"pretrained": {"path": str(tmp_path / "three.pt"), "reinitialize": ["output"]}})

    start, _ = _start(doc)

    experiment = parse_experiment(doc)
    fresh = initial_model(experiment.model, WIDTH, experiment.training.seed).state_dict()
    by_name = dict(zip(start.parts.names, start.base, strict=True))
    for name in ("output.weight", "output.bias"):
        assert np.array_equal(by_name[name], fresh[name].numpy())
    for name in ("hidden1.weight", "hidden1.bias"):
        assert np.array_equal(by_name[name], state[name].numpy())
    assert start.info.pretrained is not None
    assert start.info.pretrained.reinitialized == ["output.weight", "output.bias"]
    assert start.info.pretrained.unused == []  # set aside on purpose, not unused
    assert start.notes == []


def test_renamed_layers_are_found_under_their_name_in_the_file(tmp_path: Path) -> None:
    state = _random_state(6)
    theirs = {k.replace("hidden1", "encoder.0"): v for k, v in state.items()}
    torch.save(theirs, tmp_path / "renamed.pt")
    doc = _doc(
        {"pretrained": {"path": str(tmp_path / "renamed.pt"), "rename": {"hidden1": "encoder.0"}}}
    )

    start, _ = _start(doc)

    _assert_bitwise(start, state)


def test_layer_missing_from_the_file_is_named_with_what_the_file_has(tmp_path: Path) -> None:
    state = _random_state(7)
    del state["output.bias"]
    torch.save(state, tmp_path / "partial.pt")

    with pytest.raises(SpecError) as err:
        _start(_doc({"pretrained": {"path": str(tmp_path / "partial.pt")}}))

    assert err.value.problems == [
        (
            "model.pretrained.path",
            "the file has no tensor for output.bias (it has: hidden1.weight, hidden1.bias, "
            "output.weight); map names with rename or list the layer under reinitialize",
        )
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere.pt", "{p}: no such file or folder"),
        (lambda p: p, "{p} is a folder but holds no trained medfl model (model.pt)"),
        (
            lambda p: _write(p / "numbers.pt", lambda f: torch.save([1, 2, 3], f)),
            "{p} holds no state dict (a mapping of layer names to tensors)",
        ),
        (
            lambda p: _write(p / "text.pt", lambda f: f.write(b"not a zip")),
            "{p} is not a PyTorch weights file",
        ),
        (
            lambda p: _write(p / "module.pt", lambda f: torch.save(torch.nn.Linear(2, 1), f)),
            "{p} holds Python objects besides tensors, and medfl loads only tensors (never "
            "code): save the model's state_dict() instead",
        ),
    ],
    ids=["missing", "folder-not-a-run", "not-a-state-dict", "not-torch", "pickled-module"],
)
def test_unusable_source_is_refused_naming_the_file(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path)

    with pytest.raises(SpecError) as err:
        _start(_doc({"pretrained": {"path": str(path)}}))

    assert err.value.problems == [("model.pretrained.path", message.format(p=path))]


def _write(path: Path, write: Any) -> Path:
    with path.open("wb") as handle:
        write(handle)
    return path


def test_source_encoding_needs_a_run_folder(tmp_path: Path) -> None:
    torch.save(_random_state(8), tmp_path / "w.pt")
    doc = _doc({"pretrained": {"path": str(tmp_path / "w.pt"), "preprocessing": "source"}})

    with pytest.raises(SpecError) as err:
        _start(doc)

    assert err.value.problems == [
        (
            "model.pretrained.preprocessing",
            "'source' needs the folder of a medfl run (a weights file carries no input "
            "encoding); use 'federation'",
        )
    ]


def test_earlier_run_over_other_columns_is_refused_naming_them(
    tmp_path: Path, run_fast: Any
) -> None:
    first = run_fast(_doc({}), out="first")
    doc = _doc({"pretrained": {"path": str(first.run_dir)}})
    doc["schema"]["categorical"] = ["sex"]

    with pytest.raises(SpecError) as err:
        _start(doc)

    assert err.value.problems == [
        (
            "model.pretrained.preprocessing",
            "the earlier run's inputs differ from this schema's: numeric ['age', 'bp'] vs "
            "['age', 'bp'], categorical ['sex', 'smoker'] vs ['sex']; list the same "
            "columns, or use 'federation'",
        )
    ]


def test_weights_path_in_yaml_is_relative_to_the_file(tmp_path: Path) -> None:
    import yaml

    from medfl.spec import load_experiment

    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "exp.yaml").write_text(yaml.safe_dump(_doc({"pretrained": {"path": "weights/w.pt"}})))

    experiment: Experiment = load_experiment(folder / "exp.yaml")

    assert experiment.model.pretrained is not None
    assert experiment.model.pretrained.path == str(folder / "weights" / "w.pt")


def test_levels_the_earlier_run_never_saw_are_named_in_the_notes(
    tmp_path: Path, run_fast: Any
) -> None:
    first = run_fast(_doc({}), out="first")
    spec = make_sites(tmp_path / "later", sizes=(60, 50))
    frame_path = Path(spec["sites"][0]["data"]["path"])
    frame = pd.read_csv(frame_path)
    frame.loc[:4, "smoker"] = "former"  # five patients with a level the first run lacked
    frame.to_csv(frame_path, index=False)
    doc = deep_merge(spec, {"model": {**MLP, "pretrained": {"path": str(first.run_dir)}}})

    outcome = run_fast(doc, out="later")

    assert (
        "site 'site-a', column 'smoker': level(s) former are not in the pretrained run's "
        "categories and encode as all zeros"
    ) in outcome.result.notes
    assert outcome.result.features == read_features(first.run_dir)


def read_features(run_dir: Path) -> list[str]:
    return torch.load(run_dir / "model.pt", weights_only=True)["features"]


def test_first_layer_of_another_width_says_how_to_see_this_federations_inputs(
    tmp_path: Path,
) -> None:
    torch.save({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}, tmp_path / "wide.pt")

    doc = _doc({})
    doc["model"] = {"type": "logistic", "pretrained": {"path": str(tmp_path / "wide.pt")}}

    with pytest.raises(SpecError) as err:
        _start(doc)

    assert err.value.problems == [
        (
            "model.pretrained.path",
            "layer 'weight' is [1, 7] in the file but [1, 6] in this model (this "
            "federation's encoding gives the model 6 inputs, listed by `medfl validate "
            "--json` as features; if the file's first layer expects another number, "
            "declare the categories with schema.levels so they match the weights')",
        )
    ]


@pytest.mark.parametrize(
    ("pretrained", "problem"),
    [
        ({"reinitialize": ["head"]},
         ("model.pretrained.reinitialize[0]", "'head' matches no layer; the model has: "
          "hidden1.weight, hidden1.bias, output.weight, output.bias")),
        ({"rename": {"encoder": "enc"}},
         ("model.pretrained.rename.encoder", "'encoder' is no layer of this model; it has: "
          "hidden1.weight, hidden1.bias, output.weight, output.bias")),
    ],
    ids=["reinitialize", "rename"],
)  # fmt: skip
def test_misspelt_layer_choices_of_a_pretrained_source_are_named(
    tmp_path: Path, pretrained: dict[str, Any], problem: tuple[str, str]
) -> None:
    torch.save(_random_state(9), tmp_path / "w.pt")

    with pytest.raises(SpecError) as err:
        _start(_doc({"pretrained": {"path": str(tmp_path / "w.pt"), **pretrained}}))

    assert err.value.problems == [problem]


def test_broken_safetensors_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"\x00\x01 not a header")

    with pytest.raises(SpecError) as err:
        _start(_doc({"pretrained": {"path": str(tmp_path / "w.safetensors")}}))

    path, message = err.value.problems[0]
    assert path == "model.pretrained.path"
    assert message.startswith(f"{tmp_path / 'w.safetensors'} is not a readable safetensors file")


def test_run_folder_from_an_older_medfl_without_layer_names_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "old-run"
    folder.mkdir()
    torch.save({"params": [torch.zeros(1, 6), torch.zeros(1)]}, folder / "model.pt")

    with pytest.raises(SpecError) as err:
        _start(_doc({"pretrained": {"path": str(folder)}}))

    assert err.value.problems == [
        (
            "model.pretrained.path",
            f"{folder / 'model.pt'} was written by an older medfl, without layer names; rerun it",
        )
    ]
