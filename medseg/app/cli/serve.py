"""`medseg serve`: the DICOM node, worker and HTTP API in one process, or one role per process
(``--role node|api|worker`` with a broker: medseg.app.serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

#: medseg.app.serve.ROLES (not imported here: loading the CLI must not load the service)
ROLES = ("all", "node", "api", "worker")


def serve(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML configuration (see config/medseg.toml)"),
    push_phantom: Optional[int] = typer.Option(
        None, help="demo: once running, push the phantom study with this seed to ourselves and report where the SEG went"),
    push_case: Optional[Path] = typer.Option(
        None, exists=True, file_okay=False, help="demo: push this real case (a folder with CT_image.nii.gz and "
        "CT_mask.nii.gz, e.g. tests/data/sts-ct/STS_006) as a DICOM series, report the SEG and its Dice"),
    role: str = typer.Option("all", "--role", help="all: everything in this process (the default); scale-out, with \\[service] "
                                  "broker_url: node (DICOM, assembly, delivery), api (HTTP), worker (jobs)"),
) -> None:
    """Run the DICOM node, worker and HTTP API in one process, or one role of them (Ctrl-C stops it)."""
    if role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not one of {', '.join(map(repr, ROLES))}", param_hint="--role")
    import uvicorn

    from medseg.app import logs
    from medseg.config import load_settings

    settings = load_settings(config)
    logs.configure(settings.logging, serve=True)
    from medseg.app.serve import Service

    service = Service(settings, role)
    from medseg.app.schema import check

    # before uvicorn: an outdated schema is one line and exit 2, not a traceback out of the lifespan
    check(service.engine, service.audit_log.engine)
    if role == "worker":  # no HTTP, no DICOM: jobs from the broker until stopped
        print(f"medseg serve --role worker: jobs from {_redacted(settings.service.broker_url)}, data "
              f"{settings.service.data_dir}", flush=True)
        service.run_worker()
        return
    check_exposure(settings)
    check_ports(settings, dicom=role in ("all", "node"))
    from medseg.app.api.main import create_app

    app_ = create_app(service)
    if push_phantom is not None and push_case is not None:
        from medseg.core.exceptions import ConfigError

        raise ConfigError("give --push-phantom or --push-case, not both", code="cli.conflicting_options")
    if push_phantom is not None or push_case is not None:
        from medseg.app.demo import case_study, phantom_study, push_when_ready

        def make_study(folder: Path):
            if push_case is not None:
                return case_study(push_case, folder / push_case.name)
            return phantom_study(push_phantom, folder / f"phantom-{push_phantom}")

        push_when_ready(service, make_study, lambda line: print(line, flush=True))
    web = settings.service
    scheme = "https" if web.tls_certfile else "http"
    dicom = f"DICOM {settings.node.ae_title}@{settings.node.host}:{settings.node.port}, " if service.has("node") else ""
    print(f"medseg serve{'' if role == 'all' else ' --role ' + role}: {dicom}"
          f"HTTP {scheme}://{web.http_host}:{web.http_port} (authentication {'on' if settings.auth.enabled else 'OFF'}), "
          f"data {web.data_dir}", flush=True)
    uvicorn.run(app_, host=web.http_host, port=web.http_port, log_level="warning", log_config=None,  # our handler
                ssl_certfile=str(web.tls_certfile) if web.tls_certfile else None,
                ssl_keyfile=str(web.tls_keyfile) if web.tls_keyfile else None)


def _redacted(url: str) -> str:
    """A broker URL without its password, for the banner."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def check_ports(settings, *, dicom: bool = True) -> None:
    """Both ports are bindable before anything starts, so a port in use is one line and exit 2, not
    a listening banner followed by a traceback. The probe binds as the DICOM node and uvicorn do
    (SO_REUSEADDR: a port left in TIME_WAIT is free, one another process listens on is not); port 0
    (any free port) needs no check."""
    import errno
    import socket

    from medseg.core.exceptions import ConfigError

    for what, host, port in (("DICOM [node] port", settings.node.host, settings.node.port),
                             ("HTTP [service] http_port", settings.service.http_host, settings.service.http_port)):
        if not port or (what.startswith("DICOM") and not dicom):
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                why = "is in use by another process" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
                raise ConfigError(f"{what} {host}:{port} {why}", code="serve.port_unavailable") from None


def check_exposure(settings) -> None:
    """The API binds beyond loopback only with authentication on; TLS files must exist."""
    import ipaddress

    from medseg.core.exceptions import ConfigError

    host = settings.service.http_host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not settings.auth.enabled and not loopback:
        raise ConfigError(f"[service] http_host {host} is beyond loopback: set [auth] enabled = true (API tokens "
                          "or OIDC) or bind to 127.0.0.1", code="config.unauthenticated_exposure")
    for path in (settings.service.tls_certfile, settings.service.tls_keyfile):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} not found", code="config.tls")
