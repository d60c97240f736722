"""`medseg train` writes a model folder the service can load and use (a tiny run, for CI)."""

import json

import numpy as np

from medseg.model_store import load_model, sha256_file
from medseg.phantom import generate_phantom
from medseg.pipeline import segment
from medseg.train import PEAK_PROBABILITY_CANDIDATES, VALIDATION_PHANTOM_SEED0

from tests.test_bad_input import run_cli


def test_train_writes_a_loadable_self_describing_model(tmp_path, capsys):
    out = tmp_path / "models" / "ct-tumor" / "9.9.9"
    code, stdout, err = run_cli(
        ["train", "--out", out, "--iterations", "3", "--phantoms", "2", "--holdout-phantoms", "1",
         "--version", "9.9.9", "--minutes", "5"], capsys,
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == "9.9.9"
    assert manifest["weights"]["sha256"] == sha256_file(out / "model.pt")
    assert manifest["training"]["iterations_run"] == 3
    assert manifest["training"]["phantom_seeds"] == [1000, 1001]
    assert manifest["metrics"]["holdout_phantoms"]["seeds"] == [900000, 900000]
    assert json.loads(stdout) == manifest["metrics"]
    calibration = manifest["training"]["peak_probability_calibration"]
    assert calibration["seeds"] == [VALIDATION_PHANTOM_SEED0, VALIDATION_PHANTOM_SEED0 + 7]  # disjoint from the rest
    assert manifest["postprocess"]["min_peak_probability"] == calibration["chosen"] in PEAK_PROBABILITY_CANDIDATES
    assert manifest["training"]["real_training_cases"] == []
    assert (out / "MODEL_CARD.md").read_text().startswith("# ct-tumor 9.9.9")
    loaded = load_model(out)
    phantom = generate_phantom(3, shape=(16, 48, 48), spacing=(3.0, 3.0, 3.0))
    result = segment(phantom.image, loaded, loaded.manifest.pipeline_spec())
    assert result.mask.shape == phantom.image.shape and set(np.unique(result.mask.array)) <= {0, 1}


def test_train_refuses_a_bad_version(tmp_path, capsys):
    code, _, err = run_cli(["train", "--out", tmp_path / "m", "--version", "v1", "--iterations", "1"], capsys)
    assert code == 2 and "version" in err and len(err.strip().splitlines()) == 1
