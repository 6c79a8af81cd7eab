"""Benchmark reports: built from a bench run, written as JSON, CSV, Markdown and plots."""

from .build import build_report, component_breakdown
from .files import load_report, write_report

__all__ = ["build_report", "component_breakdown", "load_report", "write_report"]
