"""Grid carbon intensity over time: forecasts from files or live providers (`series`, `providers`) and the cleanest
window to run a job in (`window`). Imports only the lowest layer (errors, files, layout, config), so records and
measurement can charge CO2 at the hour it was emitted."""
