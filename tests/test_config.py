import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from medseg.config import DEFAULT_MODEL, REPO_ROOT, Settings


def test_defaults_point_at_the_shipped_model(monkeypatch):
    monkeypatch.delenv("MEDSEG_DEFAULT_MODEL")  # conftest points the suite at the phantom model
    s = Settings()
    assert s.model_dir() == REPO_ROOT / "models" / DEFAULT_MODEL and (s.model_dir() / "manifest.json").is_file()
    assert s.selection.modalities == ("CT",) and s.device == "auto"


def test_environment_overrides_nested_rules(monkeypatch):
    monkeypatch.setenv("MEDSEG_SELECTION__MIN_SLICES", "12")
    monkeypatch.setenv("MEDSEG_GEOMETRY__SLICE_SPACING", "0.05")
    monkeypatch.setenv("MEDSEG_DEVICE", "CUDA:1")
    s = Settings()
    assert s.selection.min_slices == 12 and s.geometry.slice_spacing == 0.05 and s.device == "cuda:1"


@pytest.mark.parametrize(
    "field,value",
    [("device", "tpu"), ("default_model", "../../etc"), ("default_model", "ct-tumor"), ("cpu_threads", -1)],
)
def test_unsafe_or_meaningless_settings_are_refused(field, value):
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def _heavy_after_import(module: str) -> list[str]:
    """Which of torch, MONAI, highdicom a fresh interpreter has loaded after importing ``module``."""
    code = (f"import sys, {module}; print(','.join(m for m in ('torch', 'monai', 'highdicom') "
            "if m in sys.modules))")
    return [m for m in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout.strip().split(",") if m]


def test_import_is_instant_and_side_effect_free():
    """Importing medseg loads neither torch nor MONAI nor highdicom (no work at import time)."""
    assert _heavy_after_import("medseg") == []


@pytest.mark.parametrize("module", ["medseg.config", "medseg.models.manifest", "medseg.core.pipeline.spec",
                                    "medseg.app.cli.main", "medseg.jobs.runner", "medseg.app.serve"])
def test_specs_and_the_cli_entry_import_no_torch(module):
    """A manifest can be read and validated, and the CLI can parse its arguments, without torch or MONAI
    (import-linter checks the static imports; this checks what actually loads). The runner and the
    service load them with the first model: a process of the api role never does."""
    assert not {"torch", "monai"} & set(_heavy_after_import(module))


def test_segment_refuses_a_bad_input_before_loading_torch(tmp_path):
    """`medseg segment` reads the study before it imports torch and MONAI (about 4 s): an empty folder
    is refused at once, with its one-line error."""
    (tmp_path / "empty").mkdir()
    code = ("import sys\nfrom medseg.app.cli.main import main\n"
            "sys.argv = ['medseg', 'segment', sys.argv[1], '--out', sys.argv[2]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n"
            "    print(exc.code, sorted(m for m in ('torch', 'monai') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "empty"), str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.stdout.strip() == "2 []", (run.stdout, run.stderr)
    assert "[input.empty]" in run.stderr and "Traceback" not in run.stderr


def test_the_probe_sees_torch_where_it_is_loaded():
    """The check above can fail: the pipeline itself does load torch."""
    assert "torch" in _heavy_after_import("medseg.core.pipeline.segment")


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "medseg", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "segment" in out.stdout and "phantom" in out.stdout


@pytest.mark.parametrize("node", [
    {"ae_title": "A" * 17}, {"ae_title": "BAD\\AE"}, {"ae_title": " LEADING"},
    {"allowed_calling_aets": ["OK", ""]}, {"send_to": ["nowhere"]},
    {"destinations": [{"name": "a", "ae_title": "X", "host": "h", "port": 104},
                      {"name": "a", "ae_title": "Y", "host": "h", "port": 105}]},
    {"tls": {"cert": "server.pem"}}, {"tls": {"cert": "s.pem", "key": "s.key", "require_client_cert": True}},
    {"port": 70000}, {"quiet_period_s": 0},
])
def test_node_settings_refuse_unsafe_values(node):
    with pytest.raises(ValidationError):
        Settings(node=node)


def test_toml_file_and_environment(tmp_path, monkeypatch):
    config = tmp_path / "medseg.toml"
    config.write_text('[node]\nae_title = "FROMFILE"\nport = 4242\n[service]\nhttp_port = 8123\n')
    monkeypatch.setenv("MEDSEG_CONFIG", str(config))
    monkeypatch.setenv("MEDSEG_NODE__PORT", "104")
    s = Settings()
    assert s.node.ae_title == "FROMFILE" and s.service.http_port == 8123
    assert s.node.port == 104, "the environment wins over the file"


@pytest.mark.parametrize("text,expected", [
    ('[node]\nae_title = "WAY_TOO_LONG_AE_TITLE"\n', "invalid setting node.ae_title"),
    ('[node\nport = 1\n', "not valid TOML"),
    ('[node]\ncolour = "blue"\n', "invalid setting node.colour"),
])
def test_serve_with_a_bad_config_is_one_line_and_exit_2(tmp_path, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    r = subprocess.run([sys.executable, "-m", "medseg", "serve", "--config", str(config)], capture_output=True, text=True)
    assert r.returncode == 2 and expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_relative_paths_in_a_file_are_relative_to_the_file_not_the_cwd(tmp_path, monkeypatch):
    from medseg.config import load_settings

    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "medseg.toml"
    config.write_text('models_root = "../models"\n[service]\ndata_dir = "../var/medseg"\n'
                      '[logging]\nfile = "/var/log/medseg.log"\n'
                      '[audit]\nchain_key_file = "keys/chain.key"\n'
                      '[[node.destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 104\n')
    for cwd in (tmp_path, tmp_path / "etc", REPO_ROOT):
        monkeypatch.chdir(cwd)
        s = load_settings(config)
        assert s.service.data_dir == tmp_path / "var" / "medseg" and s.models_root == tmp_path / "models"
        assert s.audit.chain_key_file == tmp_path / "etc" / "keys" / "chain.key"
        assert s.logging.file == Path("/var/log/medseg.log") and s.node.destinations[0].port == 104
    monkeypatch.setenv("MEDSEG_SERVICE__DATA_DIR", "here")  # the environment's paths: the cwd's, as usual
    assert load_settings(config).service.data_dir == Path("here")


def test_default_data_dir_is_the_users_data_folder_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().service.data_dir == tmp_path / "xdg" / "medseg"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert Settings().service.data_dir == Path.home() / ".local" / "share" / "medseg"


@pytest.mark.parametrize("command", [["monitor", "report"], ["models", "list"], ["review", "worklist"],
                                     ["audit", "verify"], ["tokens", "list"]])
def test_reading_commands_refuse_a_missing_data_dir_and_create_nothing(tmp_path, command):
    missing = tmp_path / "nowhere"
    r = subprocess.run([sys.executable, "-m", "medseg", *command], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "MEDSEG_SERVICE__DATA_DIR": str(missing)})
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"no medseg data at {missing}/medseg.db" in r.stderr and "[config.no_data]" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_torch_threads_are_the_cores_shared_among_the_workers():
    import os

    from medseg.config import ServiceSettings
    from medseg.jobs.runner import intra_op_threads

    cores = len(os.sched_getaffinity(0))
    assert intra_op_threads(Settings()) == cores
    assert intra_op_threads(Settings(service=ServiceSettings(workers=2))) == max(1, cores // 2)
    assert intra_op_threads(Settings(service=ServiceSettings(workers=64))) == 1
    assert intra_op_threads(Settings(cpu_threads=3, service=ServiceSettings(workers=2))) == 3
