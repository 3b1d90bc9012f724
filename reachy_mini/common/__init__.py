"""Ground-floor helpers every layer imports: where files live (paths) and
which nodes make up the robot (node_table). Nothing here imports rclpy, a
message package, the compiled driver, or any other part of reachy_mini."""
