"""The pipeline: ``spec`` (what a model needs, no torch), ``segment`` (preprocess -> infer ->
postprocess, pure functions), ``flip_check`` (test-time mirroring of candidate lesions)."""
