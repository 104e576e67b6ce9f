"""Applications served from this package (the MONAI Label app)."""
