"""Reading a Prometheus text exposition in tests."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def families_of(text: str) -> dict[str, Any]:
    """Metric families by name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float | None:
    """The value of the sample ``sample_name`` whose labels include ``labels``; None when there is none."""
    family_name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for family in (families.get(family_name), families.get(sample_name)):
        if family is None:
            continue
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None
