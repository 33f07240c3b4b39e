"""A model called directly with the wrong shape or dtype says, in one line, what it takes."""

from __future__ import annotations

import pytest
import torch

from dfkd.errors import DfkdError
from dfkd.models import build


@pytest.mark.parametrize("arch", ["convtasnet", "dptnet", "dccrn"])
@pytest.mark.parametrize("bad, says", [
    (torch.zeros(4000), "model(x[None])"),
    (torch.zeros(1, 1, 4000), "(batch, samples)"),
    (torch.zeros(1, 4000, dtype=torch.float64), "dtype float64"),
    (torch.zeros(1, 4000, dtype=torch.int16), "dtype int16"),
])
def test_wrong_input_gets_a_one_line_error(arch, bad, says):
    model = build(arch, "mini").eval()
    with pytest.raises(DfkdError) as err:
        model(bad)
    message = str(err.value)
    assert says in message and "\n" not in message and "(batch, samples)" in message
    assert model(torch.zeros(2, 4000)).shape == (2, 4000)
