"""Helpers shared by the test suites (a real mosquitto, …); no fixtures, no tests."""
