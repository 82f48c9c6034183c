"""Pure-torch timings to compare machines (no gapbench code): `python docs/measurements/torch_kernels.py`.
docs/performance.md recorded on the AMD VM of 2026-11-27 (c37190c): addmm 64x64 @ 64x64 6.6 us and
tanh_ on 64x64 9.1 us (inside a training step's profile), nn.GRU forward + backward 9.1 ms and
nn.LSTM 3.3 ms at H = 64, T = 60, batch 64. One thread, subnormals flushed; medians."""
import statistics, time, torch
torch.set_num_threads(1); torch.set_flush_denormal(True)
def t(f, n):
    f(); xs = []
    for _ in range(n):
        s = time.perf_counter(); f(); xs.append(time.perf_counter() - s)
    return statistics.median(xs)
a, b, c = torch.randn(64, 64), torch.randn(64, 64), torch.randn(64, 64)
print(f"addmm 64x64: {t(lambda: c.addmm_(a, b, beta=0.0), 2000) * 1e6:.2f} us")
x = torch.randn(64, 64)
print(f"tanh_ 64x64: {t(lambda: x.copy_(a).tanh_(), 2000) * 1e6:.2f} us")
for name, cls in (("GRU", torch.nn.GRU), ("LSTM", torch.nn.LSTM)):
    torch.manual_seed(0)
    rnn = cls(10, 64, batch_first=True); inp = torch.randn(64, 60, 10)
    def step():
        out, _ = rnn(inp); out.sum().backward()
    print(f"nn.{name} H=64 T=60 B=64 fwd+bwd: {t(step, 50) * 1e3:.2f} ms")
