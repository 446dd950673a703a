"""Fixtures for engine tests."""

from tests.backends.stub_server import stub  # noqa: F401  (the loopback stub server fixture)
