"""The pull-request report: a revision's records and model figures against its base's."""
