"""Model versions: manifest, store (load + checksum), MONAI bundle import, promotion gate,
registry (active version, fallback chain), shadow runs."""
