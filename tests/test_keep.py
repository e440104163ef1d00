import pytest

from chainprune.keep import deletions_for, keep_key, kept_count, normalize_keep_fractions


@pytest.mark.parametrize(
    ("n", "r", "kept"),
    [(10, 0.5, 5), (7, 0.5, 3), (100, 0.29, 29), (3, 0.9, 2), (0, 0.5, 0), (5, 1.0, 5), (1, 0.5, 0), (1000, 0.7, 700)],
)
def test_kept_count_is_exact_floor(n, r, kept):
    assert kept_count(n, r) == kept
    assert deletions_for(n, r) == n - kept


@pytest.mark.parametrize("r", [0.0, -0.1, 1.01, 2])
def test_keep_outside_unit_interval_is_rejected(r):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        kept_count(10, r)


def test_normalize_sorts_and_dedups():
    assert normalize_keep_fractions([0.5, 0.9, 0.5, 0.7]) == [0.9, 0.7, 0.5]
    with pytest.raises(ValueError):
        normalize_keep_fractions([])


def test_keep_key():
    assert keep_key(0.5) == "0.5" and keep_key(1) == "1.0" and keep_key(0.29) == "0.29"
