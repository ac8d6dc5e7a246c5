import pytest
import torch
from model_fixtures import tiny_schema, tiny_schema_with_positions

from recsys.data.fields import Schema

torch.set_num_threads(1)


@pytest.fixture
def schema() -> Schema:
    return tiny_schema()


@pytest.fixture
def schema_pos() -> Schema:
    return tiny_schema_with_positions()
