"""The segmentation core: volumes, reading studies, the pipeline, SEG, scoring (no database, no wiring).

Imports nothing of medseg above it (docs/architecture.md).
"""
