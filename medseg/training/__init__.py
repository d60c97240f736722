"""Training and measuring the demonstration model (phantoms, real STS cases, calibration)."""
