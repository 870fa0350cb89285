"""A run as a JUnit XML file, streamed: what Jenkins, GitLab and GitHub's test reporters
read.

Shape (one ``<testsuite>`` per run, inside ``<testsuites>``)::

    <testsuites name="rhesis-pipeline" tests=… failures=… errors=… time=…>
      <testsuite name=RUN NAME tests failures errors skipped time timestamp id=RUN ID>
        <properties> run_id, status, organization_id, metric.NAME.pass_rate/mean_score
        <testcase classname=RUN NAME name=TEST ID time=SECONDS>
          <properties> attempts, latency_ms, score.NAME (of each scored verdict)
          <failure message="tone: too rude (score 0.2, threshold 0.7)" type="metric">…
          <error message=first line type="error"|"lost">the whole error</error>
          <skipped message="cancelled: …"/>
          <system-out>the answer</system-out>

A ``failed`` test gets ``<failure>`` with its failing metrics' reasons (the message, cut
to :data:`MESSAGE_CHARS`; the element's text has them all, one per line); ``error`` and
``lost`` tests get ``<error>`` with the error text; ``cancelled`` tests, and tests not
finished when the export ran, get ``<skipped>``.

The counts of ``<testsuite>`` come first in the file, so they are the run's counters
(failures = failed, errors = errored + lost, skipped = cancelled + not finished), read
in the same snapshot as the rows (:mod:`.snapshot`): a consumer that counts the cases
finds the same numbers.

Per-testcase ``<properties>`` are read by Jenkins' JUnit plugin, GitLab and pytest's
``record_property`` readers; the strict ``junit-10.xsd`` of Jenkins' xUnit plugin has no
such element (tests/data/junit.xsd is that schema with this one addition).

Written with :class:`xml.sax.saxutils.XMLGenerator` (no DOM: one row in memory at a
time), which escapes ``& < > "``; what XML 1.0 cannot hold at all (control characters
but tab, newline and carriage return; lone surrogates; U+FFFE/U+FFFF) is replaced by
U+FFFD first, so hostile test output cannot make an invalid file.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, BinaryIO
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

from rhesis_pipeline.runs.export.snapshot import RunSnapshot
from rhesis_pipeline.runs.export.verdicts import plain, verdicts
from rhesis_pipeline.runs.record import Run

#: Characters of a ``message`` attribute (a reporter shows it on one line); the element's
#: text holds the whole of it.
MESSAGE_CHARS = 500

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """*value* as text XML 1.0 can hold: characters it forbids become U+FFFD."""
    return _NOT_XML.sub("\ufffd", value if isinstance(value, str) else str(value))


def _short(text: str) -> str:
    line = text.strip()
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"


def _error_message(text: str) -> str:
    """The line of an error a reporter shows: a Python traceback's last line (the
    exception), else the first line."""
    lines = [line for line in text.splitlines() if line.strip()] or [text]
    return _short(lines[-1] if lines[0].startswith("Traceback") else lines[0])


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _timestamp(run: Run) -> str:
    """When the run started (or was created), UTC, ISO 8601 without a zone: the form
    Ant's schema requires and every reader accepts."""
    at = run.started_at or run.created_at
    return at.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def _run_seconds(run: Run) -> float:
    if run.duration_s is not None:
        return float(run.duration_s)
    end: datetime | None = run.finished_at
    return (end - (run.started_at or run.created_at)).total_seconds() if end else 0.0


def suite_counts(run: Run) -> dict[str, int]:
    """``tests``, ``failures``, ``errors`` and ``skipped`` of the run's ``<testsuite>``."""
    return {
        "tests": run.total,
        "failures": run.failed,
        "errors": run.errored + run.lost,
        "skipped": run.cancelled + max(run.total - run.done, 0),
    }


