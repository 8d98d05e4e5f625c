"""The gate: budgets as pure functions over records (`budgets`), and the evidence they are judged on, read from
files alone (`evidence`)."""
