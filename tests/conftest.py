"""Shared test setup: deterministic seeds, two threads (the CI machine has two cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
