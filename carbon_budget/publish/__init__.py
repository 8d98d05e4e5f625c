"""Publishing to MLflow: the outbox of frozen executions, the runs, the background worker, sync, pictures and
credential redaction. The only subpackage that imports mlflow."""
