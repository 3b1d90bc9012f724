"""Simulated Reachy Mini servo bus: XL330 control tables behind a real pty."""
