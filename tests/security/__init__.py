"""Attack, authorization-matrix and fuzz suites."""
