"""The pipeline's steps, one module each: teach, annotate, distil, evaluate (`pipeline.py` orders
them). A step reads what the run shares from its `RunContext` (context.py) and decides about each
artifact it finds with `Artifact.verdict` (base.py)."""
