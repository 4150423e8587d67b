"""A run directory: resolved spec, result.json, checkpoint, model, plots, report.

Every write goes to a temporary file first and is renamed, so a run killed
mid-write never leaves a torn result.json or checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medfl.data import Preprocessor
from medfl.errors import RunNotFoundError
from medfl.results._model import RoundRecord, RunResult
from medfl.spec import Experiment, load_experiment

SPEC_FILE = "experiment.yaml"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.npz"
MODEL_FILE = "model.pt"
PORTABLE_FILE = "model.npz"
PREPROCESSING_FILE = "preprocessing.json"


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{name}-{stamp}-{suffix}"
    return path


@functools.cache
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: once, then put it back
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Any, mode: str = "w") -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the run's files the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _savez(handle: Any, arrays: dict[str, np.ndarray]) -> None:
    np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def create(self, experiment: Experiment) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(experiment.to_wire(), sort_keys=False)
        _atomic_write(self.path / SPEC_FILE, lambda f: f.write(text))

    def experiment(self) -> Experiment:
        spec = self.path / SPEC_FILE
        if not spec.is_file():
            raise RunNotFoundError(f"{self.path} is not a medfl run directory (no {SPEC_FILE})")
        return load_experiment(spec)

    def save_result(self, result: RunResult) -> None:
        text = result.to_json()
        _atomic_write(self.path / RESULT_FILE, lambda f: f.write(text))

    def load_result(self) -> RunResult:
        path = self.path / RESULT_FILE
        if not path.is_file():
            raise RunNotFoundError(f"{self.path} has no {RESULT_FILE}")
        return RunResult.model_validate_json(path.read_text())

    # --- checkpoint -------------------------------------------------------

    def save_checkpoint(
        self, params: list[np.ndarray], optimizer: dict[str, Any], rounds: int | None = None
    ) -> None:
        """The global model after ``rounds`` finished rounds (the server state with it)."""
        arrays = {f"p{i}": p for i, p in enumerate(params)}
        arrays |= {f"m{i}": m for i, m in enumerate(optimizer.get("m", []))}
        arrays |= {f"v{i}": v for i, v in enumerate(optimizer.get("v", []))}
        arrays["step"] = np.array(optimizer.get("step", 0))
        if rounds is not None:
            arrays["rounds"] = np.array(rounds)
        _atomic_write(self.path / CHECKPOINT_FILE, lambda f: _savez(f, arrays), "wb")

    def load_checkpoint(self) -> tuple[list[np.ndarray], dict[str, Any], list[RoundRecord]]:
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            raise RunNotFoundError(f"{self.path} has no checkpoint to resume from")
        with np.load(path) as data:

            def series(prefix: str) -> list[np.ndarray]:
                keys = sorted(
                    (k for k in data.files if k.startswith(prefix) and k[1:].isdigit()),
                    key=lambda k: int(k[1:]),
                )
                return [data[k] for k in keys]

            params, m, v = series("p"), series("m"), series("v")
            optimizer = {"step": int(data["step"]), "m": m, "v": v}
            done = int(data["rounds"]) if "rounds" in data.files else None
        rounds = self.load_result().rounds
        if done is None:
            return params, optimizer, rounds
        if done > len(rounds):
            raise RunNotFoundError(
                f"{self.path}: the checkpoint is after round {done} but {RESULT_FILE} "
                f"records {len(rounds)} round(s); cannot resume"
            )
        # result.json is written before the checkpoint: a run killed in between has
        # recorded a round the checkpoint lacks, and that round runs again.
        return params, optimizer, rounds[:done]

    # --- model ------------------------------------------------------------

    def save_model(
        self,
        params: list[np.ndarray],
        names: list[str],
        preprocessor: Preprocessor,
        experiment: Experiment,
    ) -> None:
        """model.pt: the tensors in state-dict order with their names, the input
        encoding and its feature names (a later run starts from it: model.pretrained)."""
        import torch  # only the model file needs torch; reading results does not

        meta = {
            "model": experiment.to_wire()["model"],
            "preprocessing": preprocessor.to_dict(),
            "features": preprocessor.feature_names,
            "schema": experiment.to_wire()["schema"],
        }
        payload = {"names": names, "params": [torch.from_numpy(p) for p in params], **meta}
        _atomic_write(self.path / MODEL_FILE, lambda f: torch.save(payload, f), "wb")
        _atomic_write(
            self.path / PORTABLE_FILE,
            lambda f: _savez(f, {f"p{i}": p for i, p in enumerate(params)}),
            "wb",
        )
        text = json.dumps(meta, indent=2)
        _atomic_write(self.path / PREPROCESSING_FILE, lambda f: f.write(text))
