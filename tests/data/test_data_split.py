import numpy as np
import pytest

from pickwise.data import stratified_split, stratified_subset
from pickwise.exceptions import InvalidParameterError


class TestStratifiedSplit:
    def test_partition_and_proportions(self):
        targets = np.repeat(np.arange(4), [10, 11, 3, 1])
        train, test = stratified_split(targets)
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(targets.size))
        assert not set(train) & set(test)
        # floor(0.2 * n + 0.5) per class: 2, 2, 1, 0
        assert np.bincount(targets[test], minlength=4).tolist() == [2, 2, 1, 0]
        assert np.all(np.diff(train) > 0)
        assert np.all(np.diff(test) > 0)

    def test_deterministic_and_seeded(self):
        targets = np.repeat(np.arange(3), 20)
        a = stratified_split(targets, seed=0)
        b = stratified_split(targets, seed=0)
        c = stratified_split(targets, seed=1)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not np.array_equal(a[1], c[1])

    def test_empty(self):
        train, test = stratified_split(np.zeros(0, dtype=np.int64))
        assert train.size == 0
        assert test.size == 0


class TestStratifiedSubset:
    def test_deterministic_balanced_random(self):
        targets = np.repeat(np.arange(10), 50)
        a = stratified_subset(targets, 30, seed=3)
        b = stratified_subset(targets, 30, seed=3)
        c = stratified_subset(targets, 30, seed=4)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
        assert a.size == 30
        assert np.unique(a).size == 30
        assert np.bincount(targets[a], minlength=10).tolist() == [3] * 10
        assert not np.array_equal(a, np.arange(30))

    def test_largest_remainder(self):
        targets = np.repeat(np.arange(3), [60, 30, 10])
        idx = stratified_subset(targets, 7, seed=0)
        # quotas 4.2, 2.1, 0.7 -> floors 4, 2, 0; one left goes to class 2 (largest remainder)
        assert np.bincount(targets[idx], minlength=3).tolist() == [4, 2, 1]

    def test_full_size(self):
        targets = np.array([0, 1, 1, 0, 2])
        assert stratified_subset(targets, 5).tolist() == [0, 1, 2, 3, 4]

    @pytest.mark.parametrize("k", [0, 6, -1, True, 2.5, "3"])
    def test_exception(self, k):
        with pytest.raises(InvalidParameterError, match="subset must be an int between 1 and 5"):
            stratified_subset(np.array([0, 1, 1, 0, 2]), k)
