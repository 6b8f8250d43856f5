"""clipfactory: folders, manifests and URLs in; curated, license-tracked training clips out."""

__version__ = "0.1.0"
__all__ = ["__version__"]
