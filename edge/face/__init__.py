"""Face verification at the door: model packs, the detect/align/embed pipeline, enrolment with quality gates,
encrypted templates, the 1:N gallery and liveness checks.

Nothing here imports OpenCV, onnxruntime or insightface at import time: the core installs and runs without
the `vision` extra, and only a gateway with a face door loads them.
"""
