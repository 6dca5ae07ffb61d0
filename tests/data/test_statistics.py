"""One statistics object: read through its methods, with neutral values for what was not fitted."""

import pytest

from zoo.data import Statistics, StatisticsSource, UsesStatistics
from zoo.models import MPNN


def test_values_and_neutral_defaults():
    statistics = Statistics({"U0": {"mean": -0.2, "std": 0.05, "per_atom": True, "count": 10,
                                    "reference_energies": {"1": -13.6, 6: -1030.0}},
                             "gap": {"mean": 7.0, "std": 1.3, "per_atom": False}})
    assert (statistics.mean("U0"), statistics.std("U0"), statistics.per_atom("U0")) == (-0.2, 0.05, True)
    assert statistics.reference_energies("U0") == {1: -13.6, 6: -1030.0}  # keys as JSON writes them, too
    assert (statistics.mean("mu"), statistics.std("mu"), statistics.per_atom("mu")) == (0.0, None, False)
    assert statistics.reference_energies("gap") == {}
    # a mapping of mappings, as the data module has always exposed them
    assert set(statistics) == {"U0", "gap"} and statistics["gap"]["std"] == 1.3 and len(statistics)
    assert not Statistics() and Statistics.of(statistics) is statistics
    assert Statistics.of({"gap": {"std": 2.0}}).std("gap") == 2.0


def test_declared_interfaces():
    model = MPNN(["H", "C"], ["gap"], channels=4, num_steps=1, set2set_steps=1, edge_hidden=4)
    assert isinstance(model, UsesStatistics)
    model.set_statistics(Statistics({"gap": {"mean": 7.0, "std": 1.3}}))
    assert model.rescale.shift.item() == pytest.approx(7.0) and model.rescale.scale.item() == pytest.approx(1.3)

    class Data:
        statistics = Statistics()

    assert isinstance(Data(), StatisticsSource) and not isinstance(object(), StatisticsSource)
