"""Screening designs: Hadamard matrices are orthogonal, designs have room for every factor."""

from __future__ import annotations

import numpy as np
import pytest

from bisect_runs.strategies.designs import (
    blocks,
    design_matrix,
    design_order,
    hadamard,
    row_to_point,
)


@pytest.mark.parametrize("order", [1, 2, 4, 8, 12, 16, 20, 24, 32, 40, 44, 48, 64])
def test_hadamard_is_orthogonal_and_normalized(order: int) -> None:
    h = hadamard(order)
    assert (h @ h.T == order * np.eye(order)).all()
    assert (h[:, 0] == 1).all()


def test_no_construction_is_an_error() -> None:
    with pytest.raises(ValueError, match="no Hadamard construction"):
        hadamard(6)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 11, 12, 19, 30, 45])
def test_design_has_balanced_orthogonal_columns(n: int) -> None:
    d = design_matrix(n)
    assert d.shape[1] == n and len(d) >= n + 1
    assert (d.sum(axis=0) == 0).all()
    assert (d.T @ d == len(d) * np.eye(n)).all()


def test_design_prefers_plackett_burman_and_folds_over() -> None:
    assert design_order(12) == 20 and design_order(5) == 8 and design_order(30) == 32
    it = blocks(4)
    first, second = next(it), next(it)
    assert (second == -first).all()
    assert row_to_point(np.array([1, -1, 1]), [4, 5, 6]) == frozenset({4, 6})
