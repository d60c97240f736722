"""`medseg models import-bundle` on bundles the test writes in the MONAI bundle layout, around real weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.models import gate
from medseg.models.manifest import ModelManifest
from tests.cli_helpers import medseg
from tests.conftest import REPO, monai_bundle_env

pytestmark = pytest.mark.model
SOURCE = REPO / "models" / "ct-phantom" / "1.0.0"


def make_bundle(root: Path, roi="@roi_size", extra: dict | None = None) -> Path:
    m = ModelManifest.load(SOURCE)
    bundle = root / "Liver_Lesion_Bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    shutil.copyfile(SOURCE / "model.pt", bundle / "models" / "model.pt")
    (bundle / "configs" / "metadata.json").write_text(json.dumps({
        "name": "Liver lesion segmentation", "version": "0.3.1", "intended_use": "research",
        "network_data_format": {"inputs": {"image": {"num_channels": 1}},
                                "outputs": {"pred": {"num_channels": 2, "channel_def": {"0": "background", "1": "liver tumor"}}}},
    }))
    inference = {
        "image_key": "image",
        "bundle_root": ".",
        "roi_size": list(reversed(m.input.roi_size_zyx)),
        "network_def": {"_target_": "UNet", **m.architecture.args},
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "@image_key", "pixdim": list(m.input.spacing_xyz_mm), "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": m.input.window_hu[0],
             "a_max": m.input.window_hu[1], "b_min": 0.0, "b_max": 1.0, "clip": True}]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": roi, "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            # saving is the service's: an expression here is never run, so it needs no --trust
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'"}]},
        **(extra or {}),
    }
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    return bundle


def _cli(tmp_path, store, *args):
    env = {"MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data"), "MEDSEG_MODELS_ROOT": str(store)}
    return medseg("models", "import-bundle", *args, env=env)


def test_bundle_becomes_a_model_version_that_runs_the_bundles_own_pipeline(tmp_path):
    store = tmp_path / "models"
    result = _cli(tmp_path, store, make_bundle(tmp_path))
    assert result.returncode == 0, result.stderr
    folder = store / "liver-lesion-bundle" / "0.3.1"
    imported, source = ModelManifest.load(folder), ModelManifest.load(SOURCE)
    assert imported.inference.engine == "monai-bundle" and (folder / imported.inference.bundle_configs).is_dir()
    assert imported.input.spacing_xyz_mm == source.input.spacing_xyz_mm
    assert imported.input.window_hu == source.input.window_hu and imported.input.orientation == "RAS"
    assert imported.input.roi_size_zyx == source.input.roi_size_zyx
    assert [(label.name, label.type.meaning) for label in imported.labels] == [("liver tumor", "Neoplasm")]
    assert gate.check(folder).ok
    # the reference the gate keeps is the bundle pipeline's mask on the gate phantom, on its exact grid
    from medseg.core.io.nifti import read_nifti
    reference = read_nifti(folder / imported.reference.mask_file)
    assert reference.shape == gate._phantom().image.shape
    np.testing.assert_allclose(reference.affine, gate._phantom().image.affine)


def test_code_expressions_need_trust(tmp_path):
    store = tmp_path / "models"
    bundle = make_bundle(tmp_path, roi="$[64, 64, 32]")
    refused = _cli(tmp_path, store, bundle)
    assert refused.returncode == 2 and "--trust" in refused.stderr and "inferer#roi_size" in refused.stderr
    assert not store.exists() or not any(store.rglob("manifest.json"))
    trusted = _cli(tmp_path, store, bundle, "--trust")
    assert trusted.returncode == 0, trusted.stderr
    assert ModelManifest.load(store / "liver-lesion-bundle" / "0.3.1").input.roi_size_zyx == (32, 64, 64)


def test_overrides_are_kept_applied_and_trusted_like_the_config(tmp_path):
    """--override sets a config value as `monai.bundle run --ID VALUE` does: recorded in the version,
    applied when it runs; a `$` value needs --trust; an id that names no place, or no id, is refused."""
    from medseg.models.bundle_checks import parse_override
    from medseg.models.store import load_model

    assert parse_override("inferer#sw_batch_size=4") == ("inferer#sw_batch_size", 4)
    assert parse_override("evaluator#amp=False") == ("evaluator#amp", False)
    assert parse_override("dints_space#device=cpu") == ("dints_space#device", "cpu")
    assert parse_override("x=$torch.device('cpu')") == ("x", "$torch.device('cpu')")
    store = tmp_path / "models"
    bundle = make_bundle(tmp_path)
    for bad in ("no-equals-sign", "bad id=1", "postprocessing#transforms#9#keys=pred"):
        r = _cli(tmp_path, store, bundle, f"--override={bad}")
        assert r.returncode == 2 and "[bundle.bad_override]" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = _cli(tmp_path, store, bundle, "--override=inferer#overlap=$0.5")
    assert r.returncode == 2 and "[bundle.needs_trust]" in r.stderr and "inferer#overlap" in r.stderr
    r = _cli(tmp_path, store, bundle, "--override=inferer#overlap=0.5", "--override=inferer#sw_batch_size=3")
    assert r.returncode == 0, r.stderr
    folder = store / "liver-lesion-bundle" / "0.3.1"
    assert ModelManifest.load(folder).inference.bundle_overrides == {"inferer#overlap": 0.5, "inferer#sw_batch_size": 3}
    inferer = load_model(folder).bundle.inferer
    assert (inferer.overlap, inferer.sw_batch_size) == (0.5, 3)


def test_further_model_files_travel_with_the_version_and_are_checksummed(tmp_path):
    """A file the config loads besides the weights (DiNTS' architecture code) is copied into the
    version and checked like the weights: altered, the version does not load."""
    from medseg.core.exceptions import ChecksumError
    from medseg.models.store import load_model

    bundle = make_bundle(tmp_path)
    (bundle / "models" / "search_code_1.pt").write_bytes(b"architecture code")
    (bundle / "models" / "model.ts").write_bytes(b"torchscript export")  # not the version's: it runs model.pt
    store = tmp_path / "models"
    assert _cli(tmp_path, store, bundle).returncode == 0
    folder = store / "liver-lesion-bundle" / "0.3.1"
    files = ModelManifest.load(folder).inference.bundle_files
    assert list(files) == ["bundle/models/search_code_1.pt"] and not (folder / "bundle" / "models" / "model.ts").exists()
    load_model(folder)
    (folder / "bundle" / "models" / "search_code_1.pt").write_bytes(b"architecture code, altered")
    with pytest.raises(ChecksumError, match="search_code_1.pt"):
        load_model(folder)


def test_torchscript_and_mismatched_weights_are_refused(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / "models" / "model.pt").rename(bundle / "models" / "model.ts")
    r = _cli(tmp_path, tmp_path / "models", bundle)
    assert r.returncode == 2 and "TorchScript" in r.stderr
    (bundle / "models" / "model.ts").rename(bundle / "models" / "model.pt")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["network_def"]["channels"] = [4, 8, 16, 32, 64]
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    r = _cli(tmp_path, tmp_path / "models", bundle)
    assert r.returncode == 2 and "does not fit network_def" in r.stderr


ZOO = REPO / "tests" / "data" / "monai-bundles"
#: what TopologySearch(...).decode() returns for DINTS_SPACE (how it was made is in the file)
DINTS_SEARCH_CODE = ZOO / "dints_search_code.json"


@pytest.mark.parametrize("bundle,code", [("renalStructures_CECT_segmentation", "bundle.multi_channel"),
                                         ("lung_nodule_ct_detection", "bundle.not_segmentation")])
def test_zoo_bundles_medseg_cannot_run_are_refused_in_one_line_leaving_nothing(tmp_path, bundle, code):
    """Real model-zoo configs: a 3-channel (multi-phase) CT model and a detector. Each is refused before
    anything is read or written (with or without --trust): exit 2, one line naming the reason."""
    copy = tmp_path / bundle
    shutil.copytree(ZOO / bundle, copy)
    store = tmp_path / "models"
    for extra in ((), ("--trust",)):
        result = _cli(tmp_path, store, copy, *extra)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and f"[{code}]" in result.stderr
        assert "Traceback" not in result.stderr
        assert not store.exists() or not any(store.iterdir()), "nothing is left in the model store"


def test_a_failed_import_leaves_no_empty_model_folder(tmp_path):
    """A bundle that names more output labels than its network has channels passes the up-front checks
    and fails while its gate reference is made, after the version folder was created: the store is as before."""
    bundle = make_bundle(tmp_path)
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    metadata["network_data_format"]["outputs"]["pred"]["channel_def"]["2"] = "liver cyst"
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
    store = tmp_path / "models"
    result = _cli(tmp_path, store, bundle)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert not store.exists() or not any(store.iterdir()), list(store.rglob("*"))


@pytest.mark.parametrize("name,value,matched", [
    ("spleen", "78961009", True), ("Right Kidney", "64033007", True), ("kidney_left", "64033007", True),
    ("IVC", "64131007", True), ("Right adrenal gland", "23451007", True), ("pancreatic tumor", "108369006", True),
    ("vertebrae_L5", "51282000", True), ("Left Kideny", "91723000", False),  # the BTCV bundle's own spelling
    ("Portal and Splenic Veins", "91723000", False)])
def test_label_names_map_to_snomed_codes_from_the_dicom_dictionary(name, value, matched):
    from medseg.models.codes import label_codes

    codes = label_codes(name)
    assert (codes.type.value, codes.type.scheme, codes.matched) == (value, "SCT", matched)


def test_zoo_metadata_is_kept_and_shown_and_uncoded_labels_warned(tmp_path):
    """The spleen bundle's real metadata.json (with a label the dictionary does not know added) around
    the test bundle's network: provenance in the manifest, in `models show`, a warning for the uncoded label."""
    bundle = make_bundle(tmp_path)
    metadata = json.loads((ZOO / "spleen_ct_segmentation" / "configs" / "metadata.json").read_text())
    metadata["network_data_format"]["outputs"]["pred"]["channel_def"] = {"0": "background", "1": "spleen",
                                                                         "2": "Left Kideny"}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    inference["network_def"]["out_channels"] = 3
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)  # weights for the 3-channel network, made here (the zoo ships none)
    net = UNet(**{k: v for k, v in inference["network_def"].items() if k != "_target_"})
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    shutil.copyfile(ZOO / "spleen_ct_segmentation" / "LICENSE", bundle / "LICENSE")
    store = tmp_path / "models"
    result = _cli(tmp_path, store, bundle, "--name", "spleen", "--version", "0.5.0")
    assert result.returncode == 0, result.stderr
    assert "warning: no SNOMED CT code found for 1 label(s)" in result.stderr and "Left Kideny" in result.stderr
    p = ModelManifest.load(store / "spleen" / "0.5.0").provenance
    assert (p.source, p.name, p.authors) == ("MONAI bundle", metadata["name"], "MONAI team")
    assert p.data_source == metadata["data_source"] and p.intended_use == metadata["intended_use"]
    assert p.published_metrics == metadata["eval_metrics"] and p.license.startswith("Apache License")
    assert p.label_names == {1: "spleen", 2: "Left Kideny"} and p.uncoded_labels == ("Left Kideny",)
    env = {"MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data"), "MEDSEG_MODELS_ROOT": str(store),
           "MEDSEG_DEFAULT_MODEL": "spleen/0.5.0", "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([sys.executable, "-m", "medseg", "models", "show", "0.5.0"], capture_output=True,
                           text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["provenance"]["authors"] == "MONAI team" and data["provenance"]["task"] == metadata["task"]
    assert [(x["name"], x["type"]["value"]) for x in data["labels"]] == [("spleen", "78961009"),
                                                                        ("Left Kideny", "91723000")]


