"""Helpers shared by the integration tests: builders that put rows in a test's database."""
