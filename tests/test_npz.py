"""noisefs's .npz writer gives np.savez's file, byte for byte."""

from __future__ import annotations

import io

import numpy as np
import pytest

from noisefs.npz import write_npz


def test_the_file_is_np_savez_s_byte_for_byte():
    rng = np.random.default_rng(3)
    arrays = {
        "rho": rng.standard_normal((2, 8, 16)).view(np.complex128),
        "upper": np.asfortranarray(rng.standard_normal((5, 4))),  # as ZHERK's sums are
        "strided": np.arange(20.0)[::3],
        "count": np.int64(7),
        "meta": np.str_('{"circuit": "qft é"}'),
        "names": np.asarray(["Z0", "X1 X2"], dtype=np.str_),
        "empty": np.zeros((0, 3)),
    }
    ours, numpys = io.BytesIO(), io.BytesIO()
    write_npz(ours, arrays)
    np.savez(numpys, **arrays)
    assert ours.getvalue() == numpys.getvalue()
    ours.seek(0)
    with np.load(ours, allow_pickle=False) as data:
        for name, value in arrays.items():
            assert np.array_equal(data[name], value)


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="object"):
        write_npz(io.BytesIO(), {"x": np.array([{}, []], dtype=object)})