def _asymmetric_ct(path: Path) -> None:
    """A small CT-like NIfTI that no axis flip or transpose maps onto itself: two blocks of different
    brightness off-centre, 0.8 mm pixels, 2.5 mm slices, x and y axes pointing left and posterior."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.normal(0, 20, (60, 50, 24)).astype(np.float32)
    data[5:25, 10:20, 3:12] = 120
    data[40:55, 30:45, 15:22] = 60
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    affine[:3, 3] = [30, 20, -50]
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, 1)
    image.set_qform(affine, 1)
    nib.save(image, str(path))


#: what differs per zoo bundle in the equivalence test: the CLI flags of the import (and of MONAI's
#: run) and whether the import first refuses without --trust
PANCREAS_CPU = {"arch_ckpt": "$torch.load(@arch_ckpt_path, map_location='cpu', weights_only=False)",
                "dints_space#device": "cpu"}
#: The zoo ships no weights, so the weights here are random whatever the network's width; what is
#: compared is the pipeline around the network. Three networks are narrowed (an override, applied
#: alike by the import and by MONAI's run; SwinUNETR's one Swin block per stage is an argument the
#: zoo's config leaves at its default) so that the four cases take about 2 min instead of 6 on
#: 2 CPU cores: each import also runs the version on the gate's reference phantom (16 DiNTS windows
#: of 96^3). Their kinds of layer, and every transform of their pipelines, stay the zoo's.
DINTS_SPACE = {"dints_space#channel_mul": 0.25, "dints_space#num_blocks": 4}
EQUIVALENCE = {
    "spleen_ct_segmentation": {"trust": False, "overrides": {}},
    # computes its spacing and the inferer's device with `$` expressions
    "wholeBody_ct_segmentation": {"trust": True, "overrides": {"network_def#init_filters": 8}},
    # SwinUNETR's img_size, removed in MONAI 1.5, is left out (by medseg on import, by hand for MONAI's run)
    "swin_unetr_btcv_segmentation": {"trust": False, "overrides": {"network_def#feature_size": 12,
                                                                  "network_def#depths": [1, 1, 1, 1]}},
    # DiNTS is built from an architecture-code file loaded by a `$torch.load` expression, on a CUDA
    # device the config hard-codes: both runs override that for this CPU machine, as MONAI's CLI allows
    "pancreas_ct_dints_segmentation": {"trust": True, "overrides": PANCREAS_CPU | DINTS_SPACE},
}


def _zoo_bundle_with_weights(tmp_path: Path, name: str, overrides: dict) -> Path:
    """The zoo bundle's configs with weights (and DiNTS' architecture code) made here with a fixed seed."""
    import torch

    from medseg.models.bundle_pipeline import build_bundle_network, retired_args

    bundle = tmp_path / name
    shutil.copytree(ZOO / name, bundle)
    (bundle / "models").mkdir()
    torch.manual_seed(0)
    if name == "pancreas_ct_dints_segmentation":  # the searched architecture: the zoo's is a download
        code = json.loads(DINTS_SEARCH_CODE.read_text())
        assert {k: overrides[f"dints_space#{k}"] for k in ("channel_mul", "num_blocks")} == \
            {"channel_mul": 0.25, "num_blocks": 4}, "the kept search code was decoded for DINTS_SPACE"
        torch.save({k: np.array(code[k]["values"], dtype=code[k]["dtype"])
                    for k in ("node_a", "arch_code_a", "arch_code_a_max", "arch_code_c")},
                   bundle / "models" / "search_code_18590.pt")
    config = next((bundle / "configs").glob("inference.*"))
    from medseg.models.bundle import _read

    dropped = retired_args(_read(config)["network_def"])
    network = build_bundle_network(bundle / "configs", overrides, dropped)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    return bundle


def _monai_bundle_run(tmp_path: Path, bundle: Path, overrides: dict) -> np.ndarray:
    """`python -m monai.bundle run` with the bundle's own inference config on ct.nii.gz: its label map."""
    from medseg.core.io.nifti import read_nifti
    from medseg.models.bundle import _read
    from medseg.models.bundle_pipeline import retired_args

    config = next((bundle / "configs").glob("inference.*"))
    parsed = _read(config)
    dropped = retired_args(parsed["network_def"])
    if dropped:  # the installed MONAI refuses the retired argument: the same config without it
        for cid in dropped:
            del parsed["network_def"][cid.split("#")[-1]]
        config = config.with_name("inference_current_monai.json")
        config.write_text(json.dumps(parsed))
    image = str(tmp_path / "ct.nii.gz")
    datalist = f"[{{'image': '{image}'}}]" if "load_decathlon_datalist" in str(parsed.get("datalist")) else f"['{image}']"
    args = [x for cid, value in overrides.items() for x in (f"--{cid}", str(value))]
    monai_run = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config),
         "--meta_file", str(bundle / "configs" / "metadata.json"), "--bundle_root", str(bundle),
         "--datalist", datalist, "--output_dir", str(tmp_path / "monai"), "--device", "$torch.device('cpu')",
         "--evaluator#amp", "False", "--dataloader#num_workers", "0", *args],
        capture_output=True, text=True, env=monai_bundle_env())
    assert monai_run.returncode == 0, monai_run.stderr[-2000:]
    (written,) = (tmp_path / "monai").rglob("*.nii.gz")
    return read_nifti(written).array.astype(np.uint8)