class _Writer:
    def __init__(self, out: BinaryIO) -> None:
        self.xml = XMLGenerator(out, encoding="utf-8", short_empty_elements=True)

    def start(self, name: str, attrs: dict[str, Any], indent: int) -> None:
        if indent:  # the root element follows the XML declaration's own newline
            self.xml.ignorableWhitespace("\n" + "  " * indent)
        self.xml.startElement(name, AttributesImpl({k: xml_text(v) for k, v in attrs.items()}))

    def end(self, name: str, indent: int | None = None) -> None:
        if indent is not None:
            self.xml.ignorableWhitespace("\n" + "  " * indent)
        self.xml.endElement(name)

    def element(self, name: str, attrs: dict[str, Any], indent: int, text: str = "") -> None:
        self.start(name, attrs, indent)
        if text:
            self.xml.characters(xml_text(text))
        self.end(name)

    def properties(self, values: dict[str, Any], indent: int) -> None:
        if not values:
            return
        self.start("properties", {}, indent)
        for name, value in values.items():
            self.element("property", {"name": name, "value": value}, indent + 1)
        self.end("properties", indent)


def write_junit(snapshot: RunSnapshot, out: BinaryIO) -> dict[str, int]:
    """Write *snapshot*'s run to *out* as JUnit XML (UTF-8); returns the suite's counts."""
    run = snapshot.run
    counts = suite_counts(run)
    seconds = _seconds(_run_seconds(run))
    w = _Writer(out)
    w.xml.startDocument()
    totals = {k: v for k, v in counts.items() if k != "skipped"}  # not in junit-10.xsd
    w.start("testsuites", {"name": "rhesis-pipeline", **totals, "time": seconds}, 0)
    w.start(
        "testsuite",
        {"name": run.name, **counts, "time": seconds, "timestamp": _timestamp(run), "id": run.id},
        1,
    )
    suite_props: dict[str, Any] = {"run_id": run.id, "status": run.status.value}
    for key in ("organization_id", "user_id", "rerun_of"):
        if getattr(run, key) is not None:
            suite_props[key] = getattr(run, key)
    for m in snapshot.metrics:
        suite_props[f"metric.{m.name}.pass_rate"] = f"{m.pass_rate:.6g}"
        if m.mean_score is not None:
            suite_props[f"metric.{m.name}.mean_score"] = f"{m.mean_score:.6g}"
    w.properties(suite_props, 2)
    for result in snapshot.results:
        _testcase(w, run.name, result)
    w.end("testsuite", 1)
    w.end("testsuites", 0)
    w.xml.ignorableWhitespace("\n")
    w.xml.endDocument()
    return counts


def _testcase(w: _Writer, classname: str, result: dict[str, Any]) -> None:
    attrs: dict[str, Any] = {"classname": classname, "name": result["test_id"]}
    duration_ms = result.get("duration_ms")
    if duration_ms is not None:
        attrs["time"] = _seconds(duration_ms / 1000)
    w.start("testcase", attrs, 2)
    found = verdicts(result.get("metrics"))
    props: dict[str, Any] = {}
    if result.get("attempts") is not None:
        props["attempts"] = result["attempts"]
    if duration_ms is not None:
        props["latency_ms"] = plain(duration_ms)
    for v in found:
        if v.score is not None:
            props[f"score.{v.name}"] = f"{v.score:.6g}"
    w.properties(props, 3)
    status = str(result.get("status"))
    error = str(result.get("error") or "")
    if status == "failed":
        failing = [v.explained() for v in found if v.passed is False]
        text = "\n".join(failing) or error or "failed"
        w.element("failure", {"message": _short("; ".join(failing) or text), "type": "metric"},
                  3, text)  # fmt: skip
    elif status in ("error", "lost"):
        text = error or ("declared lost: its worker stopped answering" if status == "lost"
                         else "error")  # fmt: skip
        w.element("error", {"message": _error_message(text), "type": status}, 3, text)
    elif status == "cancelled":
        w.element("skipped", {"message": "cancelled: the run was revoked"}, 3)
    elif status != "passed":
        w.element("skipped", {"message": f"not finished when exported ({status})"}, 3)
    output = result.get("output")
    if output is not None:
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        w.element("system-out", {}, 3, text)
    w.end("testcase", 2)
