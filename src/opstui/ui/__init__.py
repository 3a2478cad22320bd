"""The Textual UI. Only this package (and nothing in the data layer) imports Textual."""
