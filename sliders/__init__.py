"""sliders."""
