"""What a job logs beside its results record, as the ``logger`` config group chooses: TensorBoard (the default),
a CSV table and MLflow, each a Lightning logger. The record is the source of truth; these are views of it."""
