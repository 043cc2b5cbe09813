"""Maintenance scripts for the repository itself (not installed with Accord)."""
