"""Web status page and JSON API (no rclpy import here)."""
