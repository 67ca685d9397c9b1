"""Tests of service/tasks/."""
