"""JUnit XML for `archc test`: golden results in, XML bytes out (pure; stdlib only).

One ``<testsuite>`` per golden file, one ``<testcase>`` per case; a mismatch is a ``<failure>``,
a file that could not be loaded is one ``<testcase>`` carrying an ``<error>``. The shape follows
the JUnit XML that Jenkins, GitLab and GitHub test reporters read (attributes ``tests``,
``failures``, ``errors``, ``skipped``, ``time`` on suites; ``classname``, ``name``, ``time`` on cases).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class JUnitCase:
    """One test case: ``failure`` (a mismatch) or ``error`` (could not run) or neither (passed)."""

    name: str
    classname: str
    time_s: float
    file: str | None = None
    line: int | None = None
    failure: str | None = None
    error: str | None = None
    details: str = ""


@dataclass(frozen=True)
class JUnitSuite:
    name: str
    cases: tuple[JUnitCase, ...]


def to_xml(suites: Sequence[JUnitSuite], *, name: str = "archc test") -> bytes:
    """Serialize ``suites`` as a JUnit ``<testsuites>`` document (UTF-8, with XML declaration)."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for suite in suites:
        element = _suite(suite)
        root.append(element)
        for key in ("tests", "failures", "errors"):
            totals[key] += int(element.get(key, "0"))
        totals["time"] += float(element.get("time", "0"))
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", _seconds(totals["time"]))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _suite(suite: JUnitSuite) -> ET.Element:
    failures = sum(1 for c in suite.cases if c.failure is not None and c.error is None)
    errors = sum(1 for c in suite.cases if c.error is not None)
    total_time = sum(c.time_s for c in suite.cases)
    element = ET.Element(
        "testsuite",
        name=suite.name,
        tests=str(len(suite.cases)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=_seconds(total_time),
    )
    for case in suite.cases:
        element.append(_case(case))
    return element


def _case(case: JUnitCase) -> ET.Element:
    attrs = {"name": case.name, "classname": case.classname, "time": _seconds(case.time_s)}
    if case.file is not None:
        attrs["file"] = case.file
    if case.line is not None:
        attrs["line"] = str(case.line)
    element = ET.Element("testcase", attrs)
    if case.error is not None:
        child = ET.SubElement(element, "error", message=_clean(case.error), type="error")
        child.text = _clean(case.details or case.error)
    elif case.failure is not None:
        child = ET.SubElement(element, "failure", message=_clean(case.failure), type="mismatch")
        child.text = _clean(case.details or case.failure)
    return element


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.6f}"


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters, even escaped; a conversation might hold them.
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 else "\ufffd" for ch in text)
