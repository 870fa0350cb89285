"""rhesis-monitor's servers: ``serve-health`` (GET /healthz for a load balancer or
Kubernetes) and ``dashboard`` (the web dashboard). Both run until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import click

from rhesis_pipeline.cli.common import MAX_HOURS_HELP, MONITOR_EXIT_CODES, org_option, use_database
from rhesis_pipeline.cli.params import HOURS, PORT, TEXT
from rhesis_pipeline.storage import engine


@click.command("serve-health", epilog=MONITOR_EXIT_CODES)
@click.option(
    "--port",
    type=PORT,
    required=True,
    help="Port to listen on (0: any free port, printed on start).",
)
@click.option(
    "--host", type=TEXT, default="0.0.0.0", show_default=True, help="Address to listen on."
)
@click.option("--max-hours", type=HOURS, default=2.0, show_default=True, help=MAX_HOURS_HELP)
def serve_health(port: int, host: str, max_hours: float) -> None:
    """Serve the health check over HTTP: GET /healthz answers 200 (healthy) or 503.

    The body is the `health --json` object. Stops cleanly on SIGTERM or Ctrl-C.
    """
    import signal
    import threading
    from types import FrameType

    from rhesis_pipeline.monitor.http import HealthServer

    engine.settings()
    try:
        server = HealthServer(host, port, max_hours=max_hours)
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"serving health on {server.url}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


@click.command(epilog=MONITOR_EXIT_CODES)
@click.option(
    "--host", type=TEXT, default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    type=PORT,
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port, printed on start).",
)
@org_option("Show and act")
@click.option(
    "--org-header",
    metavar="HEADER",
    help="Take the organization of each request from this header (e.g. X-Rhesis-Org), "
    "set by a trusted proxy that also strips it from clients' requests; a request "
    "without it is refused.",
)
@click.option("--read-only", is_flag=True, help="Refuse every action (revoke, re-run).")
@click.option(
    "--forwarded-allow-ips",
    type=TEXT,
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Proxies (comma-separated addresses or networks, * for any) whose "
    "X-Forwarded-Proto and X-Forwarded-For are believed: behind one that terminates TLS, "
    "the dashboard's cookies are Secure.",
)
def dashboard(
    host: str,
    port: int,
    organization_id: str | None,
    org_header: str | None,
    read_only: bool,
    forwarded_allow_ips: str,
) -> None:
    """Serve the web dashboard: runs, tests, workers, queues, actions, /metrics.

    With RHESIS_DASHBOARD_TOKEN set, every page needs that token (a bearer token, or the
    login form). Every response carries a strict Content-Security-Policy and refuses
    framing; cookies are Secure over HTTPS (or behind a proxy of --forwarded-allow-ips
    that says so with X-Forwarded-Proto). Stops cleanly on SIGTERM or Ctrl-C. Needs the
    `dashboard` extra (pip install 'rhesis-pipeline[dashboard]').
    """
    import socket

    try:
        import uvicorn

        from rhesis_pipeline.dashboard.app import create_app
        from rhesis_pipeline.dashboard.state import DashboardConfig
    except ImportError as exc:
        raise click.UsageError(
            f"the dashboard needs the `dashboard` extra ({exc.name} is missing): "
            "pip install 'rhesis-pipeline[dashboard]'"
        ) from None
    use_database(migrated=True)
    config = DashboardConfig(
        organization=organization_id,
        organization_header=org_header,
        read_only=read_only,
        token=engine.settings().dashboard_token,
    )
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_host, bound_port = sock.getsockname()[:2]
    click.echo(f"serving dashboard on http://{bound_host}:{bound_port}/", err=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    )
    server.run(sockets=[sock])
