"""stylegan_bridge: a clean-room StyleGAN3 generator, no-exec NVlabs pickle loading, style space, mining.

from stylegan_bridge import load_generator
G = load_generator("stylegan3-r-ffhq-1024x1024.pkl")      # nothing inside the pickle runs
img = G(z, truncation_psi=0.7)                            # [B, 3, 1024, 1024] in about [-1, 1]
ws = G.mapping(z, None, truncation_psi=0.7); img = G.synthesis(ws)
G.synthesis.layer(4).affine                               # style channels of layer 4 (L4_84_1024)
"""

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.loading import export_generator, load_generator
from stylegan_bridge.networks import Generator

__all__ = ["Generator", "GeneratorConfig", "export_generator", "load_generator"]
