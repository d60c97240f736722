"""medseg: CT tumor segmentation with DICOM in and DICOM-SEG out.

Importing this package does no work: heavy modules (torch,
MONAI, highdicom) are imported by the submodules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
