"""A rollup row's classes blob, read whole or in part (packed/rollup.py)."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from visionwatch.packed.rollup import ClassFigures, class_totals, pack_classes, unpack_classes

counts = st.integers(min_value=0, max_value=70_000)  # past 0xFFFF: the blob's wide form
sums = st.floats(min_value=0, max_value=1e9, allow_nan=False)
figures = st.builds(ClassFigures, counts, counts, counts, counts, sums, sums)
classes = st.dictionaries(st.integers(min_value=0, max_value=70_000), figures, max_size=30)
bins = st.dictionaries(
    st.tuples(st.integers(min_value=0, max_value=70_000), st.integers(min_value=0, max_value=99)),
    st.integers(min_value=1, max_value=70_000),
    max_size=60,
)


@given(classes, bins)
def test_the_class_tables_figures_are_those_of_the_whole_blob(
    made: dict[int, ClassFigures], binned: dict[tuple[int, int], int]
) -> None:
    packed = pack_classes(made, Counter(binned))
    whole = unpack_classes(packed)
    assert whole.classes == made
    assert dict(whole.class_bins) == binned
    assert class_totals(packed) == [
        (class_id, f.predictions, f.confidence_sum) for class_id, f in sorted(made.items())
    ]
    lean = unpack_classes(packed, with_bins=False)
    assert lean.classes == made
    assert not lean.class_bins


def test_an_empty_blob_has_no_classes() -> None:
    assert class_totals(b"") == []
    assert unpack_classes(None).classes == {}
