"""Annotation models: pure model modules (CLIP/SigLIP embeddings, zero-shot labels) that the
thin model stages call; torch and transformers load lazily inside them."""
