"""ROS 2 node executables: thin adapters over the plain-Python cores."""
