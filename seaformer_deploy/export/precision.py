"""Artifact precisions: each carries its parity thresholds and the dtype of its inputs/outputs.

A ``StrEnum``, so a precision is also its name ("fp16") wherever a string is expected: in the
manifest, the reports, file names and comparisons with option values.
"""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"

    @property
    def thresholds(self) -> dict[str, float]:
        """The parity gate: minimum PSNR (dB) and minimum argmax label agreement (%)."""
        return dict(_THRESHOLDS[self])

    @property
    def float_dtype(self) -> str:
        """The dtype the artifact computes in."""
        return "float16" if self is Precision.FP16 else "float32"

    def io_dtype(self, fp32_io: bool) -> str:
        """The dtype of the artifact's floating inputs and outputs (``fp32_io`` keeps FP32)."""
        return "float32" if fp32_io else self.float_dtype

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(p.value for p in cls)


# FP16 rounds every activation to 11 significant bits: 30 dB keeps the RMS error of the logits
# within ~3 % of their range, and 99.5 % of labels must survive; FP32 differs from PyTorch only in summation order.
_THRESHOLDS = {Precision.FP32: {"psnr_db": 60.0, "label_agreement": 99.99},
               Precision.FP16: {"psnr_db": 30.0, "label_agreement": 99.5}}
