"""archc.review.junit: the XML `archc test --junit` writes, read back with a real JUnit parser."""

from __future__ import annotations

from pathlib import Path

import junitparser

from archc.review.junit import JUnitCase, JUnitSuite, to_xml


def _suites() -> list[JUnitSuite]:
    return [
        JUnitSuite("golden/coding.yaml", (
            JUnitCase("review-diff", "golden.coding", 0.0123, file="golden/coding.yaml", line=4),
            JUnitCase("sql <&> \"quotes\"", "golden.coding", 0.002, file="golden/coding.yaml", line=12,
                      failure="expected route=code_review, got fallback=other model=openai/gpt-4o",
                      details="golden/coding.yaml:12: expected route=code_review\x00 got fallback=other"),
        )),
        JUnitSuite("golden/broken.yaml", (
            JUnitCase("load", "golden.broken", 0.0, file="golden/broken.yaml", line=3,
                      error="L105 YAML syntax error", details="golden/broken.yaml:3:1: L105 error: YAML syntax error"),
        )),
    ]


def test_junit_xml_reads_back_with_junitparser(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    path.write_bytes(to_xml(_suites()))
    xml = junitparser.JUnitXml.fromfile(str(path))
    assert isinstance(xml, junitparser.JUnitXml)
    assert (xml.tests, xml.failures, xml.errors) == (3, 1, 1)
    suites = list(xml)
    assert [s.name for s in suites] == ["golden/coding.yaml", "golden/broken.yaml"]
    coding = suites[0]
    assert (coding.tests, coding.failures, coding.errors, coding.skipped) == (2, 1, 0, 0)
    passed, failed = list(coding)
    assert passed.name == "review-diff" and passed.classname == "golden.coding" and passed.is_passed
    assert abs(passed.time - 0.0123) < 1e-6
    assert failed.name == 'sql <&> "quotes"'
    (failure,) = failed.result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message == "expected route=code_review, got fallback=other model=openai/gpt-4o"
    assert failure.type == "mismatch"
    assert "\ufffd" in failure.text  # the NUL, which XML 1.0 cannot carry, was replaced
    (broken,) = list(suites[1])
    (error,) = broken.result
    assert isinstance(error, junitparser.Error) and error.message == "L105 YAML syntax error"


def test_empty_report_is_still_a_document() -> None:
    xml = junitparser.JUnitXml.fromstring(to_xml([]).decode("utf-8"))
    assert xml.tests == 0 and list(xml) == []
