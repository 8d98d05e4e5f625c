"""The emission record (one contract for stages, gate, report and sync) and read-only views of dvc.yaml and
dvc.lock."""
