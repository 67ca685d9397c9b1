"""Tests of service/auth/."""
