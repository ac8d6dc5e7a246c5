"""Shared setup of the mtl tests: one thread, the tiny model fixture."""

import pytest
import torch
from mtl_fixtures import TinyMTL

torch.set_num_threads(1)


@pytest.fixture
def model():
    return TinyMTL()
