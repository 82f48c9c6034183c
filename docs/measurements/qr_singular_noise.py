"""How far above matrix_rank's rule, max(S, k) · ε · ‖J Q‖_F (lyapunov._resolved's threshold
before its ROUNDING_MARGIN), the QR's diagonal of an exactly singular step lands (the rounding noise of an annihilated direction), and how far above it
the smallest true stretch lies: J = D W with D a 0/1 diagonal (ReLU units off, about 30%), W the
identity (the IRNN at init) or Gaussian/√S, Q a random orthonormal basis; float64, one thread.

    python docs/measurements/qr_singular_noise.py [TRIALS]
"""
import sys

import torch

torch.set_num_threads(1)
trials = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
generator = torch.Generator().manual_seed(0)
print(f"torch {torch.__version__}, {trials} trials per row; ratios to the threshold max(S, k)·eps·||JQ||_F")
print("S   W         noise/threshold: max   99.9%   fraction > 1 | true stretch/threshold: min")
for size in (8, 12, 16, 32, 64, 128):
    for kind in ("identity", "gaussian"):
        noise, stretch = [], []
        for _ in range(trials):
            on = (torch.rand(size, generator=generator) > 0.3).double()
            on[0] = 0.0  # at least one unit off
            weight = (torch.eye(size, dtype=torch.float64) if kind == "identity" else
                      torch.randn(size, size, generator=generator, dtype=torch.float64) / size ** 0.5)
            basis = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))[0]
            grown = on[:, None] * (weight @ basis)
            diagonal = torch.linalg.qr(grown)[1].diagonal().abs().sort().values
            threshold = size * torch.finfo(torch.float64).eps * torch.linalg.matrix_norm(grown)
            off = int(size - on.sum())  # the directions J annihilates: its rank is size - off
            noise.append((diagonal[off - 1] / threshold).item())
            stretch.append((diagonal[off] / threshold).item())
        noise, stretch = torch.tensor(noise), torch.tensor(stretch)
        print(f"{size:<3} {kind:<9} {noise.max():12.3g} {noise.quantile(0.999):8.3g} {(noise > 1).double().mean():10.4f}"
              f"   | {stretch.min():10.3g}")
