"""Plots (matplotlib, scanpy look and feel). Being built in issue 3."""

from __future__ import annotations
