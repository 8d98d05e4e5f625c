"""`carbon-budget init`: add tracking and a gate to an existing DVC project, editing dvc.yaml and params.yaml in
place."""
