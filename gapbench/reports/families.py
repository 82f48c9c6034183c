"""Model families, in the order every figure's legend and every paper table lists models, and
each family's hue (Okabe & Ito's colour-blind-safe palette; figures.py shades it per model)."""
from __future__ import annotations

FAMILY_COLOURS = {
    "elementwise": "#0072B2", "orthogonal/unitary": "#CC79A7", "gated": "#D55E00", "reservoir": "#009E73",
    "diagonal": "#E69F00", "oscillator": "#56B4E9", "other": "#000000",
}


def registry_names(read) -> dict:
    """{model label: registered model name}, from the accuracy table (`read`: a table_reader)."""
    accuracy = read("accuracy_vs_gap", columns=["model", "model_name"])
    return dict(zip(accuracy["model"], accuracy["model_name"]))


def model_order(names, registry_names: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """(every model shown or registered, family by family, then by name; {model: its family}).

    A model's family is its class attribute in gapbench.models; registry_names maps a model
    entry's label to its registered name (a label names a variant, e.g. esn_linear). A name
    the registry does not know, e.g. from someone else's tables, counts as "other"."""
    from gapbench import models

    registered = set(models.names())
    registry_names = registry_names or {}

    def family_of(name):
        name = registry_names.get(name, name)
        return models.family(name) if name in registered else "other"

    family = {name: family_of(name) for name in set(names) | registered}
    order = list(FAMILY_COLOURS)
    ordered = sorted(family, key=lambda n: (order.index(family[n]) if family[n] in order else len(order), n))
    return ordered, family