@pytest.mark.parametrize("name", list(EQUIVALENCE))
def test_imported_zoo_bundle_segments_as_monai_bundle_run_does(tmp_path, name):
    """The zoo's own inference config and metadata.json, weights made here from its network with a fixed
    seed (the zoo ships none): medseg's label map equals what `python -m monai.bundle run` writes for
    the same NIfTI and weights, voxel for voxel, on an input whose orientation is asymmetric."""
    from medseg.core.io.nifti import read_nifti
    from medseg.core.scoring import dice
    from medseg.models.store import load_model

    case = EQUIVALENCE[name]
    bundle = _zoo_bundle_with_weights(tmp_path, name, case["overrides"])
    _asymmetric_ct(tmp_path / "ct.nii.gz")

    store = tmp_path / "models"
    flags = [f"--override={cid}={value}" for cid, value in case["overrides"].items()]
    result = _cli(tmp_path, store, bundle, *flags)
    if case["trust"]:
        assert result.returncode == 2 and "[bundle.needs_trust]" in result.stderr, result.stderr
        result = _cli(tmp_path, store, bundle, "--trust", *flags)
    assert result.returncode == 0, result.stderr
    (version,) = (store / name.lower().replace("_", "-")).iterdir()
    ours = load_model(version).segment(read_nifti(tmp_path / "ct.nii.gz")).mask.array

    theirs = _monai_bundle_run(tmp_path, bundle, case["overrides"])
    assert ours.shape == theirs.shape
    assert (ours == theirs).mean() >= 0.999
    for value in np.unique(theirs[theirs > 0]):
        assert dice(ours == value, theirs == value) >= 0.99, value


