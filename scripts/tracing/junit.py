"""Test outcomes from the JUnit XML files pytest writes with ``--junitxml``."""

from __future__ import annotations

import datetime as dt
import glob
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import TraceError

DEFAULT_PATTERN = "artifacts/junit-*.xml"


@dataclass
class Outcome:
    classname: str
    name: str  # with the parameter id, if any
    status: str  # pass, fail, skipped
    source: str  # the JUnit file's name

    @property
    def base_name(self) -> str:
        return self.name.split("[", 1)[0]


def junit_files(patterns: Sequence[str], repo: Path) -> list[Path]:
    """The files the patterns (paths or globs, relative ones to the repository) match, each once, in order."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else str(repo / pattern)
        for name in sorted(glob.glob(full)):
            found[Path(name).resolve()] = None
    return list(found)


def _status(case: ET.Element) -> str:
    children = {child.tag for child in case}
    if children & {"failure", "error"}:
        return "fail"
    if "skipped" in children:
        return "skipped"
    return "pass"


def load_junit(paths: Sequence[Path]) -> tuple[list[Outcome], list[str]]:
    """Every test case of the files, and one note per file (its case count and modification time)."""
    outcomes: list[Outcome] = []
    notes: list[str] = []
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise TraceError(f"{path}: not a readable JUnit XML file ({exc})") from exc
        cases = [
            Outcome(case.get("classname", ""), case.get("name", ""), _status(case), path.name)
            for case in root.iter("testcase")
        ]
        outcomes.extend(cases)
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        notes.append(f"{path.name}: {len(cases)} test cases, written {stamp}")
    return outcomes, notes
