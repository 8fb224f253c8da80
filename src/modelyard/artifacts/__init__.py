"""Raw artifact upload and download over the operation layer."""
