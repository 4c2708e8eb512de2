from data.samplers import EpochSampler


def test_ranks_see_disjoint_samples_and_validation_counts_each_image_once():
    train = [EpochSampler(10, seed=3, rank=r, world_size=2, pad=True) for r in range(2)]
    for s in train:
        s.set_epoch(5)
    a, b = ({i for i, _ in s} for s in train)
    assert not a & b and len(a) == len(b) == 5 and a | b == set(range(10))
    val = [EpochSampler(7, shuffle=False, rank=r, world_size=3, pad=False) for r in range(3)]
    seen = sorted(i for s in val for i, _ in s)
    assert seen == list(range(7)) and sum(len(s) for s in val) == 7
    resumed = EpochSampler(10, seed=3, rank=0, world_size=2)
    resumed.set_epoch(5, start=4)  # 4 samples of the epoch trained by the 2 ranks: 2 each
    assert list(resumed) == list(train[0])[2:] and len(resumed) == 3
