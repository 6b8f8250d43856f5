"""clipfactory: folders, manifests and URLs in; curated, license-tracked training clips out."""

__version__ = "0.1.0"
__all__ = ["__version__"]

# onnxruntime (>= 1.2x) starts a telemetry client on its first session, which writes a session
# file into TMPDIR and may try to send events. A data factory does neither: off unless the
# user sets the variable themselves. Set here, before any worker or actor imports onnxruntime.
import os as _os

_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
