"""The ``medseg`` command line (typer).

One error boundary (STYLE.md #5): a :class:`MedsegError` becomes one line on
stderr and exit code 2; anything unexpected becomes one line naming the
error type and exit code 1 (set ``MEDSEG_DEBUG=1`` for the traceback).
Exception messages of third-party code are not printed: they can quote
header values.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from medseg.core.exceptions import MedsegError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="CT tumor segmentation: DICOM in, DICOM-SEG out.")
err = Console(stderr=True)
stdout = Console()

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1

TRANSFER_SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
    "j2k-lossy": "1.2.840.10008.1.2.4.91",
}


@contextmanager
def _progress(message: str):
    """A spinner with the current stage on stderr (only when stderr is a terminal)."""
    if not err.is_terminal:
        yield lambda stage: None
        return
    with err.status(message) as status:
        yield lambda stage: status.update(f"{message}: {stage}")


@app.command()
def segment(
    input: Path = typer.Argument(..., help="DICOM folder (any layout) or a NIfTI file"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    model: Optional[str] = typer.Option(None, help="model folder or <name>/<version> under models/"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N"),
    nifti: bool = typer.Option(False, "--nifti", help="also write mask.nii.gz for DICOM input"),
    series: Optional[str] = typer.Option(None, help="SeriesInstanceUID to segment instead of the automatic choice"),
    any_orientation: bool = typer.Option(False, help="accept coronal/sagittal/oblique series"),
) -> None:
    """Segment tumors: writes seg.dcm (DICOM input) or mask.nii.gz (NIfTI input) and result.json."""
    from medseg.config import get_settings
    from medseg.jobs.runner import segment_study

    settings = get_settings()
    rules: dict = {}
    if series:
        rules["series_uid"] = series
    if any_orientation:
        rules["orientations"] = ("AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE")
    settings = settings.model_copy(update={"selection": settings.selection.model_copy(update=rules)})
    with _progress("segmenting") as report:
        result = segment_study(input, out, settings, model=model, device=device, nifti=nifti, progress=report)
    _summary(result, out)


def _summary(result, out_dir: Path) -> None:
    t = result.timings_s
    stdout.print(f"model {result.model.name} {result.model.version} on {result.device}"
              + (f" [yellow](degraded: {result.degraded_reason})[/]" if result.degraded else ""))
    if result.lesion_count == 0:
        stdout.print("no lesion detected")
    else:
        stdout.print(f"{result.lesion_count} lesion(s), total {result.total_volume_ml:.2f} mL")
        for i, lesion in enumerate(result.lesions[:10], 1):
            x, y, z = lesion.centroid_lps_mm
            stdout.print(f"  {i:>2}. {lesion.label_name}: {lesion.volume_ml:8.2f} mL at LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")
        if result.lesion_count > 10:
            stdout.print(f"  ... {result.lesion_count - 10} more in result.json")
    files = ", ".join(str(out_dir / name) for name in result.outputs.values())
    stdout.print(f"wrote {files} in {t.get('total', 0):.1f} s")


@app.command()
def phantom(
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    seed: int = typer.Option(0, help="random seed: same seed, same study"),
    slices: Optional[int] = typer.Option(None, min=2, help="number of slices"),
    size: Optional[int] = typer.Option(None, min=16, help="rows = columns"),
    slice_thickness: Optional[float] = typer.Option(None, min=0.1, help="slice spacing in mm"),
    pixel_spacing: Optional[float] = typer.Option(None, min=0.05, help="in-plane pixel spacing in mm"),
    orientation: str = typer.Option("supine", help="supine | prone | feet_first | coronal | sagittal"),
    tumors: Optional[int] = typer.Option(None, min=0, help="number of tumors (default: 0-4 from the seed)"),
    transfer_syntax: str = typer.Option("explicit", help=" | ".join(TRANSFER_SYNTAXES)),
) -> None:
    """Write a CT-like phantom study: DICOM series, image + truth as NIfTI, truth as DICOM-SEG."""
    from medseg.training.phantom_study import write_phantom_study

    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise MedsegError(f"--transfer-syntax must be one of {', '.join(TRANSFER_SYNTAXES)}", code="cli.usage")
    shape = None
    if slices or size:
        shape = (slices or 80, size or 256, size or 256)
    spacing = None
    if slice_thickness or pixel_spacing:
        spacing = (slice_thickness or 2.5, pixel_spacing or 1.5, pixel_spacing or 1.5)
    with _progress("writing phantom"):
        info = write_phantom_study(out, seed, shape=shape, spacing=spacing, orientation=orientation, n_tumors=tumors,
                                   transfer_syntax=TRANSFER_SYNTAXES[transfer_syntax])
    stdout.print(f"phantom seed {seed}: {info['slices']} slices of {info['rows']}x{info['columns']}, "
              f"{len(info['tumors'])} tumor(s) -> {out}/dicom, truth.nii.gz, truth_seg.dcm, image.nii.gz")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", "-o", help="model folder to write, e.g. models/ct-tumor/1.0.1"),
    sts_dir: Optional[Path] = typer.Option(None, help="real STS cases (../shared/data/sts-ct): held-out ones are evaluated"),
    sts_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="share of training patches from the other real cases"),
    iterations: int = typer.Option(20000, min=1, help="upper bound; --minutes usually ends the run first"),
    minutes: float = typer.Option(28.0, min=0.1, help="time budget for the whole run"),
    phantoms: int = typer.Option(64, min=1, help="training phantoms"),
    holdout_phantoms: int = typer.Option(20, min=0),
    validation_phantoms: int = typer.Option(40, min=1, help="phantoms (seeds from 800000) that choose the lesion filters"),
    flip_check: bool = typer.Option(True, help="re-predict candidate lesions on the 8 axis flips of their window"),
    seed: int = typer.Option(0),
    version: str = typer.Option("1.0.0"),
    name: str = typer.Option("ct-tumor"),
) -> None:
    """Train the demonstration model on CPU and write weights, manifest.json and MODEL_CARD.md."""
    from medseg.training.train import TrainConfig, train as run

    config = TrainConfig(out=out, sts_dir=sts_dir, sts_fraction=sts_fraction, iterations=iterations, minutes=minutes, phantoms=phantoms,
                         holdout_phantoms=holdout_phantoms, validation_phantoms=validation_phantoms, flip_check=flip_check, seed=seed,
                         version=version, name=name)
    manifest = run(config, report=lambda line: err.print(line))
    stdout.print(json.dumps(manifest.metrics, indent=2))


@app.command()
def evaluate(
    model: Optional[str] = typer.Option(None, help="model folder or <name>/<version>"),
    phantoms: int = typer.Option(20, min=0, help="held-out phantoms (seeds from 900000)"),
    sts_dir: Optional[Path] = typer.Option(None, help="real STS cases; only the held-out ones are used"),
    write_metrics: bool = typer.Option(False, help="record the measured metrics in manifest.json and MODEL_CARD.md"),
) -> None:
    """Measure a model on held-out phantoms (and held-out real cases) through the full pipeline."""
    from medseg.config import get_settings
    from medseg.models.store import load_model
    from medseg.training.train import TrainConfig, evaluate as run, model_card

    settings = get_settings()
    model_dir = settings.model_dir(model)
    loaded = load_model(model_dir)
    config = TrainConfig(out=Path("."), holdout_phantoms=phantoms, sts_dir=sts_dir)
    with _progress("evaluating"):
        metrics = run(loaded.network, loaded.manifest.pipeline_spec(), config)
    stdout.print(json.dumps(metrics, indent=2))
    if write_metrics:
        manifest = loaded.manifest.model_copy(update={"metrics": metrics})
        manifest.dump(model_dir)
        (model_dir / "MODEL_CARD.md").write_text(model_card(manifest))


@app.command()
def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML configuration (see config/medseg.toml)"),
    push_phantom: Optional[int] = typer.Option(
        None, help="demo: once running, push the phantom study with this seed to ourselves and report where the SEG went"),
) -> None:
    """Run the DICOM node, worker and HTTP API in one process (Ctrl-C stops it)."""
    import uvicorn

    from medseg.config import CONFIG_ENV, Settings

    if config is not None:
        if not config.is_file():
            raise MedsegError(f"configuration file not found: {config}", code="config.not_found")
        os.environ[CONFIG_ENV] = str(config)
    try:
        settings = Settings()
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError; ValidationError is handled in main()
        if isinstance(exc, ValidationError):
            raise
        raise MedsegError(f"configuration file is not valid TOML ({exc})", code="config.invalid") from None
    from medseg.app.api.main import create_app
    from medseg.app.serve import Service

    service = Service(settings)
    app_ = create_app(service)
    if push_phantom is not None:
        from medseg.app.demo import push_when_ready

        push_when_ready(service, push_phantom, lambda line: print(line, flush=True))
    print(f"medseg serve: DICOM {settings.node.ae_title}@{settings.node.host}:{settings.node.port}, "
                 f"HTTP http://{settings.service.http_host}:{settings.service.http_port}, data {settings.service.data_dir}",
          flush=True)
    uvicorn.run(app_, host=settings.service.http_host, port=settings.service.http_port, log_level="warning")


from medseg.app.cli.audit import audit_app  # noqa: E402  (sub-commands; import nothing heavy at load)
from medseg.app.cli.models import models_app  # noqa: E402
from medseg.app.cli.review import monitor_app, review_app  # noqa: E402

app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.add_typer(review_app, name="review")
app.add_typer(monitor_app, name="monitor")


def _fail(line: str) -> None:
    """Errors are one plain line (no wrapping, no markup) on stderr."""
    print(line.replace("\n", " "), file=sys.stderr)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except MedsegError as exc:
        _fail(f"medseg: error: {exc.message} [{exc.code}]")
        sys.exit(EXIT_USER_ERROR)
    except (typer.Abort, KeyboardInterrupt):
        _fail("medseg: aborted")
        sys.exit(130)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        _fail(f"medseg: error: invalid setting {where}: {first['msg']} [config.invalid]")
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:  # noqa: BLE001 - the CLI's error boundary
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("MEDSEG_DEBUG"):
            raise
        _fail(f"medseg: internal error: {type(exc).__name__} (set MEDSEG_DEBUG=1 for details)")
        sys.exit(EXIT_INTERNAL_ERROR)


if __name__ == "__main__":
    main()
