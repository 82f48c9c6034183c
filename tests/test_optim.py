"""gapbench.optim against torch.optim: the same parameters, bit for bit, after every step."""
import sys
import subprocess

import pytest
import torch

from gapbench import models, optim, tasks

TORCH = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize("model", ["vanilla", "lstm"])
def test_bit_for_bit_the_torch_optimiser(name, model):
    task = tasks.build("adding", 10)
    nets = []
    for _ in range(2):
        torch.manual_seed(3)
        nets.append(models.Net(models.build(model, task.input_size, 8), task.output_size))
    ours = optim.OPTIMIZERS[name](nets[0].parameters(), lr=0.01)
    theirs = TORCH[name](nets[1].parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    for step in range(25):
        x = torch.randn(4, 12, task.input_size, generator=generator)
        for net, optimiser in zip(nets, (ours, theirs)):
            optimiser.zero_grad(set_to_none=step % 2 == 0)  # both ways of clearing gradients
            net(x).square().mean().backward()
            if step % 5 == 4:  # a parameter without a gradient is left alone and its step count too
                net.readout.bias.grad = None
            optimiser.step()
        for p, q in zip(nets[0].parameters(), nets[1].parameters()):
            assert torch.equal(p, q), f"{name}: parameters differ after step {step + 1}"


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_state_tensors_hold_everything_a_device_step_changes(name):
    """graphed.DeviceStep undoes a refused update by putting back `state_tensors()`: after one
    `step_on_device` so undone, every tensor the optimiser holds is what it was before."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    optimiser = optim.OPTIMIZERS[name](params, lr=0.1)
    held = [t for value in vars(optimiser).values() if isinstance(value, list) for t in value
            if isinstance(t, torch.Tensor)]
    before = [t.clone() for t in held]
    for p in params:
        p.grad = torch.randn_like(p)
    kept = [t.clone() for t in optimiser.state_tensors()]
    optimiser.step_on_device(torch.tensor(1.0, dtype=torch.float64))
    assert not all(torch.equal(t, b) for t, b in zip(held, before))  # the step changed something
    with torch.no_grad():
        for now, then in zip(optimiser.state_tensors(), kept):
            now.copy_(then)
    assert all(torch.equal(t, b) for t, b in zip(held, before))


@pytest.mark.pipeline
def test_training_imports_no_compiler_stack(tmp_path):
    """The reason the module exists: a training step does not import torch._dynamo."""
    code = ("import sys, torch; from gapbench import optim\n"
            "p = torch.nn.Parameter(torch.ones(3)); o = optim.Adam([p]); p.grad = torch.ones(3)\n"
            "o.step(); o.zero_grad(); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("lr", [0.0, -1.0])
def test_bad_learning_rate_is_refused(lr):
    with pytest.raises(ValueError, match="lr must be > 0"):
        optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=lr)
