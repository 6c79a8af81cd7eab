"""Artifact precisions: each carries its parity thresholds and the dtype of its inputs/outputs.

A ``StrEnum``, so a precision is also its name ("fp16") wherever a string is expected: in the
manifest, the reports, file names and comparisons with option values.
"""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"                     # weights and activations; FP32 inputs and outputs

    @property
    def thresholds(self) -> dict[str, float]:
        """The parity gate: minimum PSNR (dB) and minimum argmax label agreement (%)."""
        return dict(_THRESHOLDS[self])

    @property
    def float_dtype(self) -> str:
        """The floating dtype the artifact computes in, where it does not compute in integers."""
        return "float16" if self is Precision.FP16 else "float32"

    @property
    def quantized(self) -> bool:
        """Weights and activations are integers, calibrated on sample tensors."""
        return self is Precision.INT8

    def io_dtype(self, fp32_io: bool) -> str:
        """The dtype of the artifact's floating inputs and outputs (``fp32_io`` keeps FP32;
        an INT8 artifact quantizes its FP32 inputs itself)."""
        return "float32" if fp32_io else self.float_dtype

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(p.value for p in cls)

    @classmethod
    def defaults(cls) -> tuple[str, ...]:
        """What an export makes when no precisions are given."""
        return (cls.FP32.value, cls.FP16.value)


# INT8 (measured): seeded SeaFormer-T's logits reach 46-48 dB at 64 to 256 px and its component
# features 37-38 dB at 128, while label agreement is 81-93 %. Not near-tied classes (at 256 px
# no pixel's top two logits lie within 1 % of the logits' range, and white noise at 30 dB on the
# first stage's output flips only 0.5 % of labels) but the seeded first stage: its random 3x3
# filters raise the image's 8-bit rounding noise from 46.6 dB to 31.0 dB at its output, and all
# of it in INT8 leaves 21 dB there. At 512 px: logits 49.6-51.1 dB and 82-87 % labels, the
# context branch's features 34.6-35.4 dB. The bounds sit between those and broken calibration:
# on noise images the model's logits measure 32.8 dB and 25.7 % labels (caught by the labels),
# and on smooth-noise images the 64 px context branch's features 29.7 dB (caught by the PSNR).
# FP16 rounds every activation to 11 significant bits: 30 dB keeps the RMS error of the logits
# within ~3 % of their range. Labels >= 98.5 %: small maps are mostly region boundaries, and
# where XNNPACK computes in native FP16 (an AVX-512 FP16 Xeon here, as ARMv8.2 phones do)
# seeded SeaFormer-T 128x128's .pte flips 10 of 1,024 pixels (99.02 %) at 71.6 dB, while at
# 256 and 512 it keeps 100 % and 99.82 %. A broken FP16 graph (overflow) fails the PSNR.
# FP32 differs from PyTorch only in summation order.
_THRESHOLDS = {Precision.FP32: {"psnr_db": 60.0, "label_agreement": 99.99},
               Precision.FP16: {"psnr_db": 30.0, "label_agreement": 98.5},
               Precision.INT8: {"psnr_db": 32.0, "label_agreement": 75.0}}
