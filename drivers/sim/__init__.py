"""Simulators for the device families: used by the tests, the demo and installers trying a config."""
