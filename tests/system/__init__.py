"""Tests that start the service as a process (`python -m service run`) and drive it over real HTTP."""
