"""Export trained models to the formats phones run (`python -m export.all`): arrives with the export issue."""