def test_an_organ_model_speaks_of_its_task_not_of_tumors(tmp_path):
    """The spleen zoo bundle on a DICOM study: the SEG is titled and coded as spleen segmentation,
    the CLI summary and result.json speak of structures, and the manifest says so (`models show`)."""
    import pydicom

    bundle = _zoo_bundle_with_weights(tmp_path, "spleen_ct_segmentation", {})
    store = tmp_path / "models"
    assert _cli(tmp_path, store, bundle).returncode == 0
    (version,) = (store / "spleen-ct-segmentation").iterdir()
    manifest = ModelManifest.load(version)
    assert (manifest.task.title, manifest.task.finding) == ("spleen", "structure")

    env = {"MEDSEG_SERVICE__DATA_DIR": str(tmp_path / "data"), "MEDSEG_MODELS_ROOT": str(store)}
    run = lambda *args: medseg(*args, env=env)  # noqa: E731
    assert run("phantom", "--out", tmp_path / "study", "--seed", "3", "--slices", "24", "--size", "64").returncode == 0
    result = run("segment", tmp_path / "study" / "dicom", "--out", tmp_path / "out", "--model", version)
    assert result.returncode == 0, result.stderr
    assert "lesion" not in result.stdout and "tumor" not in result.stdout.lower(), result.stdout
    assert "structure" in result.stdout

    seg = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    assert seg.SeriesDescription.startswith("AI spleen seg spleen-ct-segmentation")
    assert seg.ContentLabel == "AI_SPLEEN_SEG" and "tumor" not in seg.ContentDescription.lower()
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "spleen"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "78961009"

    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert data["task"] == {"title": "spleen", "finding": "structure"}
    (entry,) = data["segments"]
    assert (entry["label"], entry["name"], entry["code"][1]) == (1, "spleen", "78961009")
    assert entry["components"] == data["lesion_count"]
    assert entry["volume_ml"] == pytest.approx(data["total_volume_ml"], abs=1e-3)

    # the site's acceptance run (`medseg evaluate --cases`) runs the bundle's own pipeline: with the
    # version's own result as one case's reference it scores 1.0; the phantom's tumors (label 1)
    # as the other's score what `dice` of the two masks says
    import nibabel as nib

    from medseg.core.io.nifti import read_nifti
    from medseg.core.scoring import dice

    study = tmp_path / "labelled"
    assert run("phantom", "--out", study, "--seed", "3", "--slices", "24", "--size", "64", "--tumors", "2").returncode == 0
    assert run("segment", study / "image.nii.gz", "--out", tmp_path / "nifti-out", "--model", version).returncode == 0
    for case, reference in (("own", tmp_path / "nifti-out" / "mask.nii.gz"), ("tumors", study / "truth.nii.gz")):
        (tmp_path / "cases" / case).mkdir(parents=True)
        shutil.copyfile(study / "image.nii.gz", tmp_path / "cases" / case / "image.nii.gz")
        shutil.copyfile(reference, tmp_path / "cases" / case / "mask.nii.gz")
    result = run("evaluate", "--model", version, "--cases", tmp_path / "cases", "--write-metrics")
    assert result.returncode == 0, result.stderr
    site = json.loads(result.stdout)["site_cases"]
    recorded = ModelManifest.load(version).metrics["site_cases"]
    assert recorded == {k: v for k, v in site.items() if k != "per_case"}
    assert not (version / "MODEL_CARD.md").exists(), "no card of medseg's training is written for a bundle"
    ours, truth = (read_nifti(tmp_path / "cases" / c / "mask.nii.gz").array for c in ("own", "tumors"))
    assert ours.any() and truth.any(), "both references hold the label"
    assert site["per_case"]["own"]["dice"] == 1.0 and site["per_case"]["own"]["per_label_dice"] == {"spleen": 1.0}
    assert site["per_case"]["tumors"]["dice"] == pytest.approx(dice(ours, truth), abs=1e-4)
    spleen = site["per_label"]["spleen"]
    assert spleen["cases"] == 2 and spleen["mean_dice"] == pytest.approx((1.0 + dice(ours, truth)) / 2, abs=1e-4)
    assert site["model"] == "spleen-ct-segmentation:" + version.name and "holdout_phantoms" not in result.stdout

    # a mask on another grid is the case's fault, in one line
    cropped = nib.load(study / "truth.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(cropped.dataobj)[:-1], cropped.affine), tmp_path / "cases" / "tumors" / "mask.nii.gz")
    result = run("evaluate", "--model", version, "--cases", tmp_path / "cases")
    assert result.returncode == 2 and "[evaluate.mask_grid]" in result.stderr and "case tumors" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("task,label", [("tumor", "AI_TUMOR_SEG"), ("spleen", "AI_SPLEEN_SEG"),
                                        ("multi-structure", "AI_SEG"), ("liver", "AI_LIVER_SEG"), ("left kidney", "AI_SEG")])
def test_seg_content_label_is_a_valid_code_string(task, label):
    from medseg.core.seg import content_label

    assert content_label(task) == label and len(label) <= 16


def test_the_fast_argmax_equals_monais_asdiscreted_ties_included():
    """medseg replaces a bundle's plain AsDiscreted(argmax=True) by argmax_and_max: same labels, ties
    (equal probabilities) to the first channel as MONAI's; anything else is run as the bundle says."""
    import torch
    from monai.transforms import AsDiscreted

    from medseg.models.bundle_pipeline import _is_plain_argmax, argmax_and_max

    torch.manual_seed(0)
    for channels in (2, 3, 14):
        scores = torch.rand(channels, 17, 9, 11)
        scores[:, :4] = 0.5  # exact ties
        scores[1, 5:7] = scores[0, 5:7]
        theirs = AsDiscreted(keys="pred", argmax=True)({"pred": scores})["pred"][0]
        labels, best = argmax_and_max(scores)
        assert labels.dtype == torch.uint8 and torch.equal(labels.long(), theirs.long())
        assert torch.equal(best, scores.max(0).values)
    assert _is_plain_argmax(AsDiscreted(keys="pred", argmax=True))
    assert not _is_plain_argmax(AsDiscreted(keys="pred", argmax=True, to_onehot=3))
    assert not _is_plain_argmax(AsDiscreted(keys="pred", threshold=0.5))
    assert not _is_plain_argmax(AsDiscreted(keys=["pred", "label"], argmax=True))


def test_mean_entropy_from_the_histogram_matches_the_formula():
    from medseg.core.pipeline.segment import _binary_entropy

    rng = np.random.default_rng(1)
    for p in (rng.random(5000, dtype=np.float32), rng.beta(0.1, 0.1, 50000).astype(np.float32),
              1 - rng.random(5000, dtype=np.float32) * 1e-3, np.array([0.5, 1.0, 0.0], np.float32)):
        q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
        exact = float(np.mean(-(q * np.log2(q) + (1 - q) * np.log2(1 - q))))
        assert _binary_entropy(p) == pytest.approx(exact, abs=2e-4)
