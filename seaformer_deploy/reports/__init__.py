"""Benchmark reports: built from a bench run, written as JSON, CSV, Markdown and plots."""

from .build import build, build_report, component_breakdown
from .files import load_report, read_report, write_report
from .records import Report

__all__ = ["Report", "build", "build_report", "component_breakdown", "load_report", "read_report",
           "write_report"]
