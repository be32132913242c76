"""Training, evaluation and export for clip_depth_ros (imports the runtime, never the reverse)."""
