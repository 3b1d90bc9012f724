"""Reachy Mini ROS 2 package: driver, simulator, nodes and health monitoring."""

__version__ = "0.1.0"
