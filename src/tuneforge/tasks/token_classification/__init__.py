"""Token classification: named entities as spans."""
