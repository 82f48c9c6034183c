"""Random weight guessing: a vanilla RNN whose weights are drawn, never trained."""
from gapbench.models import register
from gapbench.models._elementwise import FreeRNN


@register("random_guess")
class RandomGuessRNN(FreeRNN):
    """Random weight guessing (Schmidhuber & Hochreiter 1996; Hochreiter & Schmidhuber 1997, §5).

        for k = 1..K:  θ_k ~ U(−r, r) for every weight of the network (recurrence and readout)
        keep the θ_k with the lowest validation loss; no gradient step is ever taken

    The recurrence is the tanh RNN h_t = tanh(W_h h_{t−1} + W_in x_t + b) (`vanilla`). A task
    that this solves needs no long-range credit assignment at all: the papers used it to show
    that several classic long-time-lag benchmarks are solved faster by guessing than by the
    gradient methods of the time. Options: `guesses` K (default 100) and `weight_range` r
    (default 1.0; the papers chose the interval per task, up to [−100, 100] for tiny networks,
    and with H = 64 tanh units r = 1 already gives ρ(W_h) ≈ 4.6, saturated dynamics).
    The training loop (gapbench.train) sees `trained_by = "guessing"` and runs the search.
    """

    trained_by = "guessing"

    def __init__(self, input_size, hidden_size, *, guesses=100, weight_range=1.0, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        if isinstance(guesses, bool) or not isinstance(guesses, int) or guesses < 1:
            raise ValueError(f"random_guess: guesses must be an integer >= 1, got {guesses!r}")
        if not isinstance(weight_range, (int, float)) or not 0 < weight_range < float("inf"):
            raise ValueError(f"random_guess: weight_range must be a finite number > 0, got {weight_range!r}")
        self.guesses, self.weight_range = guesses, float(weight_range)
