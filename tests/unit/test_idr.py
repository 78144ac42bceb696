"""simfs.core.idr: lowest-free ids, as idr_alloc / xa_alloc hand them out."""
import random

from simfs.core.idr import Idr


def test_lowest_free_fills_gaps_first():
    idr = Idr()
    assert [idr.alloc(n, 1, 0xFFFF) for n in "abcd"] == [1, 2, 3, 4]
    idr.remove(2)
    idr.remove(3)
    assert idr.alloc("e", 1, 0xFFFF) == 2
    assert idr.alloc("f", 1, 0xFFFF) == 3
    assert idr.alloc("g", 1, 0xFFFF) == 5


def test_start_and_end_bound_the_search():
    idr = Idr()
    assert idr.alloc("zero", 0, 10) == 0
    assert idr.claim(7, "seven") and not idr.claim(7, "again")
    assert idr.lowest_free(5, 10) == 5
    for n in range(5, 11):
        if n != 7:
            assert idr.alloc(n, 5, 10) == n
    assert idr.alloc("full", 5, 10) is None
    assert idr.get(7) == "seven" and 7 in idr


def test_matches_a_linear_scan():
    rng = random.Random(7)
    idr, held = Idr(), set()
    for _ in range(1000):
        if held and rng.random() < 0.4:
            victim = rng.choice(sorted(held))
            idr.remove(victim)
            held.discard(victim)
        else:
            start = rng.randint(0, 40)
            want = next((i for i in range(start, 201) if i not in held), None)
            assert idr.alloc(object(), start, 200) == want
            if want is not None:
                held.add(want)
