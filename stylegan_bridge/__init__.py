"""stylegan_bridge."""
