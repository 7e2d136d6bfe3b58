"""Scenarios and their tags, read from ``features/**/*.feature`` with the official Gherkin parser.

A scenario carries its own tags and inherits those of its Feature, of the
Rule it sits in and of its Examples blocks. ``@REQ-FAMILY-NNNN`` tags (or
upstream's ``@req_family_nnnn``) name the requirements it proves.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from gherkin.dialect import Dialect
from gherkin.errors import ParserError
from gherkin.parser import Parser

from . import TraceError

if TYPE_CHECKING:
    from gherkin.parser_types import Envelope, RuleEnvelope, ScenarioEnvelope, Tag
    from gherkin.parser_types import Scenario as GherkinScenario

# Tags as we write them (@REQ-IDENTY-0103) and as upstream does (@req_identy_0103).
REQ_TAG = re.compile(r"^@?req[-_]([a-z]{3,8})[-_](\d{4})$", re.IGNORECASE)


@dataclass
class Scenario:
    feature: str  # path relative to the features base directory, with "/"
    name: str
    line: int
    tags: set[str] = field(default_factory=set)  # own tags plus inherited ones, with "@"
    outline: bool = False

    @property
    def req_ids(self) -> set[str]:
        out = set()
        for tag in self.tags:
            m = REQ_TAG.match(tag)
            if m:
                out.add(f"REQ-{m.group(1).upper()}-{m.group(2)}")
        return out

    @property
    def key(self) -> tuple[str, str]:
        return (self.feature, self.name)


def features_base_dir(repo: Path) -> Path:
    """``bdd_features_base_dir`` from pytest.ini (relative to the repository), else ``features``."""
    ini = repo / "pytest.ini"
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini, encoding="utf-8")
            value = parser.get("pytest", "bdd_features_base_dir", fallback="").strip()
        except configparser.Error:
            value = ""
        if value:
            return (repo / value).resolve()
    return (repo / "features").resolve()


def _names(tags: Iterable[Tag]) -> set[str]:
    return {tag["name"] for tag in tags}


def _scenarios_in(children: Iterable[Envelope], inherited: set[str]) -> Iterator[tuple[GherkinScenario, set[str]]]:
    """The scenarios among a Feature's or a Rule's children, in file order, each with the tags it inherits."""
    for child in children:
        if "scenario" in child:
            yield cast("ScenarioEnvelope", child)["scenario"], inherited
        elif "rule" in child:
            rule = cast("RuleEnvelope", child)["rule"]
            yield from _scenarios_in(rule["children"], inherited | _names(rule["tags"]))
        # A Background has neither tags nor a test of its own.


def parse_feature(text: str, rel_path: str) -> list[Scenario]:
    """The scenarios of one feature file, with inherited tags; ``rel_path`` names the file in messages."""
    try:
        document = Parser().parse(text)
    except ParserError as exc:
        problems = getattr(exc, "errors", None) or [exc]
        raise TraceError(f"{rel_path}: not valid Gherkin: {'; '.join(str(p) for p in problems)}") from exc
    feature = document.get("feature")
    if feature is None:  # an empty file, or comments only
        return []
    dialect = Dialect.for_name(feature["language"])
    outline_keywords = set(dialect.scenario_outline_keywords) if dialect is not None else set()
    scenarios = []
    for scenario, inherited in _scenarios_in(feature["children"], _names(feature["tags"])):
        examples_tags: set[str] = set()
        for examples in scenario["examples"]:
            examples_tags |= _names(examples["tags"])
        scenarios.append(
            Scenario(
                rel_path,
                scenario["name"],
                scenario["location"]["line"],
                _names(scenario["tags"]) | inherited | examples_tags,
                outline=scenario["keyword"] in outline_keywords or bool(scenario["examples"]),
            )
        )
    return scenarios


def load_features(features_dir: Path) -> tuple[list[Scenario], list[str]]:
    """Every scenario under the directory (files in sorted order), and warnings about duplicate names."""
    scenarios: list[Scenario] = []
    warnings: list[str] = []
    for path in sorted(features_dir.rglob("*.feature")):
        rel = path.relative_to(features_dir).as_posix()
        found = parse_feature(path.read_text(encoding="utf-8"), rel)
        seen: set[str] = set()
        for s in found:
            if s.name in seen:
                warnings.append(f"{rel}: two scenarios are named {s.name!r}; pytest-bdd binds only one")
            seen.add(s.name)
        scenarios.extend(found)
    return scenarios, warnings
