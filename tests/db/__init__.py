"""Tests of service/db/."""
