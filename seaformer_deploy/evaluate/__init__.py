"""``seaformer-deploy evaluate``: the task accuracy (mIoU, per-class IoU, pixel accuracy) of an
export's whole-model artifacts and of the PyTorch FP32 model they came from, on a labelled
dataset folder, plus each artifact's mIoU against PyTorch FP32's own labels.

datasets (layouts, pairing, label checks) -> predict (mmseg's whole-image test procedure at the
export's fixed size) -> metrics (confusion matrices) -> output (JSON, Markdown, plots); run.py
ties them together. Importing this package loads neither torch nor numpy.
"""
