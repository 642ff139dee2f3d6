"""Tests of taylorglo.presets, one module per package module (a package: test names may repeat across folders)."""
