"""Whether this process traces, and the tracer it traces with — configured the standard
way, by OpenTelemetry's own variables, with nothing of ours to switch on.

Tracing is **on** in a process when the ``otel`` extra is installed (the OpenTelemetry
SDK and its OTLP/HTTP exporter) and one of ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER`` is set; **off** with
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. Then the first span made
installs a tracer provider: the resource from ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (service ``rhesis-pipeline`` by default), the sampler from
``OTEL_TRACES_SAMPLER``, a batch span processor (``OTEL_BSP_*``) and the exporters
``OTEL_TRACES_EXPORTER`` names (default ``otlp``: OTLP over HTTP, protobuf, configured by
``OTEL_EXPORTER_OTLP_*``; ``console``; or any exporter installed under the SDK's entry
point group ``opentelemetry_traces_exporter``). Workers flush it when they stop
(:func:`shutdown`); other processes at exit.

A process that set up OpenTelemetry itself (a web backend with its own tracer provider)
is traced through its provider, whatever the variables say: spans of ours then go where
its spans go. Without the extra nothing is imported; with it and nothing configured,
:func:`tracer` costs a dictionary lookup.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

logger = logging.getLogger(__name__)

#: Variables that switch tracing on (with the extra installed).
SWITCHES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
#: The instrumentation scope of our spans.
SCOPE = "rhesis_pipeline"

_lock = threading.RLock()
#: This process's tracer once decided: a Tracer, or False (tracing off by the variables).
_tracer: Any = None
#: The provider this module installed (it flushes and shuts it down), if any.
_provider: Any = None


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables of *env* (default: the process's) switch tracing on."""
    env = os.environ if env is None else env
    if _disabled(env):
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return any(env.get(name, "").strip() for name in SWITCHES)


def _disabled(env: Mapping[str, str]) -> bool:
    """``OTEL_SDK_DISABLED=true`` (any case): the SDK is off whatever else is set."""
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def installed() -> bool:
    """Whether the ``otel`` extra (the SDK and the OTLP/HTTP exporter) is installed."""
    try:
        return (
            importlib.util.find_spec("opentelemetry.sdk") is not None
            and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
        )
    except ModuleNotFoundError:
        return False


def tracer() -> Tracer | None:
    """The tracer of this process's spans, or None when it does not trace."""
    global _tracer
    found = _tracer
    if found is None:
        with _lock:
            if _tracer is None:
                # Off while deciding: deciding may log (a warning), and every log line asks
                # for the current span (rhesis_pipeline.logs) — in this thread, re-entrantly.
                _tracer = False
                try:
                    _tracer = _decide()
                except Exception as exc:  # a bad OTEL_* value must not stop a launch or a test
                    logger.warning(
                        "tracing is off: the OpenTelemetry SDK could not be set up from the "
                        "OTEL_* variables (%s: %s); fix them or unset them",
                        type(exc).__name__,
                        exc,
                    )
            found = _tracer
    if found is not False:
        return found  # type: ignore[no-any-return]
    # Off by the variables; the process may have set up OpenTelemetry itself since.
    if "opentelemetry.trace" in sys.modules:
        return _own_provider_tracer()
    return None


def tracing_enabled() -> bool:
    """Whether this process traces (OpenTelemetry): the ``otel`` extra is installed and
    the OTEL_* variables switch it on, or the process set up a tracer provider itself.
    The first call sets up the tracer provider the variables describe: call it when a
    web backend starts, before instrumenting its app, so its request spans go out too."""
    return tracer() is not None


def use_tracer_provider(provider: Any) -> None:
    """Trace through *provider* (an SDK TracerProvider) rather than the global one — a
    process that keeps several; None: decide again from the variables."""
    global _tracer
    with _lock:
        _tracer = None if provider is None else _scoped(provider)


def _decide() -> Any:
    """The tracer when the variables switch tracing on (installing our provider unless
    the process has an SDK provider already); False when they do not."""
    if not configured():  # OTEL_SDK_DISABLED=true included
        return False
    if not installed():
        logger.warning(
            "OTEL_* variables are set but the OpenTelemetry SDK is not installed: no traces; "
            "install it with pip install 'rhesis-pipeline[otel]'"
        )
        return False
    from opentelemetry import trace

    if not _is_sdk_provider(trace.get_tracer_provider()):
        _install_provider()
    return _scoped(trace.get_tracer_provider())


