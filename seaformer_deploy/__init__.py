"""seaformer-deploy: SeaFormer-family segmenters from PyTorch to a phone, measured and verified.

Data flows one way: models -> export -> devices -> runners -> bench/reports -> gate.
"""

__version__ = "0.1.0"
