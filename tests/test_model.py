"""The model store: manifests validate themselves, weights are verified before they are deserialized."""

import json
import shutil

import pytest

from medseg.core.exceptions import ChecksumError, ModelError
from medseg.models.manifest import ModelManifest
from medseg.models.store import load_model, sha256_file
from medseg.training.model_card import GENERALISATION_GAP, model_card
from tests.conftest import REPO
from tests.test_bad_input import run_cli


@pytest.fixture
def model_copy(shipped_model, tmp_path):
    return shutil.copytree(shipped_model, tmp_path / "model")


def test_shipped_model_describes_itself_and_loads(shipped_model):
    manifest = ModelManifest.load(shipped_model)
    assert manifest.weights.sha256 == sha256_file(shipped_model / manifest.weights.file)
    assert (shipped_model / manifest.weights.file).stat().st_size < 20 * 1024 * 1024
    assert manifest.labels[0].type.meaning == "Neoplasm"
    assert "NOT FOR CLINICAL USE" in manifest.intended_use
    assert "NOT FOR CLINICAL USE" in (shipped_model / "MODEL_CARD.md").read_text().upper()
    assert manifest.metrics["holdout_phantoms"]["studies"] >= 10
    loaded = load_model(shipped_model)
    assert not loaded.network.training


@pytest.mark.parametrize("folder", sorted(p.parent.relative_to(REPO / "models").as_posix()  # a run in training has
                                           for p in (REPO / "models").glob("*/*/manifest.json")))  # no manifest yet
def test_every_committed_model_card_is_what_its_manifest_says(folder):
    """A card edited by hand, or left behind by a manifest re-measured without --write-metrics, fails."""
    model = REPO / "models" / folder
    assert (model / "MODEL_CARD.md").read_text() == model_card(ModelManifest.load(model))


def test_the_real_ct_card_says_how_far_held_out_cases_fall_from_training_cases():
    """ct-tumor 3.0.0 outlines its own 16 training sarcomas far better than unseen ones: the card says
    so from its own numbers, and what that means for the next version."""
    manifest = ModelManifest.load(REPO / "models" / "ct-tumor" / "3.0.0")
    training = manifest.metrics["real_sts_seen"]["training"]
    held_out = manifest.metrics["holdout_real_sts"]
    assert training["cases"] == len(manifest.training["real_training_cases"]) == 16
    assert list(training["per_case_dice"]) == manifest.training["real_training_cases"]
    assert training["mean_dice"] - held_out["mean_dice"] > GENERALISATION_GAP
    card = model_card(manifest)
    assert (f"on its 16 training sarcomas mean Dice {training['mean_dice']:.2f} (lowest {training['min_dice']:.2f})"
            f", on its 4 validation sarcomas") in card
    assert "it has learned its training cases more than sarcoma" in card


def test_tampered_weights_fail_the_checksum_before_loading(model_copy, study_dir, tmp_path, capsys):
    weights = model_copy / "model.pt"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ChecksumError, match="does not match"):
        load_model(model_copy)
    code, _, err = run_cli(["segment", study_dir, "--out", tmp_path / "o", "--model", model_copy], capsys)
    assert code == 2 and "does not match the manifest" in err and "[model.checksum]" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "seg.dcm").exists()


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda m: m["weights"].update(sha256="xyz"), "weights.sha256"),
        (lambda m: m["weights"].update(file="../../etc/passwd"), "weights.file"),
        (lambda m: m["architecture"].update(name="os.system"), "architecture.name"),
        (lambda m: m["input"].update(window_hu=[300, -200]), "window_hu"),
        (lambda m: m.update(labels=[]), "labels"),
        (lambda m: m.update(version="latest"), "version"),
    ],
)
def test_invalid_manifests_name_the_field(model_copy, edit, fragment):
    path = model_copy / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError) as info:
        load_model(model_copy)
    assert fragment in info.value.message


def test_missing_weights_and_missing_manifest(model_copy, tmp_path):
    (model_copy / "model.pt").unlink()
    with pytest.raises(ModelError, match="weights file model.pt missing"):
        load_model(model_copy)
    with pytest.raises(ModelError, match="manifest not found"):
        load_model(tmp_path / "nowhere")