def _own_provider_tracer() -> Tracer | None:
    from opentelemetry import trace

    if _disabled(os.environ):
        return None
    provider = trace.get_tracer_provider()
    if not _is_sdk_provider(provider):
        return None
    global _tracer
    with _lock:
        _tracer = _scoped(provider)
        return _tracer  # type: ignore[no-any-return]


def _is_sdk_provider(provider: object) -> bool:
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

    return not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)


def _scoped(provider: Any) -> Any:
    """Our tracer from *provider*, able to make a span with an id chosen beforehand (the
    run's root span: see rhesis_pipeline.tracing.spans.preset_ids)."""
    from rhesis_pipeline.tracing.ids import PresetIds

    found = provider.get_tracer(SCOPE, _version())
    generator = getattr(found, "id_generator", None)
    if generator is not None and not isinstance(generator, PresetIds):
        found.id_generator = PresetIds(generator)
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rhesis-pipeline")
    except PackageNotFoundError:
        return "0"


def _install_provider() -> None:
    """Install the global tracer provider the OTEL_* variables describe."""
    global _provider
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from rhesis_pipeline.identity import worker_id

    attributes: dict[str, str] = {"service.instance.id": worker_id()}
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "rhesis-pipeline"}))
    provider = TracerProvider(resource=resource)
    batching = _batch_settings()
    for exporter in _exporters():
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=batching["max_queue_size"],
                schedule_delay_millis=batching["schedule_delay_millis"],
                max_export_batch_size=batching["max_export_batch_size"],
                export_timeout_millis=batching["export_timeout_millis"],
            )
        )
    trace.set_tracer_provider(provider)
    _provider = provider


#: The batch span processor's variables, their SDK defaults and its parameters.
BATCH_VARIABLES = (
    ("OTEL_BSP_SCHEDULE_DELAY", 5000, "schedule_delay_millis"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", 2048, "max_queue_size"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, "max_export_batch_size"),
    ("OTEL_BSP_EXPORT_TIMEOUT", 30000, "export_timeout_millis"),
)


def _batch_settings() -> dict[str, int]:
    """The OTEL_BSP_* variables, read here so that a bad value is one warning line and
    its default (the SDK logs a traceback for it)."""
    settings: dict[str, int] = {}
    for name, default, parameter in BATCH_VARIABLES:
        raw = os.environ.get(name, "").strip()
        value = default
        if raw:
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value <= 0:
                logger.warning("%s=%r is not a positive whole number; using %d", name, raw, default)
                value = default
        settings[parameter] = value
    if settings["max_export_batch_size"] > settings["max_queue_size"]:
        settings["max_export_batch_size"] = settings["max_queue_size"]
    return settings


def _exporters() -> list[Any]:
    """The span exporters OTEL_TRACES_EXPORTER names (default: otlp, over HTTP)."""
    names = [
        n.strip().lower()
        for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if n.strip()
    ] or ["otlp"]
    exporters: list[Any] = []
    for name in names:
        if name in ("otlp", "otlp_proto_http"):
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ).strip()
            if protocol not in ("", "http/protobuf"):
                logger.warning(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; spans go out as "
                    "http/protobuf (set the endpoint of the collector's OTLP/HTTP receiver, "
                    "port 4318)",
                    protocol,
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            exporter = _entry_point_exporter(name)
            if exporter is not None:
                exporters.append(exporter)
    return exporters


def _entry_point_exporter(name: str) -> Any:
    from importlib.metadata import entry_points

    for point in entry_points(group="opentelemetry_traces_exporter"):
        if point.name == name:
            return point.load()()
    logger.warning(
        "OTEL_TRACES_EXPORTER names %r, which is not installed: its spans are dropped; "
        "use otlp or console, or install the exporter",
        name,
    )
    return None


def flush(timeout_s: float = 10.0) -> None:
    """Export the spans this process still holds (waits up to *timeout_s*)."""
    found = _tracer
    if not found:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(int(timeout_s * 1000))


def shutdown() -> None:
    """Export the spans this process still holds: shut down the provider if this module
    installed it (its batch processors export what they hold, once), else flush the
    process's own provider (a worker process, when it stops: it exits without running
    atexit hooks). A collector that does not answer delays this by up to the exporter's
    timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s)."""
    if _provider is not None:
        _provider.shutdown()
    else:
        flush()


def _reset_after_fork() -> None:
    global _tracer, _provider
    _tracer = None
    _provider = None


os.register_at_fork(after_in_child=_reset_after_fork)
