from bench.dedup_scale import turns


def test_windows_take_turns_batch_by_batch_in_a_rotating_order() -> None:
    assert list(turns([2, 2])) == [(0, 0), (1, 0), (1, 1), (0, 1)]
    assert list(turns([3, 3, 3]))[:6] == [(0, 0), (1, 0), (2, 0), (1, 1), (2, 1), (0, 1)]
    # a run with fewer batches drops out; every batch of every run comes once
    done = list(turns([1, 3]))
    assert sorted(done) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert list(turns([])) == []
